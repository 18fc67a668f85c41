"""Result files in a local directory, handed out as signed, expiring URLs served by the gateway."""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode

_SAFE_KEY = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,199}$")
# URLs expire on an hour boundary so repeated polls within the hour get the same URL.
_EXPIRY_BUCKET_S = 3600


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
        return hmac.compare_digest(self._signature(key, expires), signature)


class LocalFileStore:
    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)

    def path_of(self, key: str) -> Path | None:
        """The file for a key, or None for keys that are malformed or absent."""
        if not _SAFE_KEY.match(key):
            return None
        path = self.root / key
        return path if path.is_file() else None

    def put_file(self, key: str, source: Path) -> str:
        """Move a finished file into the store (atomic on the same filesystem)."""
        if not _SAFE_KEY.match(key):
            raise ValueError(f"unsafe storage key {key!r}")
        target = self.root / key
        try:
            os.replace(source, target)
        except OSError:  # another filesystem: copy, then rename into place
            temporary = target.with_name(f".{key}.part")
            temporary.write_bytes(source.read_bytes())
            os.replace(temporary, target)
            source.unlink(missing_ok=True)
        return key

    def put_bytes(self, key: str, data: bytes) -> str:
        if not _SAFE_KEY.match(key):
            raise ValueError(f"unsafe storage key {key!r}")
        temporary = self.root / f".{key}.part"
        temporary.write_bytes(data)
        os.replace(temporary, self.root / key)
        return key
