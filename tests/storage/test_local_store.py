"""The local FileStore: atomic writes, moves, deletes, and the signed URLs it serves."""

from __future__ import annotations

import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from vidgate.settings import Settings
from vidgate.storage.base import UnsafeKeyError
from vidgate.storage.copies import local_path
from vidgate.storage.factory import StorageConfigError, build_file_store
from vidgate.storage.local import LocalFileStore, UrlSigner

SECRET = b"s" * 32


def make_store(root: Path) -> LocalFileStore:
    return LocalFileStore(
        root, secret=SECRET, public_url="https://gw.example.com/", url_ttl_s=24 * 3600
    )


def names(directory: Path) -> list[str]:
    return sorted(path.name for path in directory.iterdir())


def signed(url: str) -> tuple[str, int, str]:
    parts = urlsplit(url)
    query = parse_qs(parts.query)
    return parts.path, int(query["expires"][0]), query["signature"][0]


@pytest.fixture
def store(tmp_path: Path) -> LocalFileStore:
    return make_store(tmp_path / "files")


async def test_a_stream_appears_whole_or_not_at_all(store: LocalFileStore) -> None:
    seen_midway: list[object] = []

    async def chunks() -> AsyncIterator[bytes]:
        yield b"\x00\x00\x00\x18ftypisom"
        seen_midway.append(await store.local_file("vid_1.mp4"))
        yield b"rest" * 1000

    assert await store.put_stream("vid_1.mp4", chunks()) == 12 + 4000

    assert seen_midway == [None]
    stored = await store.local_file("vid_1.mp4")
    assert stored is not None
    assert stored.stat.st_size == 4012
    assert stored.path.read_bytes() == b"\x00\x00\x00\x18ftypisom" + b"rest" * 1000
    assert names(store.root) == ["vid_1.mp4"]


async def test_a_failed_stream_leaves_the_old_file_and_no_leftovers(
    store: LocalFileStore,
) -> None:
    async def old() -> AsyncIterator[bytes]:
        yield b"old"

    async def broken() -> AsyncIterator[bytes]:
        yield b"new, partial"
        raise ConnectionError("upstream went away")

    await store.put_stream("vid_1.mp4", old())
    with pytest.raises(ConnectionError):
        await store.put_stream("vid_1.mp4", broken())

    assert (store.root / "vid_1.mp4").read_bytes() == b"old"
    assert names(store.root) == ["vid_1.mp4"]


async def test_put_file_moves_the_file_in(store: LocalFileStore, tmp_path: Path) -> None:
    source = tmp_path / "render.mp4"
    source.write_bytes(b"video")

    await store.put_file("vid_2.mp4", source)

    assert not source.exists()
    assert store.path_of("vid_2.mp4") == store.root / "vid_2.mp4"
    assert (store.root / "vid_2.mp4").read_bytes() == b"video"


@pytest.fixture
def other_filesystem(tmp_path: Path) -> Iterator[Path]:
    """A directory on another filesystem than tmp_path (/dev/shm is a tmpfs on Linux)."""
    shm = Path("/dev/shm")
    if not shm.is_dir() or shm.stat().st_dev == tmp_path.stat().st_dev:
        pytest.skip("no second filesystem to move across")
    with tempfile.TemporaryDirectory(dir=shm) as directory:
        yield Path(directory)


async def test_put_file_copies_across_filesystems(
    store: LocalFileStore, other_filesystem: Path
) -> None:
    source = other_filesystem / "render.mp4"
    source.write_bytes(b"video" * 1000)

    await store.put_file("vid_3.mp4", source)

    assert not source.exists()
    assert (store.root / "vid_3.mp4").read_bytes() == b"video" * 1000
    assert names(store.root) == ["vid_3.mp4"]


async def test_delete_removes_and_tolerates_missing(store: LocalFileStore) -> None:
    async def one() -> AsyncIterator[bytes]:
        yield b"x"

    await store.put_stream("vid_4.mp4", one())
    await store.delete("vid_4.mp4")
    await store.delete("vid_4.mp4")

    assert await store.local_file("vid_4.mp4") is None
    assert names(store.root) == []


