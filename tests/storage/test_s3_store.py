"""The S3 FileStore against moto's S3 server on loopback: streamed multipart uploads in
bounded memory, file uploads, reads, idempotent deletes, presigned URLs, and the factory."""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from s3_server import CREDENTIALS, REGION, MotoServer
from vidgate.settings import Settings
from vidgate.storage.base import StorageError, UnsafeKeyError
from vidgate.storage.copies import download, local_path
from vidgate.storage.factory import StorageConfigError, build_file_store
from vidgate.storage.s3 import PART_SIZE, PARTS_IN_FLIGHT, S3FileStore

MIB = 1024 * 1024
TTL_S = 900


@pytest.fixture(autouse=True)
def _aws_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {**CREDENTIALS, "AWS_REGION": REGION}.items():
        monkeypatch.setenv(name, value)


@pytest.fixture
def bucket(moto: MotoServer) -> str:
    return moto.new_bucket()


@pytest.fixture
def store(moto: MotoServer, bucket: str) -> S3FileStore:
    return S3FileStore(
        bucket=bucket, prefix="results/v1", url_ttl_s=TTL_S, endpoint_url=moto.endpoint_url
    )


def resident_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


async def collect(chunks: AsyncIterator[bytes] | None) -> bytes:
    assert chunks is not None
    return b"".join([chunk async for chunk in chunks])


