"""Per-key spend budgets: credits a key may spend per UTC calendar day, month, or in total.

A key's spend of a period is one row of key_budget_spend. A create takes its price with one
conditional upsert in its own transaction; the row's lock serialises concurrent creates of a
key, and the WHERE makes the one that would pass the budget match nothing, so it cannot be
passed under concurrency on either database (`INSERT ... ON CONFLICT ... DO UPDATE ... WHERE
... RETURNING` is spelled the same in SQLite and PostgreSQL). A refund gives the credits back to
the period the task was charged in (video_tasks.budget_period_start), in the refund's
transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from sqlalchemy import Connection, select
from sqlalchemy.ext.asyncio import AsyncSession

from vidgate.db.backend import Sql, lean
from vidgate.db.models import ApiKey, KeyBudgetSpend
from vidgate.db.types import iso_ms
from vidgate.errors import BudgetExceeded


class BudgetPeriod(StrEnum):
    DAY = "day"
    MONTH = "month"
    TOTAL = "total"


# The one period of a `total` budget.
TOTAL_PERIOD_START = datetime(1970, 1, 1, tzinfo=UTC)

TAKE = Sql(
    "INSERT INTO key_budget_spend (api_key_id, period_start, spent) "
    "VALUES (:api_key_id, :period_start, :amount) "
    "ON CONFLICT (api_key_id, period_start) DO UPDATE "
    "SET spent = key_budget_spend.spent + excluded.spent "
    "WHERE key_budget_spend.spent + excluded.spent <= :budget RETURNING spent"
)
SPENT = Sql(
    "SELECT spent FROM key_budget_spend "
    "WHERE api_key_id = :api_key_id AND period_start = :period_start"
)
# Never below zero, even if the spend row was reset by hand meanwhile: a refund must not fail.
GIVE_BACK = Sql(
    "UPDATE key_budget_spend SET spent = CASE WHEN spent > :amount THEN spent - :amount ELSE 0 "
    "END WHERE api_key_id = :api_key_id AND period_start = :period_start"
)


def period_start(period: BudgetPeriod, at: datetime) -> datetime:
    at = at.astimezone(UTC)
    if period == BudgetPeriod.DAY:
        return at.replace(hour=0, minute=0, second=0, microsecond=0)
    if period == BudgetPeriod.MONTH:
        return at.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    return TOTAL_PERIOD_START


def period_end(period: BudgetPeriod, at: datetime) -> datetime | None:
    """When the period holding `at` ends and the budget resets; None for `total`."""
    start = period_start(period, at)
    if period == BudgetPeriod.DAY:
        return start + timedelta(days=1)
    if period == BudgetPeriod.MONTH:
        return start.replace(year=start.year + start.month // 12, month=start.month % 12 + 1)
    return None


@dataclass(frozen=True, kw_only=True)
class Budget:
    credits: int
    period: BudgetPeriod

    def describe(self) -> str:
        if self.period == BudgetPeriod.TOTAL:
            return f"{self.credits} credits in total"
        return f"{self.credits} credits per {self.period.value} (UTC)"


def take(
    conn: Connection, *, api_key_id: int, budget: Budget, amount: int, at: datetime
) -> datetime:
    """Count `amount` credits against the key's budget for the period of `at`; that period's
    start. Raises BudgetExceeded (the budget, the spend so far, the reset) and changes nothing
    when it would pass the budget."""
    start = period_start(budget.period, at)
    via = lean(conn)
    params = {"api_key_id": api_key_id, "period_start": start}
    if amount <= budget.credits:
        taken = via.execute(conn, TAKE, {**params, "amount": amount, "budget": budget.credits})
        if taken:
            return start
    rows = via.execute(conn, SPENT, params)
    raise _exceeded(budget, spent=int(rows[0][0]) if rows else 0, amount=amount, at=at)


def give_back(conn: Connection, *, api_key_id: int, period_start: datetime, amount: int) -> None:
    lean(conn).execute(
        conn,
        GIVE_BACK,
        {"api_key_id": api_key_id, "period_start": period_start, "amount": amount},
    )


def spent_now(conn: Connection, *, api_key_id: int, period: BudgetPeriod, at: datetime) -> int:
    rows = lean(conn).execute(
        conn, SPENT, {"api_key_id": api_key_id, "period_start": period_start(period, at)}
    )
    return int(rows[0][0]) if rows else 0


def _exceeded(budget: Budget, *, spent: int, amount: int, at: datetime) -> BudgetExceeded:
    resets = period_end(budget.period, at)
    when = (
        f"it resets at {iso_ms(resets)}"
        if resets is not None
        else "a total budget does not reset; an operator can raise it"
    )
    so_far = {"day": "today", "month": "this month"}.get(budget.period.value, "in total")
    headers = {
        "X-Budget-Limit": str(budget.credits),
        "X-Budget-Spent": str(spent),
        "X-Budget-Period": budget.period.value,
    }
    if resets is not None:
        headers["X-Budget-Reset"] = iso_ms(resets) or ""
    return BudgetExceeded(
        f"Budget exceeded: this API key may spend {budget.describe()}; it has spent {spent} "
        f"{so_far} and this task costs {amount}; {when}",
        headers=headers,
    )


async def spent_by_key(
    session: AsyncSession, keys: Sequence[ApiKey], *, at: datetime
) -> dict[int, int]:
    """What each budgeted key has spent in its current period (the keys listings)."""
    budgeted = {
        key.id: period_start(BudgetPeriod(key.budget_period or "total"), at)
        for key in keys
        if key.budget_credits is not None
    }
    if not budgeted:
        return {}
    rows = await session.execute(
        select(KeyBudgetSpend.api_key_id, KeyBudgetSpend.period_start, KeyBudgetSpend.spent).where(
            KeyBudgetSpend.api_key_id.in_(list(budgeted)),
            KeyBudgetSpend.period_start.in_(set(budgeted.values())),
        )
    )
    spent = dict.fromkeys(budgeted, 0)
    for key_id, start, amount in rows:
        if budgeted[key_id] == start:
            spent[key_id] = int(amount)
    return spent
