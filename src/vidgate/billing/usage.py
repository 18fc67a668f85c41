"""Usage reports and ledger pages: what an account's keys spent, by day, model or key.

One set of queries for `GET /api/v1/account/usage`, `GET /api/v1/account/ledger` and
`vidgate usage`. Credits come from the ledger (credit_ledger joined to video_tasks by task_id
for the task's key and model), so a report always agrees with the balance; task counts and
seconds of video come from the tasks. A window holds the ledger entries written in it and the
tasks created in it; days are UTC days (db/backend.py `utc_day`, the one spelling per database).
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum
from typing import Any, cast

from sqlalchemy import Connection, Table, case, func, select
from sqlalchemy.sql.elements import ColumnElement

from vidgate.db.backend import utc_day
from vidgate.db.models import Account, ApiKey, LedgerEntry, VideoTask
from vidgate.db.types import iso_ms
from vidgate.errors import InvalidRequest, NotFound
from vidgate.tasks.states import TaskStatus

ledger = cast(Table, LedgerEntry.__table__)
tasks = cast(Table, VideoTask.__table__)
api_keys = cast(Table, ApiKey.__table__)
accounts = cast(Table, Account.__table__)

DEFAULT_WINDOW = timedelta(days=30)
MAX_WINDOW = timedelta(days=366)  # a year, leap years included
# An ISO 8601 date, or a datetime to the minute or finer with an optional offset (none: UTC).
INSTANT_PATTERN = (
    r"^[0-9]{4}-[0-9]{2}-[0-9]{2}"
    r"(T[0-9]{2}:[0-9]{2}(:[0-9]{2}(\.[0-9]{1,6})?)?(Z|[+-][0-9]{2}:[0-9]{2})?)?$"
)
_INSTANT = re.compile(INSTANT_PATTERN)
_TASK_KINDS = ("debit", "refund")


class GroupBy(StrEnum):
    DAY = "day"  # UTC day, YYYY-MM-DD
    MODEL = "model"
    KEY = "key"  # API key id


@dataclass(frozen=True, kw_only=True)
class Window:
    """[start, end): both UTC."""

    start: datetime
    end: datetime


def parse_instant(value: str, *, name: str, end_of_day: bool = False) -> datetime:
    """An ISO 8601 date or datetime as UTC. A date alone is the start of that UTC day, or with
    `end_of_day` the start of the next one, so `to=2026-03-31` includes the 31st."""
    if not _INSTANT.fullmatch(value):
        raise InvalidRequest(
            f"{name}: must be an ISO 8601 date (2026-03-12) or datetime "
            f"(2026-03-12T09:30:00Z), not {value[:40]!r}"
        )
    try:
        if "T" not in value:
            day = date.fromisoformat(value)
            start = datetime(day.year, day.month, day.day, tzinfo=UTC)
            return start + timedelta(days=1) if end_of_day else start
        instant = datetime.fromisoformat(value)
    except (ValueError, OverflowError) as error:
        raise InvalidRequest(f"{name}: {value!r} is not a valid date ({error})") from None
    return instant.replace(tzinfo=UTC) if instant.tzinfo is None else instant.astimezone(UTC)


def usage_window(start: str | None, end: str | None, *, now: datetime) -> Window:
    """The report's window from the `from` and `to` given (default: the 30 days up to now)."""
    upper = parse_instant(end, name="to", end_of_day=True) if end is not None else now
    lower = parse_instant(start, name="from") if start is not None else upper - DEFAULT_WINDOW
    if lower >= upper:
        raise InvalidRequest(f"from: {start} is not before to ({end or 'now'})")
    if upper - lower > MAX_WINDOW:
        raise InvalidRequest(
            f"the range from {iso_ms(lower)} to {iso_ms(upper)} is {(upper - lower).days} "
            f"days; a report covers {MAX_WINDOW.days} days at most, ask for several"
        )
    return Window(start=lower, end=upper)


@dataclass(kw_only=True)
class UsageFigures:
    """One group's figures; credits are positive numbers (debited: taken, refunded: given back)."""

    tasks_by_status: dict[TaskStatus, int] = field(
        default_factory=lambda: dict.fromkeys(TaskStatus, 0)
    )
    credits_debited: int = 0
    credits_refunded: int = 0
    seconds_of_video: int = 0  # of the completed tasks

    @property
    def tasks(self) -> int:
        return sum(self.tasks_by_status.values())

    @property
    def net_credits(self) -> int:
        return self.credits_debited - self.credits_refunded

    def add(self, other: UsageFigures) -> None:
        for status, count in other.tasks_by_status.items():
            self.tasks_by_status[status] += count
        self.credits_debited += other.credits_debited
        self.credits_refunded += other.credits_refunded
        self.seconds_of_video += other.seconds_of_video


@dataclass(frozen=True, kw_only=True)
class UsageGroup:
    group: str  # the day, the model id or the key id
    figures: UsageFigures


@dataclass(frozen=True, kw_only=True)
class UsageReport:
    account_id: int | None  # None: every account (the CLI's default)
    key_id: int | None
    window: Window
    group_by: GroupBy
    groups: list[UsageGroup]
    totals: UsageFigures


