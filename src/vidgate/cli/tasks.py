"""`vidgate tasks`: every account's tasks as the operator sees them, and two remedies (retry a
stuck task, fail one with a refund); the rules are in tasks/operator.py."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from vidgate.cli.admin import DataDirOption, load_settings, out, run_with_db
from vidgate.db.engine import Database
from vidgate.db.types import iso_ms
from vidgate.tasks import operator, repository
from vidgate.tasks.repository import TaskRecord
from vidgate.tasks.states import TaskStatus

app = typer.Typer(
    help="List, inspect, retry and fail tasks of every account.", no_args_is_help=True
)

TaskIdArgument = Annotated[str, typer.Argument(metavar="TASK_ID", help="A task id (vid_...)")]


@app.command("list")
def tasks_list(
    status: Annotated[TaskStatus | None, typer.Option("--status", help="Only this status")] = None,
    model: Annotated[str | None, typer.Option("--model", help="Only this model")] = None,
    account: Annotated[int | None, typer.Option("--account", help="Only this account")] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=1000, help="At most this many")] = 20,
    data_dir: DataDirOption = None,
) -> None:
    """The newest tasks first, across accounts."""
    settings = load_settings(data_dir)

    async def work(db: Database) -> tuple[int, list[TaskRecord]]:
        return await db.backend.run_read(
            lambda conn: repository.search(
                conn,
                account_id=account,
                status=status.value if status else None,
                model=model,
                offset=0,
                limit=limit,
            )
        )

    total, found = run_with_db(settings, work)
    table = Table()
    # The id whole (the other commands take it), the rest cut short in a narrow terminal.
    table.add_column("id", no_wrap=True, min_width=30)
    for column, width in (("account", 7), ("model", 6), ("status", 10), ("step", 6)):
        table.add_column(column, no_wrap=True, min_width=width)
    for column in ("tries", "held by", "created", "ended"):
        table.add_column(column, no_wrap=True)
    for task in found:
        table.add_row(
            task.id,
            str(task.account_id),
            task.model,
            task.status,
            task.step,
            str(task.attempts),
            escape(task.lease_owner or "-"),
            iso_ms(task.created_at) or "",
            iso_ms(task.completed_at) or "-",
        )
    out.print(table)
    out.print(f"{len(found)} of {total} tasks", highlight=False)


@app.command("show")
def tasks_show(task_id: TaskIdArgument, data_dir: DataDirOption = None) -> None:
    """A task's row, its events and its ledger entries."""
    settings = load_settings(data_dir)
    shown = run_with_db(settings, lambda db: operator.details(db, task_id))
    task = shown.task
    fields = Table("field", "value", show_header=False, box=None)
    for name, value in (
        ("id", task.id),
        ("account", task.account_id),
        ("key", task.api_key_id),
        ("model", task.model),
        ("queue", task.queue),
        ("surface", task.surface),
        ("status", task.status),
        ("step", task.step),
        ("attempts", task.attempts),
        ("due", iso_ms(task.run_after)),
        ("held by", task.lease_owner),
        ("lease until", iso_ms(task.lease_expires_at)),
        ("deadline", iso_ms(task.deadline_at)),
        ("channel", task.channel),
        ("upstream id", task.upstream_id),
        ("progress", task.progress),
        ("credits used", task.credits_used),
        ("credits refunded", task.credits_refunded),
        ("error", f"{task.error_code}: {task.error_message}" if task.error_code else None),
        ("file", task.file_key),
        ("files expired", iso_ms(task.files_expired_at)),
        ("prompt", task.prompt),
        ("created", iso_ms(task.created_at)),
        ("started", iso_ms(task.started_at)),
        ("ended", iso_ms(task.completed_at)),
    ):
        fields.add_row(name, escape("-" if value is None else str(value)))
    out.print(fields)
    events = Table("id", "at", "kind", "status", "data", title="Events")
    for event in shown.events:
        data = ", ".join(f"{k}={v}" for k, v in event.data.items())
        events.add_row(
            str(event.id), iso_ms(event.created_at) or "", event.kind, event.status, escape(data)
        )
    out.print(events)
    ledger = Table("id", "at", "kind", "amount", "balance after", title="Ledger")
    for entry in shown.ledger:
        ledger.add_row(
            str(entry.id),
            iso_ms(entry.created_at) or "",
            entry.kind,
            f"{entry.amount:+d}",
            str(entry.balance_after),
        )
    out.print(ledger)


@app.command("retry")
def tasks_retry(task_id: TaskIdArgument, data_dir: DataDirOption = None) -> None:
    """Run a stuck in-flight task now, charging nothing.

    Its lease is cleared (a dead worker's, or a live one's, which then loses it) and a worker
    resumes it from its last step. An ended task is refused: create a new one.
    """
    settings = load_settings(data_dir)
    retried = run_with_db(settings, lambda db: operator.retry(db, task_id))
    held = f"; cleared the lease of {retried.cleared_lease_of}" if retried.cleared_lease_of else ""
    out.print(f"task {task_id}: due now on queue {retried.queue}{escape(held)}", highlight=False)


@app.command("fail")
def tasks_fail(
    task_id: TaskIdArgument,
    reason: Annotated[
        str | None, typer.Option("--reason", help="The error message the task's owner reads")
    ] = None,
    data_dir: DataDirOption = None,
) -> None:
    """End an in-flight task as failed and refund its credits, exactly once."""
    settings = load_settings(data_dir)
    task = run_with_db(settings, lambda db: operator.fail(db, task_id, reason=reason))
    out.print(
        f"task {task_id}: failed ({escape(task.error_message or '')}); "
        f"{task.credits_refunded} credits refunded",
        highlight=False,
    )
