"""Result files in a local directory, handed out as signed, expiring URLs served by the gateway.

Every write goes to a hidden temporary file next to its target and is renamed into place, so a
reader sees a whole file or none. File I/O runs in worker threads, never on the event loop.
"""

from __future__ import annotations

import asyncio
import errno
import hashlib
import hmac
import os
import secrets
import shutil
import stat
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO
from urllib.parse import urlencode

from vidgate.storage.base import SAFE_KEY, LocalFile, check_key

# URLs expire on an hour boundary so repeated polls within the hour get the same URL.
_EXPIRY_BUCKET_S = 3600
READ_BLOCK = 1024 * 1024


@dataclass(frozen=True)
class UrlSigner:
    secret: bytes
    public_url: str
    ttl_s: int

    def _signature(self, key: str, expires: int) -> str:
        message = f"{key}:{expires}".encode()
        return hmac.new(self.secret, message, hashlib.sha256).hexdigest()[:32]

    def url_for(self, key: str, *, now: float | None = None) -> str:
        now = time.time() if now is None else now
        expires = int((now + self.ttl_s) // _EXPIRY_BUCKET_S + 1) * _EXPIRY_BUCKET_S
        query = urlencode({"expires": expires, "signature": self._signature(key, expires)})
        return f"{self.public_url.rstrip('/')}/files/{key}?{query}"

    def is_valid(self, key: str, *, expires: int, signature: str, now: float | None = None) -> bool:
        now = time.time() if now is None else now
        if expires < now:
            return False
        # As bytes: compare_digest refuses str with non-ASCII characters, and anyone can send those.
        return hmac.compare_digest(self._signature(key, expires).encode(), signature.encode())


class LocalFileStore:
    serves_files = True

    def __init__(self, root: Path, *, secret: bytes, public_url: str, url_ttl_s: int) -> None:
        self.root = root
        self.signer = UrlSigner(secret=secret, public_url=public_url, ttl_s=url_ttl_s)
        root.mkdir(parents=True, exist_ok=True)  # once, at assembly

    # -- writing --------------------------------------------------------------------------

    async def put_stream(self, key: str, chunks: AsyncIterator[bytes]) -> int:
        target = self._target(key)
        temporary = self._temporary(key)
        written = 0
        try:
            file = await asyncio.to_thread(temporary.open, "wb")
            try:
                async for chunk in chunks:
                    await asyncio.to_thread(file.write, chunk)
                    written += len(chunk)
            finally:
                await asyncio.to_thread(file.close)
            await asyncio.to_thread(os.replace, temporary, target)
        except BaseException:  # cancelled too: never leave a partial file behind
            await asyncio.to_thread(temporary.unlink, missing_ok=True)
            raise
        return written

    async def put_file(self, key: str, source: Path) -> None:
        await asyncio.to_thread(self._move_into_place, source, self._target(key))

    async def delete(self, key: str) -> None:
        await asyncio.to_thread(self._target(key).unlink, missing_ok=True)

    def _move_into_place(self, source: Path, target: Path) -> None:
        try:
            os.replace(source, target)  # atomic on the same filesystem
            return
        except OSError as error:
            if error.errno != errno.EXDEV:
                raise
        # Another filesystem: copy next to the target, then rename into place.
        temporary = self._temporary(target.name)
        try:
            shutil.copyfile(source, temporary)
            os.replace(temporary, target)
        except BaseException:
            temporary.unlink(missing_ok=True)
            raise
        source.unlink(missing_ok=True)

    # -- reading --------------------------------------------------------------------------

    async def exists(self, key: str) -> bool:
        return await self.local_file(key) is not None

    async def get(self, key: str) -> AsyncIterator[bytes] | None:
        found = await self.local_file(key)
        if found is None:
            return None
        try:
            file = await asyncio.to_thread(found.path.open, "rb")
        except FileNotFoundError:  # deleted since
            return None
        return _read_blocks(file)

    # -- URLs and serving -----------------------------------------------------------------

    def url_for(self, key: str) -> str:
        self._target(key)  # refuse to sign a key that could never be served
        return self.signer.url_for(key)

    def verify(self, key: str, *, expires: int, signature: str) -> bool:
        return self.signer.is_valid(key, expires=expires, signature=signature)

    async def local_file(self, key: str) -> LocalFile | None:
        if not SAFE_KEY.match(key):
            return None
        path = self.root / key
        try:
            found = await asyncio.to_thread(os.stat, path)
        except FileNotFoundError:
            return None
        return LocalFile(path=path, stat=found) if stat.S_ISREG(found.st_mode) else None

    def path_of(self, key: str) -> Path | None:
        """The file for a key, or None (blocking: for tools and tests, not the event loop)."""
        if not SAFE_KEY.match(key):
            return None
        path = self.root / key
        return path if path.is_file() else None

    # -- keys -----------------------------------------------------------------------------

    def _target(self, key: str) -> Path:
        return self.root / check_key(key)

    def _temporary(self, key: str) -> Path:
        return self.root / f".{key}.{secrets.token_hex(6)}.part"


async def _read_blocks(file: BinaryIO) -> AsyncIterator[bytes]:
    try:
        while block := await asyncio.to_thread(file.read, READ_BLOCK):
            yield block
    finally:
        await asyncio.to_thread(file.close)
