"""build_file_store(settings): the configured FileStore, the data dir's files/ folder or an S3
bucket (VIDGATE_STORAGE_URL=s3://bucket/prefix)."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from vidgate.settings import Settings
from vidgate.storage.base import FileStore, StorageError
from vidgate.storage.local import LocalFileStore

# S3's bucket naming rules (lowercase letters, digits, dots and hyphens, 3-63 long).
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_KEEP_LOCAL = "leave it unset to keep result files in the data dir"


class StorageConfigError(ValueError):
    """VIDGATE_STORAGE_URL names a store this version cannot build."""


def build_file_store(settings: Settings) -> FileStore:
    url = settings.storage_url
    if not url:
        return LocalFileStore(
            settings.files_dir,
            secret=settings.resolved_secret_key().encode(),
            public_url=settings.resolved_public_url,
            url_ttl_s=settings.result_url_ttl_s,
        )
    # Name only the scheme: the rest of the URL may carry credentials.
    scheme = url.partition("://")[0].lower() if "://" in url else ""
    if scheme == "s3":
        return _s3_store(settings, url)
    raise StorageConfigError(
        f"VIDGATE_STORAGE_URL: unsupported storage {scheme + '://' if scheme else 'location'}; "
        f"use s3://bucket/prefix, or {_KEEP_LOCAL}"
    )


def _s3_store(settings: Settings, url: str) -> FileStore:
    from vidgate.storage.s3 import MAX_URL_TTL_S, S3FileStore  # obstore loads only when used

    parts = urlsplit(url)
    if "@" in parts.netloc:
        raise StorageConfigError(
            "VIDGATE_STORAGE_URL: put no credentials in the URL; "
            "set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY instead"
        )
    bucket = parts.netloc
    if not bucket:
        raise StorageConfigError(
            "VIDGATE_STORAGE_URL: s3:// needs a bucket name, e.g. s3://my-bucket/videos"
        )
    if not _BUCKET.match(bucket):
        raise StorageConfigError(
            f"VIDGATE_STORAGE_URL: {bucket!r} is not an S3 bucket name "
            "(3-63 lowercase letters, digits, dots and hyphens)"
        )
    if parts.query or parts.fragment:
        raise StorageConfigError("VIDGATE_STORAGE_URL: s3://bucket/prefix takes no ? or # part")
    if settings.result_url_ttl_s > MAX_URL_TTL_S:
        raise StorageConfigError(
            f"VIDGATE_RESULT_URL_TTL_S: presigned S3 URLs last at most {MAX_URL_TTL_S} s "
            f"(7 days), not {settings.result_url_ttl_s}"
        )
    endpoint = settings.s3_endpoint_url
    if endpoint is not None:
        split = urlsplit(endpoint)
        if split.scheme not in ("http", "https") or not split.hostname:
            raise StorageConfigError(
                "VIDGATE_S3_ENDPOINT_URL: give an http(s) URL, e.g. http://127.0.0.1:9000"
            )
    try:
        return S3FileStore(
            bucket=bucket,
            prefix=parts.path.strip("/") or None,
            url_ttl_s=settings.result_url_ttl_s,
            endpoint_url=endpoint,
        )
    except StorageError as error:  # an AWS_* variable obstore could not parse
        raise StorageConfigError(str(error)) from None
