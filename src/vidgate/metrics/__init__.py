"""Prometheus metrics: every definition, and the one-line helpers the rest of the code calls.

What a process observes itself (requests, claims, endings, refunds, provider errors, breakers,
webhook tries) lives here; what only the database knows (tasks by status, queue depth, the
oldest due task) is read at scrape time (metrics/scrape.py), so it is right however many
processes there are. Metric objects are made on first use, after `configure()` has chosen
between the in-process registry and prometheus-client's multiprocess files.

The helpers take plain values, so a caller needs one import and one line.
"""

from __future__ import annotations

import atexit
import os
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from prometheus_client import (
    GC_COLLECTOR,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    disable_created_metrics,
    values,
)
from prometheus_client.multiprocess import mark_process_dead

if TYPE_CHECKING:
    from vidgate.tasks.repository import TaskRecord

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

# The hot path answers in about a millisecond: the default buckets start at 5 ms.
_REQUEST_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_CLAIM_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)
_DURATION_BUCKETS = (1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 3600.0)
# A denoising step: milliseconds for a tiny model on a CPU, seconds for a 14B one at 720p.
_STEP_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class _Metrics:
    def __init__(self, *, multiprocess: bool) -> None:
        # In multiprocess mode values go to files and this registry is never read.
        disable_created_metrics()  # type: ignore[no-untyped-call]  # *_created: noise
        self.registry = CollectorRegistry()
        r = self.registry
        if not multiprocess:  # per-process collectors mean nothing summed over processes
            ProcessCollector(registry=r)
            r.register(GC_COLLECTOR)
        self.http_requests = Counter(
            "vidgate_http_requests",
            "HTTP requests answered, by method, route template and status",
            ("method", "route", "status"),
            registry=r,
        )
        self.http_duration = Histogram(
            "vidgate_http_request_duration_seconds",
            "Time from a request's arrival to its last response byte, by method and route",
            ("method", "route"),
            buckets=_REQUEST_BUCKETS,
            registry=r,
        )
        self.claim_latency = Histogram(
            "vidgate_task_claim_latency_seconds",
            "Time from a task step becoming due to a worker claiming it, by queue",
            ("queue",),
            buckets=_CLAIM_BUCKETS,
            registry=r,
        )
        self.task_duration = Histogram(
            "vidgate_task_duration_seconds",
            "Time from a task's creation to its end, by model and final status",
            ("model", "status"),
            buckets=_DURATION_BUCKETS,
            registry=r,
        )
        self.refunds = Counter(
            "vidgate_refunds",
            "Tasks refunded, by reason (the failure's error code, or cancelled)",
            ("reason",),
            registry=r,
        )
        self.provider_errors = Counter(
            "vidgate_provider_errors",
            "Failed provider calls by channel and kind (fault: breaker opened at once; "
            "technical: timeout, 5xx, 429)",
            ("channel", "kind"),
            registry=r,
        )
        self.breaker_open = Gauge(
            "vidgate_channel_breaker_open",
            "1 while a channel's circuit breaker is tripped (open or half-open) in any live "
            "process, 0 when closed",
            ("channel",),
            multiprocess_mode="livemax",
            registry=r,
        )
        self.webhook_tries = Counter(
            "vidgate_webhook_deliveries",
            "Webhook delivery tries by outcome (delivered, retry, failed: no more tries)",
            ("outcome",),
            registry=r,
        )
        # Local models (the diffusers provider), by provider name.
        self.local_load = Gauge(
            "vidgate_local_model_load_seconds",
            "Seconds the last load of a local model's pipeline took, by provider",
            ("provider",),
            multiprocess_mode="livemax",
            registry=r,
        )
        self.local_step = Histogram(
            "vidgate_local_step_seconds",
            "Seconds per denoising step of a local model, by provider",
            ("provider",),
            buckets=_STEP_BUCKETS,
            registry=r,
        )
        self.local_videos = Counter(
            "vidgate_local_videos",
            "Videos a local model generated, by provider (rate() * 3600: videos per hour)",
            ("provider",),
            registry=r,
        )
        self.local_peak_memory = Gauge(
            "vidgate_local_peak_gpu_memory_bytes",
            "Peak GPU memory allocated during a local model's last generation, by provider",
            ("provider",),
            multiprocess_mode="livemax",
            registry=r,
        )
        self._request_children: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}

    def request_children(self, method: str, route: str, status: int) -> tuple[Counter, Histogram]:
        # labels() validates and locks on every call; a request only needs a dict lookup.
        key = (method, route, status)
        children = self._request_children.get(key)
        if children is None:
            children = (
                self.http_requests.labels(method, route, str(status)),
                self.http_duration.labels(method, route),
            )
            self._request_children[key] = children
        return children


