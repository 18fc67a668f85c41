"""The provider interface: a small async contract every upstream or local model implements.

Adapters never touch the database. They raise TechnicalError for failures worth retrying (timeouts,
5xx, 429, a lost local job) and LogicalError for failures that end the task (rejected input,
moderation), which the worker turns into `failed` plus a refund. Two technical errors say more
about a submit: ChannelFault (the channel itself is broken: its breaker opens and the task fails
over) and SubmitUncertain (the answer was lost, so the upstream may hold the job: the same channel
is asked again with the same idempotency key, never another one).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Protocol


class JobState(StrEnum):
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


@dataclass(frozen=True, kw_only=True)
class GenerationRequest:
    task_id: str
    model: str
    upstream_model: str | None
    type: str
    prompt: str
    options: dict[str, str | bool | int]
    seconds: int
    width: int
    height: int
    # Fetched input files (first image only for now). They exist only while submit() runs;
    # a provider that reads them later keeps its own copy.
    images: tuple[Path, ...] = ()
    # The user's image URLs as given (already fetched once, so known to be images): upstreams
    # whose protocol takes URLs (API Mall's) get these rather than the files.
    image_urls: tuple[str, ...] = ()


@dataclass(frozen=True, kw_only=True)
class Submission:
    upstream_id: str


@dataclass(frozen=True, kw_only=True)
class JobStatus:
    state: JobState
    progress: int = 0  # 0-100
    error: str | None = None  # set when FAILED: shown to the user as error_message
    # set when FAILED, when the upstream said why in words we know (e.g. "content_blocked")
    error_code: str | None = None
    # What the upstream charged for the job in its own credits, when it says (settlement).
    upstream_credits: int | None = None
    result_file: Path | None = None  # a finished local file (local providers)
    result_urls: tuple[str, ...] = field(default_factory=tuple)  # upstream URLs (remote providers)


class ProviderError(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class TechnicalError(ProviderError):
    """Transient: retry later (or fail over before anything was accepted upstream).

    `retry_after_s`: the upstream's own hint (a 429's Retry-After), a floor under our backoff.
    """

    def __init__(self, message: str, *, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class ChannelFault(TechnicalError):
    """The channel cannot take work at all (bad credentials, no credit upstream, forbidden):
    its breaker opens at once and a submit fails over to the next channel. Logged for the
    operator; the user sees only that the task moved on."""


class SubmitUncertain(TechnicalError):
    """A submit whose answer was lost (timeout, dropped connection): the upstream may have
    accepted it. Retried on the same channel with the same idempotency key, never failed over."""


class LogicalError(ProviderError):
    """Final: the task fails and is refunded; the message is shown to the user.

    `code`: the task's error_code (a TaskErrorCode value), e.g. "content_blocked" when the
    upstream's moderation refused the prompt.
    """

    def __init__(self, message: str, *, code: str = "provider_rejected") -> None:
        super().__init__(message)
        self.code = code


class JobLost(TechnicalError):
    """The provider no longer knows the job (a local renderer restarted). Only providers that
    declare `runs_locally` get their job submitted again; others fail the task."""


@dataclass(frozen=True, kw_only=True)
class ProviderCheck:
    """What `vidgate providers check` prints for one provider."""

    reachable: bool
    authenticated: bool | None = None  # None: the protocol cannot tell
    balance: int | None = None  # the upstream's credits, where the protocol has a balance
    detail: str = ""  # one line: what failed, or what was seen


class Provider(Protocol):
    name: str
    # True for local providers (the sample renderer, GPU models): their jobs live in this
    # process, so the worker follows one to its end inside one held lease, and a job lost with
    # a dead worker is rendered again, which costs nobody money.
    runs_locally: bool
    # How often its jobs are worth polling; None: the gateway's provider_poll_interval_s. A
    # remote job is polled more seldom as it ages, up to max_poll_interval_s (None: no backoff).
    poll_interval_s: float | None
    max_poll_interval_s: float | None
    # At most this many of its jobs in flight at once, across all workers (None: no cap);
    # tasks beyond it wait their turn.
    max_concurrent: int | None
    # Hosts (host or host:port) whose result URLs are fetched without the public-address check:
    # the operator configured this upstream, so its own host is trusted. Any other result URL
    # goes through the safe fetcher.
    trusted_hosts: frozenset[str]

    async def submit(self, request: GenerationRequest) -> Submission: ...

    async def poll(self, upstream_id: str) -> JobStatus: ...

    async def cancel(self, upstream_id: str) -> None: ...

    async def check(self) -> ProviderCheck:
        """Reachability, authentication and balance, for `vidgate providers check`."""
        ...

    async def close(self) -> None:
        """Stop local jobs and close connections (the gateway is shutting down)."""
        ...
