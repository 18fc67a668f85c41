"""The FileStore seam: where result files live and which URL clients get for them.

The local store (storage/local.py) keeps files in a directory that the gateway serves itself
(GET /files/{key}, signed, expiring URLs); an S3 store will hand out presigned bucket URLs.
Writes are atomic: a reader sees the whole file under its key or nothing.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol


class UnsafeKeyError(ValueError):
    """The key is not one this store accepts (path separators, leading dots, too long)."""


@dataclass(frozen=True)
class LocalFile:
    """A stored file on this machine, ready to be served."""

    path: Path
    stat: os.stat_result


class FileStore(Protocol):
    async def put_stream(self, key: str, chunks: AsyncIterator[bytes]) -> int:
        """Store the chunks under ``key``; returns the number of bytes written."""
        ...

    async def put_file(self, key: str, source: Path) -> None:
        """Store a finished local file under ``key``; ``source`` is consumed (moved if possible)."""
        ...

    async def delete(self, key: str) -> None:
        """Remove ``key``; a missing key is not an error."""
        ...

    def url_for(self, key: str) -> str:
        """The URL clients download ``key`` from."""
        ...

    # Serving through the gateway (GET /files/{key}). A store whose URLs point elsewhere (S3's
    # presigned URLs) accepts no signature and has no local files.

    def verify(self, key: str, *, expires: int, signature: str) -> bool:
        """Whether ``expires`` and ``signature`` are those of a URL this store handed out."""
        ...

    async def local_file(self, key: str) -> LocalFile | None:
        """The file to serve for ``key``, or None when it is absent (or the key is unsafe)."""
        ...