class _State:
    directory: Path | None = None  # multiprocess mode's shared directory
    metrics: _Metrics | None = None


_state = _State()


def multiprocess_dir() -> Path | None:
    """The shared metrics directory of this process, if multiprocess mode is on."""
    return _state.directory


def configure(directory: Path | None) -> None:
    """Choose where this process's metrics go: `directory` (VIDGATE_METRICS_DIR, else
    PROMETHEUS_MULTIPROC_DIR) for multiprocess mode, else an in-process registry. Call once,
    at process start, before any metric is observed."""
    if directory is None and os.environ.get(MULTIPROC_ENV):
        directory = Path(os.environ[MULTIPROC_ENV])
    _state.directory = _state.metrics = None
    if directory is None:
        return
    directory.mkdir(parents=True, exist_ok=True)
    os.environ[MULTIPROC_ENV] = str(directory)
    # prometheus-client picks its value class from the environment when first imported, which
    # may have happened before our settings were read: pick it again.
    if not getattr(values.ValueClass, "_multiprocess", False):
        values.ValueClass = values.MultiProcessValue()  # type: ignore[no-untyped-call]
    _state.directory = directory
    # A clean exit removes this process's live gauges (a breaker it no longer judges).
    atexit.register(mark_process_dead, os.getpid(), str(directory))


def _metrics() -> _Metrics:
    if _state.metrics is None:
        _state.metrics = _Metrics(multiprocess=_state.directory is not None)
    return _state.metrics


def registry() -> CollectorRegistry:
    """This process's registry (single-process mode)."""
    return _metrics().registry


# -- the helpers ---------------------------------------------------------------------------


def observe_request(method: str, route: str, status: int, seconds: float) -> None:
    counter, histogram = _metrics().request_children(method, route, status)
    counter.inc()
    histogram.observe(seconds)


def task_claimed(queue: str, waited_s: float) -> None:
    _metrics().claim_latency.labels(queue).observe(max(0.0, waited_s))


def task_ended(task: TaskRecord, status: str, *, at: datetime, refund: str | None = None) -> None:
    """`task` ended here as `status` at `at` (observed after the commit); `refund`: the reason
    it was refunded, if it was."""
    metrics = _metrics()
    seconds = max(0.0, (at - task.created_at).total_seconds())
    metrics.task_duration.labels(task.model, status).observe(seconds)
    if refund is not None:
        metrics.refunds.labels(refund).inc()


def refunded(reason: str) -> None:
    _metrics().refunds.labels(reason).inc()


def provider_error(channel: str, *, fault: bool) -> None:
    _metrics().provider_errors.labels(channel, "fault" if fault else "technical").inc()


def breaker_state(channel: str, *, tripped: bool) -> None:
    _metrics().breaker_open.labels(channel).set(1 if tripped else 0)


def webhook_try(*, delivered: bool, retrying: bool) -> None:
    outcome = "delivered" if delivered else "retry" if retrying else "failed"
    _metrics().webhook_tries.labels(outcome).inc()


def local_model_loaded(provider: str, seconds: float) -> None:
    _metrics().local_load.labels(provider).set(seconds)


def local_step(provider: str, seconds: float) -> None:
    _metrics().local_step.labels(provider).observe(seconds)


def local_video(provider: str, *, peak_gpu_memory_bytes: int | None) -> None:
    metrics = _metrics()
    metrics.local_videos.labels(provider).inc()
    if peak_gpu_memory_bytes is not None:
        metrics.local_peak_memory.labels(provider).set(peak_gpu_memory_bytes)
