"""Stored files as files on this machine, for work that needs a path (PyAV decoding previews,
providers reading input images), whichever store holds them: read through the store's
streaming `get`, never whole into memory."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from vidgate.net.fetch import write_chunks
from vidgate.storage.base import FileStore


async def download(store: FileStore, key: str, target: Path) -> bool:
    """Copy the file stored under ``key`` to ``target``; False when nothing is stored there.
    A copy that fails half-way is removed."""
    chunks = await store.get(key)
    if chunks is None:
        return False
    await asyncio.to_thread(target.parent.mkdir, parents=True, exist_ok=True)
    try:
        file = await asyncio.to_thread(target.open, "wb")
        try:
            await write_chunks(chunks, file)
        finally:
            await asyncio.to_thread(file.close)
    except BaseException:  # cancelled too
        await asyncio.to_thread(target.unlink, missing_ok=True)
        raise
    return True


@asynccontextmanager
async def local_path(store: FileStore, key: str, *, work_dir: Path) -> AsyncIterator[Path | None]:
    """The stored file as a path for the block (None when absent): the file itself when the
    store keeps it on this machine, else a download into ``work_dir`` removed afterwards.
    The block reads the file; it must not change or remove it."""
    found = await store.local_file(key)
    if found is not None:
        yield found.path
        return
    copy = work_dir / f".{secrets.token_hex(8)}-{key}"
    try:
        yield copy if await download(store, key, copy) else None
    finally:
        await asyncio.to_thread(copy.unlink, missing_ok=True)
