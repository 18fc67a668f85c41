"""`vidgate accounts`: create, list, approve and suspend accounts. Each change is audited with
the actor `cli`; every API process applies an approval or suspension from its next request on
(announced through VIDGATE_REDIS_URL; without it, within the principal cache TTL, 1 s)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from vidgate.accounts import audit
from vidgate.accounts import service as accounts
from vidgate.accounts.service import AccountSummary
from vidgate.cli.admin import DataDirOption, err, load_settings, out, run_with_db
from vidgate.db.engine import Database
from vidgate.db.models import Account
from vidgate.db.types import iso_ms
from vidgate.keys.invalidation import Invalidation, Scope, announce

app = typer.Typer(help="Create, list, approve and suspend accounts.", no_args_is_help=True)

AccountArgument = Annotated[int, typer.Argument(help="Account id (see `vidgate accounts list`)")]
ReasonOption = Annotated[str | None, typer.Option("--reason", help="Why (kept in the audit log)")]
# Accounts are listed in pages of this many rows at a time, all of them in the end.
LIST_PAGE = 500


@app.command("create")
def accounts_create(
    title: Annotated[str, typer.Option("--title", help="A name for the account")],
    credits: Annotated[int, typer.Option("--credits", min=0, help="Credits to grant")] = 0,
    pending: Annotated[
        bool | None,
        typer.Option(
            "--pending/--active",
            help="Start pending (its keys are refused until approved) or active "
            "(default: $VIDGATE_NEW_ACCOUNTS_PENDING, else active)",
        ),
    ] = None,
    data_dir: DataDirOption = None,
) -> None:
    """Create an account; prints its id alone on the last line."""
    settings = load_settings(data_dir)
    start_pending = settings.new_accounts_pending if pending is None else pending

    async def work(db: Database) -> tuple[int, str]:
        async with db.write() as session:
            account = await accounts.create_account(
                session, title=title, credits=credits, pending=start_pending, actor=audit.CLI
            )
            return account.id, account.status

    account_id, status = run_with_db(settings, work)
    err.print(f"created account {account_id} ({status}, {credits} credits); its id:")
    print(account_id)


@app.command("list")
def accounts_list(data_dir: DataDirOption = None) -> None:
    """List every account with its status, balance and number of keys (not revoked)."""
    settings = load_settings(data_dir)

    async def work(db: Database) -> list[AccountSummary]:
        found: list[AccountSummary] = []
        async with db.read() as session:
            while True:
                total, page = await accounts.list_accounts(
                    session, offset=len(found), limit=LIST_PAGE
                )
                found += page
                if not page or len(found) >= total:
                    return found

    table = Table("id", "title", "status", "credits", "keys", "created")
    for account in run_with_db(settings, work):
        table.add_row(
            str(account.id),
            account.title,
            account.status,
            str(account.credits),
            str(account.keys),
            iso_ms(account.created_at) or "",
        )
    out.print(table)


def _change_status(
    change: Callable[..., Awaitable[Account]],
    account: int,
    reason: str | None,
    data_dir: Path | None,
) -> None:
    """Apply an audited status change and tell the API processes at once."""
    settings = load_settings(data_dir)

    async def work(db: Database) -> str:
        async with db.write() as session:
            changed = await change(session, account_id=account, actor=audit.CLI, reason=reason)
            status = changed.status
        await announce(settings, Invalidation(Scope.ACCOUNT, account))
        return status

    out.print(f"account {account}: {run_with_db(settings, work)}")


@app.command("approve")
def accounts_approve(
    account: AccountArgument, reason: ReasonOption = None, data_dir: DataDirOption = None
) -> None:
    """Approve an account (pending or suspended -> active): its keys are let in."""
    _change_status(accounts.approve, account, reason, data_dir)


@app.command("suspend")
def accounts_suspend(
    account: AccountArgument, reason: ReasonOption = None, data_dir: DataDirOption = None
) -> None:
    """Suspend an account: its keys get 403 "account suspended"; balance and tasks stay."""
    _change_status(accounts.suspend, account, reason, data_dir)
