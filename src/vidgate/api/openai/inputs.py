"""Reference images sent with a create (an upload or a data URL), kept in the FileStore.

The worker streams them from the store (worker/media.py copy_stored_inputs), not over HTTP: a
URL of our own would have to pass the fetcher's address policy, which refuses the loopback and
private addresses a gateway usually has. The key names the content (its SHA-256), so a retried
request names the same file (its Idempotency-Key fingerprint matches) and stores it only once.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator

from vidgate.errors import InvalidRequest
from vidgate.net.fetch import sniff_kind
from vidgate.storage.base import FileStore

# What the protocol takes (and what our renderers and the openai provider pass on).
IMAGE_EXTENSIONS = {"image/png": "png", "image/jpeg": "jpg", "image/webp": "webp"}
KEY_PREFIX = "input_"


def input_key(image: bytes) -> str:
    """The store key of a reference image; InvalidRequest unless it is a PNG, JPEG or WebP
    (judged by its bytes, whatever type it was sent as)."""
    extension = IMAGE_EXTENSIONS.get(sniff_kind(image) or "")
    if extension is None:
        raise InvalidRequest("input_reference: must be a PNG, JPEG or WebP image")
    return f"{KEY_PREFIX}{hashlib.sha256(image).hexdigest()[:48]}.{extension}"


async def store_input(store: FileStore, key: str, image: bytes) -> None:
    if await store.exists(key):
        return  # the same image, stored before

    async def chunks() -> AsyncIterator[bytes]:
        yield image

    await store.put_stream(key, chunks())
