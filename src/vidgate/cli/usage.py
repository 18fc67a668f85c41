"""`vidgate usage`: the usage report of GET /api/v1/account/usage, from the database."""

from __future__ import annotations

import csv
import sys
from typing import Annotated

import typer
from rich import box
from rich.table import Table
from sqlalchemy import Connection

from vidgate.billing import usage
from vidgate.billing.usage import GroupBy, UsageFigures, UsageReport
from vidgate.cli.admin import DataDirOption, fail, load_settings, out, run_with_db
from vidgate.db.engine import Database
from vidgate.db.types import iso_ms, utcnow
from vidgate.errors import VidgateError
from vidgate.tasks.states import TaskStatus

# The CSV's columns after the group's own (day, model or key_id): the JSON report's names.
CSV_FIGURES = (
    "tasks",
    *(status.value for status in TaskStatus),
    "credits_debited",
    "credits_refunded",
    "net_credits",
    "seconds_of_video",
)
_GROUP_COLUMN = {GroupBy.DAY: "day", GroupBy.MODEL: "model", GroupBy.KEY: "key_id"}


def register(app: typer.Typer) -> None:
    app.command("usage")(usage_command)


def usage_command(
    account: Annotated[
        int | None, typer.Option("--account", help="Account id (default: every account)")
    ] = None,
    start: Annotated[
        str | None,
        typer.Option("--from", help="Start, inclusive: 2026-03-01 or 2026-03-01T09:00:00Z (UTC)"),
    ] = None,
    end: Annotated[
        str | None,
        typer.Option("--to", help="End: a date includes that day (default: now)"),
    ] = None,
    group_by: Annotated[
        GroupBy, typer.Option("--group-by", help="One row per UTC day, model or key")
    ] = GroupBy.DAY,
    key: Annotated[int | None, typer.Option("--key", help="Only this API key's tasks")] = None,
    as_csv: Annotated[bool, typer.Option("--csv", help="CSV on stdout, for spreadsheets")] = False,
    data_dir: DataDirOption = None,
) -> None:
    """Tasks by status, credits debited and refunded, and seconds of video, per day, model or
    key (the figures of GET /api/v1/account/usage; default: the last 30 days). The table's
    `done` are completed tasks, `running` pending or processing ones, `secs` the seconds of
    video completed."""
    try:
        window = usage.usage_window(start, end, now=utcnow())
    except VidgateError as error:
        raise fail(error.message) from None
    settings = load_settings(data_dir)

    def report(conn: Connection) -> UsageReport:
        if account is not None:
            usage.check_account(conn, account)
        if key is not None:
            usage.check_key_of(conn, key_id=key, account_id=account)
        return usage.usage_report(
            conn, account_id=account, window=window, group_by=group_by, key_id=key
        )

    async def work(db: Database) -> UsageReport:
        return await db.backend.run_read(report)

    found = run_with_db(settings, work)
    if as_csv:
        write_csv(found)
    else:
        print_table(found)


def _figures_row(figures: UsageFigures) -> list[int]:
    return [
        figures.tasks,
        *(figures.tasks_by_status[status] for status in TaskStatus),
        figures.credits_debited,
        figures.credits_refunded,
        figures.net_credits,
        figures.seconds_of_video,
    ]


def write_csv(report: UsageReport) -> None:
    writer = csv.writer(sys.stdout)
    writer.writerow([_GROUP_COLUMN[report.group_by], *CSV_FIGURES])
    for group in report.groups:
        writer.writerow([group.group, *_figures_row(group.figures)])


def print_table(report: UsageReport) -> None:
    whose = "every account" if report.account_id is None else f"account {report.account_id}"
    if report.key_id is not None:
        whose += f", key {report.key_id}"
    span = f"{iso_ms(report.window.start)} to {iso_ms(report.window.end)}"
    if not report.groups:
        out.print(f"no tasks and no task credits for {whose} from {span}")
        return
    # Short headings and no vertical rules: ten columns fit an 80-column terminal.
    table = Table(
        title=f"Usage of {whose}, {span}",
        box=box.SIMPLE_HEAD,
        show_edge=False,
        padding=(0, 1, 0, 0),
    )
    table.add_column(_GROUP_COLUMN[report.group_by], no_wrap=True)
    headings = ("tasks", "done", "failed", "cancelled", "running", "debit", "refund", "net", "secs")
    for heading in headings:
        table.add_column(heading, justify="right")

    def cells(figures: UsageFigures) -> list[str]:
        by_status = figures.tasks_by_status
        in_flight = by_status[TaskStatus.PENDING] + by_status[TaskStatus.PROCESSING]
        values = [
            figures.tasks,
            by_status[TaskStatus.COMPLETED],
            by_status[TaskStatus.FAILED],
            by_status[TaskStatus.CANCELLED],
            in_flight,
            figures.credits_debited,
            figures.credits_refunded,
            figures.net_credits,
            figures.seconds_of_video,
        ]
        return [str(value) for value in values]

    for group in report.groups:
        table.add_row(group.group, *cells(group.figures))
    table.add_section()
    table.add_row("total", *cells(report.totals), style="bold")
    out.print(table)
