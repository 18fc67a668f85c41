"""What the HTTP upstream adapters read alike from an answer's headers."""

from __future__ import annotations

import contextlib
import email.utils
import time
from collections.abc import Mapping


def retry_after_s(headers: Mapping[str, str]) -> float | None:
    """The upstream's Retry-After hint in seconds (retry-after-ms, seconds or an HTTP date)."""
    milliseconds = headers.get("retry-after-ms")
    with contextlib.suppress(TypeError, ValueError):
        if milliseconds is not None and float(milliseconds) >= 0:
            return float(milliseconds) / 1000
    value = headers.get("retry-after")
    if value is None:
        return None
    with contextlib.suppress(ValueError):
        seconds = float(value)
        return seconds if seconds >= 0 else None
    with contextlib.suppress(TypeError, ValueError, IndexError):
        when = email.utils.parsedate_to_datetime(value)
        return max(0.0, when.timestamp() - time.time())
    return None
