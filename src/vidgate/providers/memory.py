"""An in-memory provider that follows a script: the test double for the provider interface.

It lives in the package (like procrastinate's InMemoryConnector) so tests drive the real worker
through the real interface instead of patching our own code.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from vidgate.providers.base import (
    GenerationRequest,
    JobLost,
    JobState,
    JobStatus,
    ProviderCheck,
    ProviderError,
    Submission,
)


@dataclass
class InMemoryProvider:
    name: str = "memory"
    runs_locally: bool = False
    poll_interval_s: float | None = None
    max_poll_interval_s: float | None = None
    max_concurrent: int | None = None
    trusted_hosts: frozenset[str] = frozenset()
    # Each submit pops the next item: an exception to raise, or None to accept.
    submit_script: deque[ProviderError | None] = field(default_factory=deque)
    # Each poll pops the next item (the last one repeats): a status, or an exception to raise.
    # Without a script, a job it never issued is lost, as with a real upstream.
    poll_script: deque[JobStatus | ProviderError] = field(default_factory=deque)
    submitted: list[GenerationRequest] = field(default_factory=list)
    polled: list[str] = field(default_factory=list)
    cancelled: list[str] = field(default_factory=list)
    closed: bool = False

    async def submit(self, request: GenerationRequest) -> Submission:
        outcome = self.submit_script.popleft() if self.submit_script else None
        if outcome is not None:
            raise outcome
        self.submitted.append(request)
        return Submission(upstream_id=f"{self.name}-job-{len(self.submitted)}")

    async def poll(self, upstream_id: str) -> JobStatus:
        self.polled.append(upstream_id)
        if not self.poll_script:
            if upstream_id not in self._issued():
                raise JobLost(f"{self.name} never issued job {upstream_id}")
            return JobStatus(state=JobState.RUNNING, progress=0)
        outcome = self.poll_script.popleft() if len(self.poll_script) > 1 else self.poll_script[0]
        if isinstance(outcome, ProviderError):
            raise outcome
        return outcome

    def _issued(self) -> set[str]:
        return {f"{self.name}-job-{n}" for n in range(1, len(self.submitted) + 1)}

    async def cancel(self, upstream_id: str) -> None:
        self.cancelled.append(upstream_id)

    async def check(self) -> ProviderCheck:
        return ProviderCheck(reachable=True, authenticated=True, detail="in-memory script")

    async def close(self) -> None:
        self.closed = True
