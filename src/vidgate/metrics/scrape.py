"""What one scrape of /metrics answers: this process's (or this machine's) metrics, plus the
gauges only the database knows, read in one short transaction at scrape time.

The database gauges count tasks in flight (pending, processing) by model, and per queue the
due tasks nobody holds and the age of the oldest of them. Ended tasks are not counted here:
their totals grow for ever and counting them would scan the whole history on every scrape;
`vidgate_task_duration_seconds_count{status=...}` counts endings instead. Every API process
reports the same database gauges: aggregate them with max(), not sum().
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector
from sqlalchemy import Connection, func, or_, select

from vidgate import metrics
from vidgate.db.engine import Database
from vidgate.db.types import utcnow
from vidgate.tasks.repository import tasks
from vidgate.tasks.states import IN_FLIGHT

logger = logging.getLogger("vidgate.metrics")


@dataclass(frozen=True)
class QueueGauge:
    depth: int
    oldest_due_age_s: float


@dataclass(frozen=True)
class TaskGauges:
    in_flight: dict[tuple[str, str], int] = field(default_factory=dict)  # (status, model)
    queues: dict[str, QueueGauge] = field(default_factory=dict)


def read_task_gauges(conn: Connection, *, now: datetime, queues: Sequence[str]) -> TaskGauges:
    """Two GROUP BY reads over the tasks in flight of the catalogue's queues: by status and
    model; due and unheld, by queue. Naming the queues lets both use the index on (queue,
    status, run_after), so a scrape reads the tasks in flight, never the ended ones."""
    of_queues = (tasks.c.queue.in_(list(queues)), tasks.c.status.in_(IN_FLIGHT))
    in_flight = conn.execute(
        select(tasks.c.status, tasks.c.model, func.count())
        .where(*of_queues)
        .group_by(tasks.c.status, tasks.c.model)
    ).all()
    due = conn.execute(
        select(tasks.c.queue, func.count(), func.min(tasks.c.run_after))
        .where(
            *of_queues,
            tasks.c.run_after <= now,
            or_(tasks.c.lease_expires_at.is_(None), tasks.c.lease_expires_at < now),
        )
        .group_by(tasks.c.queue)
    ).all()
    return TaskGauges(
        in_flight={(status, model): count for status, model, count in in_flight},
        queues={
            queue: QueueGauge(depth=count, oldest_due_age_s=(now - oldest).total_seconds())
            for queue, count, oldest in due
        },
    )


class _DatabaseGauges(Collector):
    def __init__(
        self, gauges: TaskGauges | None, *, models: Sequence[str], queues: Sequence[str]
    ) -> None:
        self.gauges = gauges
        self.models = models
        self.queues = queues

    def collect(self) -> Iterable[Metric]:
        up = GaugeMetricFamily(
            "vidgate_database_up", "1 if this scrape could read the database's task gauges"
        )
        up.add_metric([], 0 if self.gauges is None else 1)
        yield up
        if self.gauges is None:
            return
        counts = self.gauges.in_flight
        by_status = GaugeMetricFamily(
            "vidgate_tasks",
            "Tasks in flight (pending, processing) by status and model, from the database",
            labels=("status", "model"),
        )
        for status, model in sorted({*counts, *((s, m) for s in IN_FLIGHT for m in self.models)}):
            by_status.add_metric([status, model], counts.get((status, model), 0))
        yield by_status
        depth = GaugeMetricFamily(
            "vidgate_queue_depth",
            "Due tasks no worker holds yet, by queue, from the database",
            labels=("queue",),
        )
        oldest = GaugeMetricFamily(
            "vidgate_queue_oldest_due_age_seconds",
            "How long the oldest due, unheld task of a queue has waited (0: none waits)",
            labels=("queue",),
        )
        queues = self.gauges.queues
        for queue in sorted({*queues, *self.queues}):
            gauge = queues.get(queue, QueueGauge(depth=0, oldest_due_age_s=0.0))
            depth.add_metric([queue], gauge.depth)
            oldest.add_metric([queue], max(0.0, gauge.oldest_due_age_s))
        yield depth
        yield oldest


class _Scrape(Collector):
    def __init__(self, *sources: Collector) -> None:
        self.sources = sources

    def collect(self) -> Iterable[Metric]:
        for source in self.sources:
            yield from source.collect()


def process_metrics() -> Collector:
    """This process's metrics, or, in multiprocess mode, those of every process sharing the
    directory (live and dead: counters keep what dead processes counted)."""
    directory = metrics.multiprocess_dir()
    if directory is None:
        return metrics.registry()
    combined = CollectorRegistry()
    MultiProcessCollector(combined, path=str(directory))  # type: ignore[no-untyped-call]
    return combined


async def read_gauges(db: Database, *, queues: Sequence[str]) -> TaskGauges | None:
    """The database gauges, or None (and a warning) when the database cannot be read: a scrape
    still answers, with vidgate_database_up 0."""
    now = utcnow()
    try:
        return await db.backend.run_read(
            lambda conn: read_task_gauges(conn, now=now, queues=queues)
        )
    except Exception as exc:
        logger.warning("metrics: cannot read the task gauges: %s", exc)
        return None


def render(gauges: TaskGauges | None, *, models: Sequence[str], queues: Sequence[str]) -> bytes:
    """The text exposition format (blocking: reads the multiprocess files)."""
    database = _DatabaseGauges(gauges, models=models, queues=queues)
    return generate_latest(_Scrape(process_metrics(), database))


def serve_process_metrics(port: int, *, host: str = "0.0.0.0") -> None:
    """`vidgate worker`'s own /metrics (a thread of prometheus-client's HTTP server): the
    process metrics, or the directory's; the database gauges come from the API processes."""
    from prometheus_client import start_http_server

    start_http_server(port, addr=host, registry=process_metrics())
