"""The built-in `sample` provider: renders a real, clearly labelled MP4 on the CPU.

It behaves like an upstream: submit() starts a job and returns its id, poll() reports progress.
Jobs run in threads of this process, so a restart loses them; poll() then raises JobLost and
the worker submits again (`runs_locally`), which costs nobody anything. While the process lives,
the worker that submitted a job follows it to its end inside one held lease.

Failure injection (only with VIDGATE_SAMPLE_FAILURE_INJECTION=true), by markers in the prompt:
  [fail] or [fail: message]  the job fails with that error message
  [slow:N]                   the job waits N seconds before rendering (a long upstream queue)
  [flaky:N]                  the first N submits raise a technical (retryable) error
"""

from __future__ import annotations

import asyncio
import logging
import math
import re
import secrets
import shutil
import threading
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from vidgate.providers.base import (
    GenerationRequest,
    JobLost,
    JobState,
    JobStatus,
    ProviderCheck,
    Submission,
    TechnicalError,
)
from vidgate.providers.sample_render import RenderCancelled, RenderSpec, render_sample_video

logger = logging.getLogger("vidgate.providers.sample")

FPS = 24
_MARKER = re.compile(r"\[(fail|slow|flaky)(?::\s*([^\]]*))?\]", re.IGNORECASE)
DEFAULT_FAILURE = "the sample provider was asked to fail ([fail] in the prompt)"


@dataclass(frozen=True, kw_only=True)
class Injection:
    fail: str | None = None
    slow_seconds: float = 0.0
    flaky_submits: int = 0


def parse_injection(prompt: str) -> tuple[str, Injection]:
    """The prompt without markers, and what the markers ask for."""
    fail: str | None = None
    slow = 0.0
    flaky = 0
    for match in _MARKER.finditer(prompt):
        kind, argument = match.group(1).lower(), (match.group(2) or "").strip()
        if kind == "fail":
            fail = argument or DEFAULT_FAILURE
        elif kind == "slow":
            slow = float(argument or 5)
        else:
            flaky = int(argument or 1)
    clean = " ".join(_MARKER.sub("", prompt).split())
    return clean, Injection(fail=fail, slow_seconds=slow, flaky_submits=flaky)


@dataclass
class _Job:
    progress: float = 0.0
    error: str | None = None
    done: bool = False
    stop: threading.Event = field(default_factory=threading.Event)


async def _wait_unless_stopped(stop: threading.Event, seconds: float) -> None:
    """Sleep `seconds`, cut short by `stop`: a stopping process must not wait out a [slow:N]."""
    # `stop` is a threading.Event (the render thread reads it too): looked at every 0.1 s.
    steps = max(1, math.ceil(seconds / 0.1))
    for _ in range(steps):
        if stop.is_set():
            return
        await asyncio.sleep(seconds / steps)


class SampleProvider:
    name = "sample"
    runs_locally = True
    poll_interval_s: float | None = 0.25  # a local poll is a dict lookup
    max_poll_interval_s: float | None = None
    max_concurrent: int | None = None  # renders queue in its own thread pool
    trusted_hosts: frozenset[str] = frozenset()  # its results are local files

    def __init__(
        self, *, work_dir: Path, failure_injection: bool = False, max_parallel_renders: int = 1
    ) -> None:
        self.work_dir = work_dir
        self.failure_injection = failure_injection
        self._jobs: dict[str, _Job] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._render_slots = asyncio.Semaphore(max_parallel_renders)
        self._submits: Counter[str] = Counter()
        work_dir.mkdir(parents=True, exist_ok=True)

    def output_path(self, upstream_id: str) -> Path:
        return self.work_dir / f"{upstream_id}.mp4"

    async def submit(self, request: GenerationRequest) -> Submission:
        prompt, injection = (
            parse_injection(request.prompt)
            if self.failure_injection
            else (request.prompt, Injection())
        )
        if injection.flaky_submits:  # counted only for [flaky] prompts, so nothing accumulates
            self._submits[request.task_id] += 1
            if self._submits[request.task_id] <= injection.flaky_submits:
                raise TechnicalError("sample provider is flaky on purpose ([flaky] in the prompt)")
        # Unique per submit: a render after a crash never shares a path with the one before.
        upstream_id = f"sample_{request.task_id}_{secrets.token_hex(4)}"
        output = self.output_path(upstream_id)
        output.unlink(missing_ok=True)
        image = None
        if request.images:  # the caller deletes its files once submit returns
            image = self.work_dir / f"{upstream_id}.input"
            await asyncio.to_thread(shutil.copyfile, request.images[0], image)
        job = _Job()
        self._jobs[upstream_id] = job
        spec = RenderSpec(
            prompt=prompt or "(no prompt)",
            width=request.width,
            height=request.height,
            seconds=request.seconds,
            fps=FPS,
            image=image,
            label=f"SAMPLE - vidgate - {request.model}",
        )
        task = asyncio.create_task(self._run(job, spec, output, injection))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return Submission(upstream_id=upstream_id)

    async def _run(self, job: _Job, spec: RenderSpec, output: Path, injection: Injection) -> None:
        try:
            if injection.slow_seconds:
                await _wait_unless_stopped(job.stop, injection.slow_seconds)
                if job.stop.is_set():  # cancelled, or the process is stopping (close)
                    raise RenderCancelled()
            if injection.fail:
                job.error = injection.fail
                return
            async with self._render_slots:

                def progress(fraction: float) -> None:
                    job.progress = fraction

                await asyncio.to_thread(
                    render_sample_video,
                    spec,
                    output,
                    on_progress=progress,
                    should_stop=job.stop.is_set,
                )
        except RenderCancelled:
            job.error = "cancelled"
        except ValueError as exc:  # bad input, e.g. an image that does not decode
            job.error = str(exc)
        except Exception as exc:
            logger.exception("sample render failed")
            job.error = f"sample render failed: {exc}"
        finally:
            if spec.image is not None:
                await asyncio.to_thread(spec.image.unlink, missing_ok=True)
            job.done = True

    async def poll(self, upstream_id: str) -> JobStatus:
        job = self._jobs.get(upstream_id)
        if job is None:
            output = self.output_path(upstream_id)
            if output.exists():  # finished before a restart, not yet stored
                return JobStatus(state=JobState.SUCCEEDED, progress=100, result_file=output)
            raise JobLost(f"sample job {upstream_id} is not running in this process")
        if not job.done:
            return JobStatus(state=JobState.RUNNING, progress=int(job.progress * 100))
        del self._jobs[upstream_id]
        if job.error is not None:
            return JobStatus(state=JobState.FAILED, error=job.error)
        return JobStatus(
            state=JobState.SUCCEEDED, progress=100, result_file=self.output_path(upstream_id)
        )

    async def cancel(self, upstream_id: str) -> None:
        job = self._jobs.get(upstream_id)
        if job is not None:
            job.stop.set()

    async def close(self) -> None:
        for job in self._jobs.values():
            job.stop.set()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def check(self) -> ProviderCheck:
        writable = await asyncio.to_thread(_writable, self.work_dir)
        detail = f"renders locally into {self.work_dir}"
        if not writable:
            detail = f"cannot write to {self.work_dir}"
        return ProviderCheck(reachable=writable, authenticated=None, detail=detail)


def _writable(directory: Path) -> bool:
    try:
        directory.mkdir(parents=True, exist_ok=True)
        probe = directory / f".check-{secrets.token_hex(4)}"
        probe.touch()
        probe.unlink()
    except OSError:
        return False
    return True
