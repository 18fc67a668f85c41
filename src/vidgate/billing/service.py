"""Accounts and credits: an integer balance plus an append-only ledger.

Invariant: for every account, sum(ledger.amount) == accounts.credits, and credits >= 0 (a CHECK in
the database). Every balance change is one conditional UPDATE ... RETURNING plus one ledger row in
the caller's transaction, so concurrent debits can never overdraw: the UPDATE that would go
negative matches no row.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import NamedTuple, cast

from sqlalchemy import Connection, Table, func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from vidgate.db.backend import Sql, lean
from vidgate.db.models import Account, LedgerEntry
from vidgate.db.types import utcnow
from vidgate.errors import InsufficientCredits, InvalidRequest, NotFound

ledger = cast(Table, LedgerEntry.__table__)

# Lean statements (db/backend.py): a debit is on the create path. The WHERE of DEBIT is what
# makes an overdraft impossible under concurrency: the UPDATE that would go negative matches
# no row.
CREDIT = Sql(
    "UPDATE accounts SET credits = credits + :amount WHERE id = :account_id RETURNING credits"
)
DEBIT = Sql(
    "UPDATE accounts SET credits = credits + :amount "
    "WHERE id = :account_id AND credits >= -:amount RETURNING credits"
)
BALANCE = Sql("SELECT credits FROM accounts WHERE id = :account_id")
APPEND = Sql(
    "INSERT INTO credit_ledger (account_id, kind, amount, balance_after, task_id, note, "
    "created_at) VALUES (:account_id, :kind, :amount, :balance_after, :task_id, :note, "
    ":created_at)"
)


class LedgerEntryRow(NamedTuple):
    id: int
    kind: str
    amount: int
    balance_after: int
    note: str | None
    created_at: datetime


class LedgerKind(StrEnum):
    GRANT = "grant"
    DEBIT = "debit"
    REFUND = "refund"
    ADJUST = "adjust"


async def create_account(session: AsyncSession, *, name: str, credits: int = 0) -> Account:
    account = Account(name=name, credits=0)
    session.add(account)
    await session.flush()
    if credits:
        await grant(session, account_id=account.id, amount=credits, note="initial grant")
        await session.refresh(account)
    return account


async def get_account(session: AsyncSession, account_id: int) -> Account:
    account = await session.get(Account, account_id)
    if account is None:
        raise NotFound(f"account {account_id} not found")
    return account


async def balance(session: AsyncSession, account_id: int) -> int:
    credits = await session.scalar(select(Account.credits).where(Account.id == account_id))
    if credits is None:
        raise NotFound(f"account {account_id} not found")
    return credits


async def ledger_sum(session: AsyncSession, account_id: int) -> int:
    total = await session.scalar(
        select(func.coalesce(func.sum(LedgerEntry.amount), 0)).where(
            LedgerEntry.account_id == account_id
        )
    )
    return int(total or 0)


def apply_change(
    conn: Connection,
    *,
    account_id: int,
    amount: int,
    kind: LedgerKind,
    task_id: str | None = None,
    note: str | None = None,
) -> int:
    """Change the balance by `amount` (never below zero) and append the ledger row.

    Synchronous Core on the caller's connection, so the task core can debit and refund inside
    its own transactions (db/backend.py); the AsyncSession functions below wrap it.
    """
    via = lean(conn)
    params = {"account_id": account_id, "amount": amount}
    changed = via.execute(conn, CREDIT if amount >= 0 else DEBIT, params)
    if not changed:
        current = via.execute(conn, BALANCE, {"account_id": account_id})
        if not current:
            raise NotFound(f"account {account_id} not found")
        raise InsufficientCredits(
            f"Insufficient credits: {-amount} needed, the balance is {current[0][0]}"
            if kind != LedgerKind.DEBIT or task_id is None
            else f"Insufficient credits: this task costs {-amount} credits and the balance "
            f"is {current[0][0]}; top up and retry"
        )
    new_balance = changed[0][0]
    via.execute(
        conn,
        APPEND,
        {
            "account_id": account_id,
            "kind": kind.value,
            "amount": amount,
            "balance_after": new_balance,
            "task_id": task_id,
            "note": note,
            "created_at": utcnow(),
        },
    )
    return int(new_balance)


def debit_task(conn: Connection, *, account_id: int, amount: int, task_id: str) -> int:
    """Take a task's price; raises InsufficientCredits (saying price and balance) if short."""
    if amount < 0:
        raise ValueError("debit amount must not be negative")
    return apply_change(
        conn, account_id=account_id, amount=-amount, kind=LedgerKind.DEBIT, task_id=task_id
    )


def refund_task(conn: Connection, *, account_id: int, amount: int, task_id: str) -> int:
    """Give a task's credits back. The ledger's (task_id, kind) unique key makes a second
    refund of the same task fail loudly instead of paying twice."""
    return apply_change(
        conn, account_id=account_id, amount=amount, kind=LedgerKind.REFUND, task_id=task_id
    )


def balance_after_debit(conn: Connection, *, task_id: str) -> int | None:
    """The balance right after a task was paid for (the create answer's remaining_credits)."""
    return conn.scalar(
        select(ledger.c.balance_after).where(
            ledger.c.task_id == task_id, ledger.c.kind == LedgerKind.DEBIT.value
        )
    )


def entries_of_task(conn: Connection, *, task_id: str) -> list[LedgerEntryRow]:
    """A task's ledger rows (its debit, and its refund if any), oldest first."""
    rows = conn.execute(
        select(
            ledger.c.id,
            ledger.c.kind,
            ledger.c.amount,
            ledger.c.balance_after,
            ledger.c.note,
            ledger.c.created_at,
        )
        .where(ledger.c.task_id == task_id)
        .order_by(ledger.c.id)
    )
    return [LedgerEntryRow(*row) for row in rows]


async def _apply(
    session: AsyncSession,
    *,
    account_id: int,
    amount: int,
    kind: LedgerKind,
    task_id: str | None = None,
    note: str | None = None,
) -> int:
    def work(sync_session: Session) -> int:
        return apply_change(
            sync_session.connection(),
            account_id=account_id,
            amount=amount,
            kind=kind,
            task_id=task_id,
            note=note,
        )

    return await session.run_sync(work)


async def grant(
    session: AsyncSession, *, account_id: int, amount: int, note: str | None = None
) -> int:
    if amount <= 0:
        raise InvalidRequest("a grant must be a positive number of credits")
    return await _apply(
        session, account_id=account_id, amount=amount, kind=LedgerKind.GRANT, note=note
    )


async def adjust(
    session: AsyncSession, *, account_id: int, amount: int, note: str | None = None
) -> int:
    """Operator correction in either direction; refuses to take the balance below zero."""
    if amount == 0:
        raise InvalidRequest("an adjustment must not be zero")
    return await _apply(
        session, account_id=account_id, amount=amount, kind=LedgerKind.ADJUST, note=note
    )


async def debit(
    session: AsyncSession, *, account_id: int, amount: int, task_id: str | None = None
) -> int:
    """Take `amount` credits; raises InsufficientCredits and changes nothing if short."""
    if amount < 0:
        raise ValueError("debit amount must not be negative")
    return await _apply(
        session, account_id=account_id, amount=-amount, kind=LedgerKind.DEBIT, task_id=task_id
    )


async def refund(session: AsyncSession, *, account_id: int, amount: int, task_id: str) -> int:
    """refund_task in an AsyncSession's transaction."""
    return await _apply(
        session, account_id=account_id, amount=amount, kind=LedgerKind.REFUND, task_id=task_id
    )