async def test_get_streams_the_file_in_blocks(store: LocalFileStore) -> None:
    body = bytes(range(256)) * (5 * 1024)  # 1.25 MiB: more than one read block

    async def one() -> AsyncIterator[bytes]:
        yield body

    await store.put_stream("vid_5.mp4", one())
    assert await store.exists("vid_5.mp4")
    chunks = await store.get("vid_5.mp4")
    assert chunks is not None
    blocks = [block async for block in chunks]
    assert len(blocks) == 2
    assert b"".join(blocks) == body
    assert not await store.exists("vid_6.mp4")
    assert await store.get("vid_6.mp4") is None
    assert await store.get("../vid_5.mp4") is None


async def test_local_path_is_the_stored_file_itself(store: LocalFileStore, tmp_path: Path) -> None:
    async def one() -> AsyncIterator[bytes]:
        yield b"video"

    await store.put_stream("vid_7.mp4", one())
    async with local_path(store, "vid_7.mp4", work_dir=tmp_path / "work") as path:
        assert path == store.root / "vid_7.mp4"
    assert (store.root / "vid_7.mp4").exists()  # lent, not consumed
    assert not (tmp_path / "work").exists()  # no copy was needed


@pytest.mark.parametrize("key", ["../escape.mp4", "a/b.mp4", ".hidden", "", "x" * 201])
async def test_unsafe_keys_are_refused(store: LocalFileStore, key: str) -> None:
    async def one() -> AsyncIterator[bytes]:
        yield b"x"

    with pytest.raises(UnsafeKeyError):
        await store.put_stream(key, one())
    with pytest.raises(UnsafeKeyError):
        store.url_for(key)
    assert await store.local_file(key) is None


def test_signed_url_verifies_and_tampering_does_not(store: LocalFileStore) -> None:
    path, expires, signature = signed(store.url_for("vid_5.mp4"))

    assert path == "/files/vid_5.mp4"
    assert store.verify("vid_5.mp4", expires=expires, signature=signature)
    assert not store.verify("vid_6.mp4", expires=expires, signature=signature)
    assert not store.verify("vid_5.mp4", expires=expires + 3600, signature=signature)
    tampered = ("1" if signature[0] == "0" else "0") + signature[1:]  # really another digit
    assert not store.verify("vid_5.mp4", expires=expires, signature=tampered)
    assert not store.verify("vid_5.mp4", expires=expires, signature="\u00e9" * 32)
    other = LocalFileStore(store.root, secret=b"t" * 32, public_url="https://x", url_ttl_s=60)
    assert not other.verify("vid_5.mp4", expires=expires, signature=signature)


def test_urls_are_stable_within_the_hour_and_expire() -> None:
    signer = UrlSigner(secret=SECRET, public_url="https://gw.example.com", ttl_s=24 * 3600)
    hour = 1_800_000_000 - 1_800_000_000 % 3600

    first = signer.url_for("vid_7.mp4", now=hour + 1)
    assert signer.url_for("vid_7.mp4", now=hour + 3599) == first
    assert signer.url_for("vid_7.mp4", now=hour + 3600) != first
    _, expires, signature = signed(first)
    assert expires - (hour + 1) >= 24 * 3600
    assert signer.is_valid("vid_7.mp4", expires=expires, signature=signature, now=expires - 1)
    assert not signer.is_valid("vid_7.mp4", expires=expires, signature=signature, now=expires + 1)


def test_factory_builds_the_local_store_in_the_data_dir(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, public_url="https://gw.example.com")

    store = build_file_store(settings)

    assert isinstance(store, LocalFileStore)
    assert store.root == settings.files_dir
    assert store.url_for("vid_8.mp4").startswith("https://gw.example.com/files/vid_8.mp4?")
    # The generated secret is kept: a second build verifies the first one's URLs.
    _, expires, signature = signed(store.url_for("vid_8.mp4"))
    again = build_file_store(settings)
    assert again.verify("vid_8.mp4", expires=expires, signature=signature)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("s3://AKIAKEY:secret@bucket/prefix", "put no credentials in the URL"),
        ("gs://user:secret@bucket", "unsupported storage gs://"),
        ("/srv/files", "unsupported storage location"),
    ],
)
def test_factory_refuses_stores_it_cannot_build(tmp_path: Path, url: str, message: str) -> None:
    with pytest.raises(StorageConfigError, match=message) as refused:
        build_file_store(Settings(data_dir=tmp_path, storage_url=url))
    assert "secret" not in str(refused.value)


def test_storage_url_comes_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VIDGATE_STORAGE_URL", "s3://")
    with pytest.raises(StorageConfigError, match="s3:// needs a bucket name"):
        build_file_store(Settings(data_dir=tmp_path))
