"""A moderation file once read and checked (moderation/policy_file.py): what the policies are
built from. The external endpoint's secret is kept out of repr(), so no log line or error
message can carry it."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal

DEFAULT_EXTERNAL_MODEL = "omni-moderation-latest"
DEFAULT_TIMEOUT_S = 5.0
DEFAULT_MAX_RETRIES = 1

OnError = Literal["block", "allow"]


@dataclass(frozen=True)
class RuleLists:
    words: tuple[str, ...] = ()  # normalised (builtin.normalise) when read
    patterns: tuple[re.Pattern[str], ...] = ()  # compiled case-insensitive

    def __bool__(self) -> bool:
        return bool(self.words or self.patterns)


@dataclass(frozen=True, kw_only=True)
class ExternalConfig:
    """An OpenAI-compatible /v1/moderations endpoint."""

    base_url: str  # the API base as the openai SDK takes it, e.g. https://api.openai.com/v1
    api_key: str = field(repr=False)
    model: str = DEFAULT_EXTERNAL_MODEL
    timeout_s: float = DEFAULT_TIMEOUT_S
    max_retries: int = DEFAULT_MAX_RETRIES
    # What a create gets while the endpoint cannot answer: "block" refuses it with a 503 (the
    # prompt was not judged, so not a 451); "allow" lets it through unchecked.
    on_error: OnError = "block"
    # Only these flagged categories block; empty: the endpoint's `flagged` decides.
    categories: tuple[str, ...] = ()


@dataclass(frozen=True, kw_only=True)
class ModerationPolicy:
    source: str  # the file it was read from
    everywhere: RuleLists = field(default_factory=RuleLists)
    per_model: dict[str, RuleLists] = field(default_factory=dict)  # added to `everywhere`
    external: ExternalConfig | None = None