def _group_of(group_by: GroupBy, *, day_of: ColumnElement[Any]) -> ColumnElement[Any]:
    if group_by is GroupBy.DAY:
        return utc_day(day_of)
    return tasks.c.model if group_by is GroupBy.MODEL else tasks.c.api_key_id


def usage_report(
    conn: Connection,
    *,
    account_id: int | None,
    window: Window,
    group_by: GroupBy,
    key_id: int | None = None,
) -> UsageReport:
    """The figures per group, ordered by day, model id or key id; groups without any task or
    ledger entry in the window are left out."""
    by_group: dict[Any, UsageFigures] = defaultdict(UsageFigures)

    group = _group_of(group_by, day_of=ledger.c.created_at)
    conditions = [
        ledger.c.kind.in_(_TASK_KINDS),
        ledger.c.created_at >= window.start,
        ledger.c.created_at < window.end,
    ]
    if account_id is not None:
        conditions.append(ledger.c.account_id == account_id)
    if key_id is not None:
        conditions.append(tasks.c.api_key_id == key_id)
    credits = conn.execute(
        select(group, ledger.c.kind, func.sum(ledger.c.amount))
        .select_from(ledger.join(tasks, tasks.c.id == ledger.c.task_id))
        .where(*conditions)
        .group_by(group, ledger.c.kind)
    )
    for value, kind, amount in credits:
        figures = by_group[value]
        if kind == "debit":
            figures.credits_debited += -int(amount)
        else:
            figures.credits_refunded += int(amount)

    group = _group_of(group_by, day_of=tasks.c.created_at)
    seconds = case(
        (
            tasks.c.status == TaskStatus.COMPLETED.value,
            func.coalesce(tasks.c.params["seconds"].as_integer(), 0),
        ),
        else_=0,
    )
    conditions = [tasks.c.created_at >= window.start, tasks.c.created_at < window.end]
    if account_id is not None:
        conditions.append(tasks.c.account_id == account_id)
    if key_id is not None:
        conditions.append(tasks.c.api_key_id == key_id)
    counts = conn.execute(
        select(group, tasks.c.status, func.count(), func.coalesce(func.sum(seconds), 0))
        .where(*conditions)
        .group_by(group, tasks.c.status)
    )
    for value, status, count, clip_seconds in counts:
        figures = by_group[value]
        figures.tasks_by_status[TaskStatus(status)] += int(count)
        figures.seconds_of_video += int(clip_seconds)

    totals = UsageFigures()
    groups = []
    for value in sorted(by_group):
        totals.add(by_group[value])
        groups.append(UsageGroup(group=str(value), figures=by_group[value]))
    return UsageReport(
        account_id=account_id,
        key_id=key_id,
        window=window,
        group_by=group_by,
        groups=groups,
        totals=totals,
    )


# -- whose figures a caller may read --------------------------------------------------------


def account_in_view(
    conn: Connection, *, caller_account_id: int, is_admin: bool, account_id: int | None
) -> int:
    """The account a report is about: the caller's own, or for an admin key any account. Another
    account is 404 to everyone else, as another account's task is: its existence is not told."""
    if account_id is None or account_id == caller_account_id:
        return caller_account_id
    if not is_admin:
        raise NotFound(f"account {account_id} not found")
    check_account(conn, account_id)
    return account_id


def check_account(conn: Connection, account_id: int) -> None:
    if conn.scalar(select(accounts.c.id).where(accounts.c.id == account_id)) is None:
        raise NotFound(f"account {account_id} not found")


def check_key_of(conn: Connection, *, key_id: int, account_id: int | None) -> None:
    """A key filter names one of the account's own keys (None: any account's)."""
    owner = conn.scalar(select(api_keys.c.account_id).where(api_keys.c.id == key_id))
    if owner is None or (account_id is not None and owner != account_id):
        raise NotFound(f"API key {key_id} not found")


# -- the ledger, page by page ----------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class LedgerRow:
    id: int
    kind: str
    amount: int  # signed: a debit is negative
    balance_after: int
    task_id: str | None
    note: str | None
    created_at: datetime


def ledger_page(
    conn: Connection,
    *,
    account_id: int,
    limit: int,
    after: int | None = None,
    kind: str | None = None,
    task_id: str | None = None,
) -> tuple[list[LedgerRow], bool]:
    """The account's entries newest first, strictly older than the entry `after` (the last id
    of the previous page), and whether more follow."""
    conditions = [ledger.c.account_id == account_id]
    if after is not None:
        conditions.append(ledger.c.id < after)
    if kind is not None:
        conditions.append(ledger.c.kind == kind)
    if task_id is not None:
        conditions.append(ledger.c.task_id == task_id)
    rows = conn.execute(
        select(
            ledger.c.id,
            ledger.c.kind,
            ledger.c.amount,
            ledger.c.balance_after,
            ledger.c.task_id,
            ledger.c.note,
            ledger.c.created_at,
        )
        .where(*conditions)
        .order_by(ledger.c.id.desc())
        .limit(limit + 1)
    ).all()
    entries = [
        LedgerRow(
            id=int(row.id),
            kind=row.kind,
            amount=int(row.amount),
            balance_after=int(row.balance_after),
            task_id=row.task_id,
            note=row.note,
            created_at=row.created_at,
        )
        for row in rows[:limit]
    ]
    return entries, len(rows) > limit
