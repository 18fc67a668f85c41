"""Result files in an S3-compatible bucket, handed out as presigned GET URLs of the bucket.

Built on obstore, the Python binding of the Rust `object_store` crate (the Apache Arrow
project's, also under DataFusion, Polars and delta-rs), rather than aioboto3: it is async by
itself (no thread pool around a sync client, no aiobotocore pinning botocore's exact version),
one small wheel with no dependencies, it streams uploads as multipart from a file or an async
iterator with a bounded number of parts in flight, signs URLs (`obstore.sign`) without a
network round trip, and reads the usual AWS_* variables (keys, region, session tokens, web
identity, ECS and EC2 instance credentials) on its own. What it lacks, bucket administration,
the gateway never does.

An upload is one S3 object write (a single PUT, or a multipart upload completed at the end),
so a reader sees the whole file under its key or nothing.
"""

from __future__ import annotations

import asyncio
import mimetypes
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

import obstore
from obstore.store import S3Store

from vidgate.storage.base import LocalFile, StorageError, check_key

if TYPE_CHECKING:
    from obstore import Attributes
    from obstore.store import ClientConfig, S3Config

# S3's smallest part (the last may be smaller); a stream is held at most PART_SIZE x
# PARTS_IN_FLIGHT in memory while it uploads.
PART_SIZE = 5 * 1024 * 1024
PARTS_IN_FLIGHT = 4
READ_CHUNK = 1024 * 1024
# SigV4 presigned URLs are valid for at most seven days.
MAX_URL_TTL_S = 7 * 24 * 3600
# Whole-request limit: a large object's download (preview derivation) streams for a while.
REQUEST_TIMEOUT = timedelta(minutes=10)


class S3FileStore:
    serves_files = False

    def __init__(
        self,
        *,
        bucket: str,
        prefix: str | None,
        url_ttl_s: int,
        endpoint_url: str | None = None,
    ) -> None:
        """Credentials and region come from the environment (AWS_ACCESS_KEY_ID,
        AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN, AWS_REGION or AWS_DEFAULT_REGION, instance
        roles); ``endpoint_url`` names a non-AWS endpoint (MinIO, R2, moto)."""
        self.bucket = bucket
        self.prefix = prefix
        self.url_ttl = timedelta(seconds=url_ttl_s)
        client_options: ClientConfig = {
            "timeout": REQUEST_TIMEOUT,
            "connect_timeout": timedelta(seconds=10),
        }
        config: S3Config = {}
        if endpoint_url:
            config["endpoint"] = endpoint_url
            client_options["allow_http"] = endpoint_url.startswith("http://")
        try:
            self.store = S3Store(
                bucket, prefix=prefix, config=config, client_options=client_options
            )
        except obstore.exceptions.BaseError as error:  # a setting read from the environment
            raise StorageError(f"S3 storage: {_first_line(error)}") from None

    def __repr__(self) -> str:
        where = f"{self.bucket}/{self.prefix}" if self.prefix else self.bucket
        return f"S3FileStore(s3://{where})"

    # -- writing --------------------------------------------------------------------------

    async def put_stream(self, key: str, chunks: AsyncIterator[bytes]) -> int:
        written = 0

        async def counted() -> AsyncIterator[bytes]:
            nonlocal written
            async for chunk in chunks:
                written += len(chunk)
                yield chunk

        await self._put(key, counted())
        return written

    async def put_file(self, key: str, source: Path) -> None:
        await self._put(key, source)  # obstore reads the file in parts, off the event loop
        # Kept when the upload failed: the caller may retry.
        await asyncio.to_thread(source.unlink, missing_ok=True)

    async def _put(self, key: str, body: Path | AsyncIterator[bytes]) -> None:
        check_key(key)
        try:
            await obstore.put_async(
                self.store,
                key,
                body,
                attributes=_attributes_of(key),
                chunk_size=PART_SIZE,
                max_concurrency=PARTS_IN_FLIGHT,
            )
        except (obstore.exceptions.BaseError, OSError) as error:
            _raise_storage_error("store", key, error)

    async def delete(self, key: str) -> None:
        check_key(key)
        try:
            await obstore.delete_async(self.store, key)  # S3 answers a missing key as deleted
        except FileNotFoundError:
            return
        except (obstore.exceptions.BaseError, OSError) as error:
            _raise_storage_error("delete", key, error)

    # -- reading --------------------------------------------------------------------------

    async def exists(self, key: str) -> bool:
        check_key(key)
        try:
            await obstore.head_async(self.store, key)
        except FileNotFoundError:
            return False
        except (obstore.exceptions.BaseError, OSError) as error:
            _raise_storage_error("look up", key, error)
        return True

    async def get(self, key: str) -> AsyncIterator[bytes] | None:
        check_key(key)
        try:
            result = await obstore.get_async(self.store, key)
        except FileNotFoundError:
            return None
        except (obstore.exceptions.BaseError, OSError) as error:
            _raise_storage_error("read", key, error)
        return self._chunks(key, result.stream(min_chunk_size=READ_CHUNK))

    async def _chunks(self, key: str, stream: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        try:
            async for chunk in stream:
                yield chunk
        except (obstore.exceptions.BaseError, OSError) as error:
            _raise_storage_error("read", key, error)

    # -- URLs -----------------------------------------------------------------------------

    def url_for(self, key: str) -> str:
        # Signing is local work with the credentials at hand (fetched, then cached, when they
        # come from an instance role).
        return obstore.sign(self.store, "GET", check_key(key), self.url_ttl)

    def verify(self, key: str, *, expires: int, signature: str) -> bool:
        return False  # the bucket checks its own presigned URLs

    async def local_file(self, key: str) -> LocalFile | None:
        return None


def _attributes_of(key: str) -> Attributes:
    # What the local store's routes send: a type browsers play, a download named by its key.
    media_type = mimetypes.guess_type(key)[0] or "application/octet-stream"
    return {
        "Content-Type": media_type,
        "Content-Disposition": f'attachment; filename="{key}"',
        "Cache-Control": "private, max-age=3600",
    }


def _raise_storage_error(action: str, key: str, error: Exception) -> NoReturn:
    raise StorageError(f"S3: could not {action} {key}: {_first_line(error)}") from error


def _first_line(error: Exception) -> str:
    # obstore's messages carry a multi-line debug dump after the first line.
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
