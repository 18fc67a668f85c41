"""The external policy: an OpenAI-compatible `POST /v1/moderations` endpoint (OpenAI's own, or
any gateway speaking its format), called through the official openai SDK.

A prompt the endpoint flags (or, with `categories`, flags in one of those categories) is a 451.
An endpoint that cannot answer has not judged the prompt, so that is never a 451: with
`on_error = "block"` the create is refused with a 503 and Retry-After, with "allow" it goes on
unchecked; either way the operator's log says why.
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import urlsplit

import openai
from openai import AsyncOpenAI

from vidgate.errors import UpstreamUnavailable
from vidgate.moderation.base import blocked
from vidgate.moderation.policy import ExternalConfig

logger = logging.getLogger("vidgate.moderation")

BLOCKED_BY_SERVICE = "the prompt was blocked by this gateway's content moderation"
UNAVAILABLE = "the content moderation service is unavailable, so the prompt was not checked"
UNAVAILABLE_RETRY_AFTER_S = 5


class MalformedVerdict(Exception):
    """The endpoint answered, but not with a moderation result."""


def flagged_categories(response: Any, *, only: tuple[str, ...]) -> list[str] | None:
    """The categories that block this prompt ([] when none is named, e.g. only `flagged` set),
    or None when it passes. Read leniently, as compatible endpoints send fewer or other
    categories than OpenAI's; MalformedVerdict when there is no verdict at all."""
    results = getattr(response, "results", None)
    if not isinstance(results, list) or not results:
        raise MalformedVerdict("the answer has no results")
    result = results[0]
    flagged = getattr(result, "flagged", None)
    if not isinstance(flagged, bool):
        raise MalformedVerdict("the result has no boolean `flagged`")
    # The SDK's model of the categories, keyed by their wire names (`violence/graphic`).
    to_dict = getattr(getattr(result, "categories", None), "to_dict", None)
    raw = to_dict() if callable(to_dict) else {}
    named = [name for name, value in raw.items() if value is True]
    if only:
        hits = [name for name in only if name in named]
        return hits or None
    return named if flagged else None


def describe_failure(error: Exception, *, timeout_s: float) -> str:
    """For the log: what went wrong, without the response body (an endpoint refusing a key
    may quote part of it back)."""
    if isinstance(error, openai.APITimeoutError):
        return f"no answer within {timeout_s:g} s"
    if isinstance(error, openai.APIStatusError):
        return f"HTTP {error.status_code}"
    if isinstance(error, openai.APIConnectionError):
        cause = error.__cause__
        return f"cannot connect ({type(cause).__name__}: {cause})" if cause else "cannot connect"
    return str(error)


class ExternalPolicy:
    def __init__(self, config: ExternalConfig) -> None:
        self.config = config
        self.endpoint = urlsplit(config.base_url).netloc  # for log lines; no credentials there
        self._client = AsyncOpenAI(
            base_url=config.base_url,
            api_key=config.api_key,
            timeout=config.timeout_s,
            max_retries=config.max_retries,
        )

    async def check(self, *, model: str, prompt: str) -> None:
        if not prompt.strip():  # nothing to judge (an image-to-video task without a prompt)
            return
        try:
            response = await self._client.moderations.create(input=prompt, model=self.config.model)
            categories = flagged_categories(response, only=self.config.categories)
        except (openai.APIError, MalformedVerdict) as error:
            self._not_judged(describe_failure(error, timeout_s=self.config.timeout_s))
            return
        if categories is None:
            return
        shown = f" (flagged: {', '.join(categories)})" if categories else ""
        logger.info("moderation: %s flagged a %s prompt%s", self.endpoint, model, shown)
        raise blocked(BLOCKED_BY_SERVICE + shown)

    def _not_judged(self, reason: str) -> None:
        if self.config.on_error == "allow":
            logger.warning(
                "moderation: %s failed (%s); the prompt goes on unchecked (on_error = allow)",
                self.endpoint,
                reason,
            )
            return
        logger.warning(
            "moderation: %s failed (%s); the create is refused with 503 (on_error = block)",
            self.endpoint,
            reason,
        )
        raise UpstreamUnavailable(
            f"{UNAVAILABLE}; retry shortly",
            headers={"Retry-After": str(UNAVAILABLE_RETRY_AFTER_S)},
        )

    async def close(self) -> None:
        await self._client.close()
