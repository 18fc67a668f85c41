"""One configured upstream instance: a `[providers.NAME]` table of the providers file
(VIDGATE_PROVIDERS_PATH), after providers/config_file.py has read and checked it.

The secret itself never appears in the file (only `api_key_env` or `api_key_file`), and it is
kept out of repr(), so neither a log line nor an error message can carry it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, kw_only=True)
class ProviderConfig:
    name: str  # what catalogue channels call it
    kind: str  # apimall, openai (later diffusers)
    base_url: str  # trusted: the operator configured it, so it may be private
    api_key: str | None = field(default=None, repr=False)
    connect_timeout_s: float = 5.0
    request_timeout_s: float = 30.0
    # First poll this long after submit; later polls back off (with jitter) up to the maximum.
    poll_interval_s: float = 5.0
    max_poll_interval_s: float = 30.0
    max_concurrent: int | None = None  # upstream jobs in flight at once, all workers together
    options: dict[str, Any] = field(default_factory=dict)  # kind-specific settings
