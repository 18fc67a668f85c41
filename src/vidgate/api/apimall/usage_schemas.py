"""Response shapes of the usage report and the ledger (GET /api/v1/account/usage, /ledger)."""

from __future__ import annotations

from typing import Literal, cast

from pydantic import BaseModel, ConfigDict, Field

from vidgate.billing.usage import LedgerRow, UsageFigures, UsageGroup, UsageReport
from vidgate.db.types import iso_ms
from vidgate.tasks.states import TaskStatus

# Ids as large as a JSON number of type integer reads exactly (as webhook_schemas.MAX_ID).
MAX_ID = 2**53
LedgerKind = Literal["grant", "debit", "refund", "adjust"]


class TaskCounts(BaseModel):
    """Tasks created in the window, by their status now (a cancelled task is its own status
    here, though the status endpoint reads it failed)."""

    total: int
    pending: int
    processing: int
    completed: int
    failed: int
    cancelled: int


class UsageFiguresView(BaseModel):
    tasks: TaskCounts
    credits_debited: int = Field(description="Credits the ledger took for tasks in the window")
    credits_refunded: int = Field(description="Credits the ledger gave back for tasks")
    net_credits: int = Field(description="credits_debited - credits_refunded")
    seconds_of_video: int = Field(description="Clip seconds of the completed tasks")


class _Group(BaseModel):
    group: str = Field(
        description="A UTC day (YYYY-MM-DD), a model id or an API key id, as group_by says",
        examples=["2026-03-12"],
    )


class UsageGroupView(UsageFiguresView, _Group):  # this order puts `group` first on the wire
    pass


class UsageReportView(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    account_id: int
    key_id: int | None
    from_: str = Field(alias="from", description="Start of the window (inclusive, UTC)")
    to: str = Field(description="End of the window (exclusive, UTC)")
    group_by: Literal["day", "model", "key"]
    groups: list[UsageGroupView]
    totals: UsageFiguresView


class LedgerEntryView(BaseModel):
    id: int
    kind: LedgerKind
    amount: int = Field(description="Signed: a debit is negative")
    balance_after: int
    task_id: str | None
    note: str | None
    created_at: str


class LedgerPage(BaseModel):
    items: list[LedgerEntryView]
    limit: int
    has_more: bool
    last_id: int | None = Field(description="Pass it as `after` for the next (older) page")


def _counts(figures: UsageFigures) -> TaskCounts:
    by_status = figures.tasks_by_status
    return TaskCounts(
        total=figures.tasks,
        pending=by_status[TaskStatus.PENDING],
        processing=by_status[TaskStatus.PROCESSING],
        completed=by_status[TaskStatus.COMPLETED],
        failed=by_status[TaskStatus.FAILED],
        cancelled=by_status[TaskStatus.CANCELLED],
    )


def _group(group: UsageGroup) -> UsageGroupView:
    figures = group.figures
    return UsageGroupView(
        group=group.group,
        tasks=_counts(figures),
        credits_debited=figures.credits_debited,
        credits_refunded=figures.credits_refunded,
        net_credits=figures.net_credits,
        seconds_of_video=figures.seconds_of_video,
    )


def usage_report_view(report: UsageReport, *, account_id: int) -> UsageReportView:
    totals = report.totals
    return UsageReportView(
        account_id=account_id,
        key_id=report.key_id,
        from_=iso_ms(report.window.start) or "",
        to=iso_ms(report.window.end) or "",
        group_by=report.group_by.value,
        groups=[_group(group) for group in report.groups],
        totals=UsageFiguresView(
            tasks=_counts(totals),
            credits_debited=totals.credits_debited,
            credits_refunded=totals.credits_refunded,
            net_credits=totals.net_credits,
            seconds_of_video=totals.seconds_of_video,
        ),
    )


def ledger_page_view(rows: list[LedgerRow], *, limit: int, has_more: bool) -> LedgerPage:
    items = [
        LedgerEntryView(
            id=row.id,
            kind=cast(LedgerKind, row.kind),
            amount=row.amount,
            balance_after=row.balance_after,
            task_id=row.task_id,
            note=row.note,
            created_at=iso_ms(row.created_at) or "",
        )
        for row in rows
    ]
    return LedgerPage(
        items=items, limit=limit, has_more=has_more, last_id=items[-1].id if items else None
    )
