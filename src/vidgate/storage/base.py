"""The FileStore seam: where result files live and which URL clients get for them.

The local store (storage/local.py) keeps files in a directory that the gateway serves itself
(GET /files/{key}, signed, expiring URLs); the S3 store (storage/s3.py) keeps them in a bucket
and hands out presigned URLs of the bucket, so the gateway serves none itself.
Writes are atomic: a reader sees the whole file under its key or nothing.
"""

from __future__ import annotations

import os
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

# No separators, no leading dot: temporary files (".<key>.<token>.part") can never be served,
# and a key means the same file in a directory and in a bucket.
SAFE_KEY = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,199}$")


class UnsafeKeyError(ValueError):
    """The key is not one this store accepts (path separators, leading dots, too long)."""


class StorageError(OSError):
    """The store could not be read or written (the bucket unreachable, access denied)."""


def check_key(key: str) -> str:
    if not SAFE_KEY.match(key):
        raise UnsafeKeyError(f"unsafe storage key {key!r}")
    return key


@dataclass(frozen=True)
class LocalFile:
    """A stored file on this machine, ready to be served."""

    path: Path
    stat: os.stat_result


class FileStore(Protocol):
    # Whether GET /files/{key} serves this store's files; False for a store whose URLs point
    # elsewhere (S3's presigned URLs): it accepts no signature and has no local files.
    serves_files: bool

    async def put_stream(self, key: str, chunks: AsyncIterator[bytes]) -> int:
        """Store the chunks under ``key``; returns the number of bytes written."""
        ...

    async def put_file(self, key: str, source: Path) -> None:
        """Store a finished local file under ``key``; ``source`` is consumed (moved if possible)."""
        ...

    async def delete(self, key: str) -> None:
        """Remove ``key``; a missing key is not an error."""
        ...

    async def exists(self, key: str) -> bool:
        """Whether a file is stored under ``key``."""
        ...

    async def get(self, key: str) -> AsyncIterator[bytes] | None:
        """The stored file's bytes as a stream of chunks, or None when it is absent."""
        ...

    def url_for(self, key: str) -> str:
        """The URL clients download ``key`` from."""
        ...

    # Serving through the gateway (GET /files/{key}).

    def verify(self, key: str, *, expires: int, signature: str) -> bool:
        """Whether ``expires`` and ``signature`` are those of a URL this store handed out."""
        ...

    async def local_file(self, key: str) -> LocalFile | None:
        """The file to serve for ``key``, or None when it is absent (or the key is unsafe)."""
        ...
