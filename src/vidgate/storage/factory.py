"""build_file_store(settings): the configured FileStore (the data dir's files/ folder for now)."""

from __future__ import annotations

from vidgate.settings import Settings
from vidgate.storage.base import FileStore
from vidgate.storage.local import LocalFileStore


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
        # The S3 store (presigned URLs) goes here.
        raise StorageConfigError(
            "VIDGATE_STORAGE_URL: s3:// storage is not supported yet; "
            "leave it unset to keep result files in the data dir"
        )
    raise StorageConfigError(
        f"VIDGATE_STORAGE_URL: unsupported storage {scheme + '://' if scheme else 'location'}; "
        "leave it unset to keep result files in the data dir"
    )