async def test_a_large_stream_uploads_in_parts_with_bounded_memory(
    moto: MotoServer, bucket: str, store: S3FileStore
) -> None:
    total_mib = 64
    block = os.urandom(MIB)
    expected = hashlib.sha256()
    baseline = resident_bytes()
    peak = baseline

    async def chunks() -> AsyncIterator[bytes]:
        nonlocal peak
        for index in range(total_mib):
            peak = max(peak, resident_bytes())
            chunk = index.to_bytes(4, "big") + block[4:]  # a new buffer each time, as a download
            expected.update(chunk)
            yield chunk

    written = await store.put_stream("big.mp4", chunks())

    assert written == total_mib * MIB
    # What was held is the parts in flight, not the stream (64 MiB).
    held = peak - baseline
    assert held < PART_SIZE * PARTS_IN_FLIGHT + 16 * MIB, f"held {held / MIB:.1f} MiB"
    head = moto.client().head_object(Bucket=bucket, Key="results/v1/big.mp4")
    assert head["ContentLength"] == total_mib * MIB
    assert head["ContentType"] == "video/mp4"
    parts = -(-total_mib * MIB // PART_SIZE)
    assert head["ETag"].strip('"').endswith(f"-{parts}")  # a multipart upload of that many parts
    read = hashlib.sha256()
    chunks_read = await store.get("big.mp4")
    assert chunks_read is not None
    async for chunk in chunks_read:
        assert len(chunk) <= 16 * MIB
        read.update(chunk)
    assert read.hexdigest() == expected.hexdigest()


async def test_put_file_uploads_and_consumes_the_source(
    moto: MotoServer, bucket: str, store: S3FileStore, tmp_path: Path
) -> None:
    source = tmp_path / "render.mp4"
    source.write_bytes(b"\x00\x00\x00\x18ftypmp42" + os.urandom(7 * MIB))
    body = source.read_bytes()

    await store.put_file("vid_1.mp4", source)

    assert not source.exists()
    assert moto.keys(bucket) == ["results/v1/vid_1.mp4"]
    assert await store.exists("vid_1.mp4")
    assert await collect(await store.get("vid_1.mp4")) == body


async def test_presigned_url_downloads_the_object_for_the_configured_time(
    moto: MotoServer, store: S3FileStore
) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        yield b"RIFF....WEBPVP8 "

    await store.put_stream("vid_2.thumbnail.webp", chunks())
    url = store.url_for("vid_2.thumbnail.webp")

    parts = urlsplit(url)
    assert f"{parts.scheme}://{parts.netloc}" == moto.endpoint_url
    assert parts.path == f"/{store.bucket}/results/v1/vid_2.thumbnail.webp"
    query = {name: values[0] for name, values in parse_qs(parts.query).items()}
    assert query["X-Amz-Expires"] == str(TTL_S)
    signed_at = time.mktime(time.strptime(query["X-Amz-Date"], "%Y%m%dT%H%M%SZ")) - time.timezone
    assert abs(signed_at - time.time()) < 60
    assert f"/{REGION}/s3/" in query["X-Amz-Credential"]
    assert "X-Amz-Signature" in query
    # Anyone with the URL downloads the object, without credentials.
    async with httpx.AsyncClient(timeout=10) as http:
        answer = await http.get(url)
        ranged = await http.get(url, headers={"Range": "bytes=0-3"})
    assert answer.status_code == 200
    assert answer.content == b"RIFF....WEBPVP8 "
    assert answer.headers["content-type"] == "image/webp"
    assert 'filename="vid_2.thumbnail.webp"' in answer.headers["content-disposition"]
    # Ranges are the bucket's business too.
    assert (ranged.status_code, ranged.content) == (206, b"RIFF")


async def test_delete_is_idempotent(moto: MotoServer, bucket: str, store: S3FileStore) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        yield b"mp4"

    await store.put_stream("vid_3.mp4", chunks())
    url = store.url_for("vid_3.mp4")
    await store.delete("vid_3.mp4")
    assert moto.keys(bucket) == []
    assert not await store.exists("vid_3.mp4")
    assert await store.get("vid_3.mp4") is None
    async with httpx.AsyncClient(timeout=10) as http:
        assert (await http.get(url)).status_code == 404
    await store.delete("vid_3.mp4")  # again: no error
    await store.delete("never_stored.mp4")


async def test_it_serves_nothing_through_the_gateway(store: S3FileStore) -> None:
    assert store.serves_files is False
    assert store.verify("vid_4.mp4", expires=2**40, signature="0" * 32) is False
    assert await store.local_file("vid_4.mp4") is None


@pytest.mark.parametrize("key", ["../escape.mp4", "a/b.mp4", ".hidden", ""])
async def test_unsafe_keys_are_refused(store: S3FileStore, key: str) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        yield b"x"

    with pytest.raises(UnsafeKeyError):
        await store.put_stream(key, chunks())
    with pytest.raises(UnsafeKeyError):
        store.url_for(key)


async def test_a_missing_bucket_is_a_clear_storage_error(moto: MotoServer) -> None:
    store = S3FileStore(
        bucket="no-such-bucket", prefix=None, url_ttl_s=TTL_S, endpoint_url=moto.endpoint_url
    )

    async def chunks() -> AsyncIterator[bytes]:
        yield b"x"

    with pytest.raises(StorageError, match=r"^S3: could not store vid_5\.mp4: "):
        await store.put_stream("vid_5.mp4", chunks())


async def test_local_copies_of_stored_files_are_removed_after_use(
    store: S3FileStore, tmp_path: Path
) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        yield b"frame data"

    await store.put_stream("vid_6.mp4", chunks())
    work = tmp_path / "work"
    async with local_path(store, "vid_6.mp4", work_dir=work) as path:
        assert path is not None
        assert path.read_bytes() == b"frame data"
    assert list(work.iterdir()) == []
    async with local_path(store, "absent.mp4", work_dir=work) as missing:
        assert missing is None
    assert not await download(store, "absent.mp4", work / "copy.mp4")
    assert list(work.iterdir()) == []


# -- the factory ---------------------------------------------------------------------------


def test_factory_builds_the_s3_store_from_the_url(tmp_path: Path) -> None:
    settings = Settings(
        data_dir=tmp_path,
        storage_url="s3://my-bucket/videos/out/",
        s3_endpoint_url="http://127.0.0.1:9000",
        result_url_ttl_s=3600,
    )
    store = build_file_store(settings)
    assert isinstance(store, S3FileStore)
    assert (store.bucket, store.prefix) == ("my-bucket", "videos/out")
    url = urlsplit(store.url_for("vid_7.mp4"))  # signing needs no network
    assert url.netloc == "127.0.0.1:9000"
    assert url.path == "/my-bucket/videos/out/vid_7.mp4"
    assert parse_qs(url.query)["X-Amz-Expires"] == ["3600"]
    assert not (tmp_path / "files").exists() or not any((tmp_path / "files").iterdir())


def test_factory_reads_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VIDGATE_STORAGE_URL", "s3://env-bucket")
    monkeypatch.setenv("VIDGATE_S3_ENDPOINT_URL", "https://s3.example.com")
    monkeypatch.delenv("AWS_REGION")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "ap-south-1")
    store = build_file_store(Settings(data_dir=tmp_path))
    assert isinstance(store, S3FileStore)
    assert (store.bucket, store.prefix) == ("env-bucket", None)
    url = store.url_for("vid_8.mp4")
    assert url.startswith("https://s3.example.com/env-bucket/vid_8.mp4?")
    assert "%2Fap-south-1%2Fs3%2F" in url


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"storage_url": "s3://"}, "s3:// needs a bucket name"),
        ({"storage_url": "s3:///prefix"}, "s3:// needs a bucket name"),
        ({"storage_url": "s3://AKIAKEY:secret@bucket/p"}, "put no credentials in the URL"),
        ({"storage_url": "s3://My_Bucket"}, "is not an S3 bucket name"),
        ({"storage_url": "s3://bucket/p?region=x"}, "takes no"),
        (
            {"storage_url": "s3://bucket", "result_url_ttl_s": 8 * 24 * 3600},
            "VIDGATE_RESULT_URL_TTL_S: presigned S3 URLs last at most 604800 s",
        ),
        (
            {"storage_url": "s3://bucket", "s3_endpoint_url": "127.0.0.1:9000"},
            "VIDGATE_S3_ENDPOINT_URL: give an http",
        ),
        ({"storage_url": "gs://user:secret@bucket"}, "unsupported storage gs://"),
    ],
)
def test_factory_refuses_bad_settings_in_one_line(
    tmp_path: Path, settings: dict[str, object], message: str
) -> None:
    with pytest.raises(StorageConfigError, match=message) as refused:
        build_file_store(Settings(data_dir=tmp_path, **settings))  # type: ignore[arg-type]
    assert "secret" not in str(refused.value)
    assert "\n" not in str(refused.value)


def test_an_unparsable_aws_variable_is_a_config_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_SKIP_SIGNATURE", "maybe")
    with pytest.raises(StorageConfigError, match=r'S3 storage: .*"maybe"'):
        build_file_store(Settings(data_dir=tmp_path, storage_url="s3://bucket"))
