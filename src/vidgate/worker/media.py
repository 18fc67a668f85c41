"""A task's media as files: inputs fetched for the provider, results streamed into the store.

Nothing here holds a whole input or result in memory: downloads stream to files in
``work_dir`` (see net/fetch.py), and results reach the store by a move when possible.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

from vidgate.net.fetch import FetchError, FetchPolicy, Network, UnsafeURLError, fetch_to_file
from vidgate.providers.base import JobStatus, LogicalError, TechnicalError
from vidgate.storage.base import FileStore
from vidgate.storage.copies import download

InputErrorCode = Literal["invalid_input", "input_fetch_failed"]


class InputRejected(Exception):
    """An input URL that may not (``invalid_input``) or could not (``input_fetch_failed``) be
    fetched; the message names the field, e.g. ``image_urls[0]: ...``."""

    def __init__(self, code: InputErrorCode, message: str) -> None:
        super().__init__(message)
        self.code: InputErrorCode = code
        self.message = message


async def fetch_inputs(
    urls: Sequence[str],
    *,
    policy: FetchPolicy,
    network: Network | None = None,
    work_dir: Path,
) -> tuple[Path, ...]:
    """Fetch the input images into ``work_dir``; the caller deletes the files when done."""
    paths: list[Path] = []
    try:
        for index, url in enumerate(urls[:1]):  # the renderers use the first image
            try:
                fetched = await fetch_to_file(
                    url, policy=policy, directory=work_dir, expect="image", network=network
                )
            except UnsafeURLError as error:
                raise InputRejected("invalid_input", f"image_urls[{index}]: {error}") from error
            except FetchError as error:
                message = f"image_urls[{index}]: {error}"
                raise InputRejected("input_fetch_failed", message) from error
            paths.append(fetched.path)
    except BaseException:
        await asyncio.to_thread(_discard, paths)
        raise
    return tuple(paths)


async def copy_stored_inputs(
    store: FileStore, keys: Sequence[str], *, work_dir: Path
) -> tuple[Path, ...]:
    """Copy input images that are already in ``store`` (uploads, checked when they arrived)
    into ``work_dir``: streamed from the store itself, not over HTTP, so no address policy has to
    let the gateway's own URL through. The caller deletes the copies when done."""
    paths: list[Path] = []
    try:
        for index, key in enumerate(keys[:1]):  # the renderers use the first image
            copy = work_dir / f"{secrets.token_hex(8)}-{key}"
            if not await download(store, key, copy):
                message = f"input_reference[{index}]: the uploaded image is no longer stored"
                raise InputRejected("input_fetch_failed", message)
            paths.append(copy)
    except BaseException:
        await asyncio.to_thread(_discard, paths)
        raise
    return tuple(paths)


async def store_result(
    store: FileStore,
    key: str,
    status: JobStatus,
    *,
    policy: FetchPolicy,
    network: Network | None = None,
    work_dir: Path,
    provider: str = "the provider",
) -> None:
    """Put a succeeded job's result into ``store`` under ``key``.

    Raises TechnicalError when the upstream result cannot be downloaded (worth retrying) and
    LogicalError when ``provider`` reported success without any result.
    """
    if status.result_file is not None:
        await store.put_file(key, status.result_file)
        return
    if not status.result_urls:
        raise LogicalError(f"{provider} reported success without a result")
    try:
        downloaded = await fetch_to_file(
            status.result_urls[0],
            policy=policy,
            directory=work_dir,
            expect="video",
            network=network,
        )
    except (FetchError, UnsafeURLError) as error:
        raise TechnicalError(f"could not download the result: {error}") from error
    try:
        await store.put_file(key, downloaded.path)
    finally:  # already gone when it was moved into the store
        await asyncio.to_thread(_discard, [downloaded.path])


def _discard(paths: Sequence[Path]) -> None:
    for path in paths:
        path.unlink(missing_ok=True)
