"""`vidgate credits`: grant credits, and show balances and each channel's settlement."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from vidgate.accounts import audit
from vidgate.accounts import service as accounts
from vidgate.billing import service as billing
from vidgate.cli.admin import DataDirOption, load_settings, out, run_with_db
from vidgate.db.engine import Database
from vidgate.tasks import repository
from vidgate.tasks.repository import ChannelSettlement

app = typer.Typer(help="Grant and inspect account credits.", no_args_is_help=True)


@app.command("grant")
def credits_grant(
    amount: Annotated[int, typer.Argument(min=1, help="Credits to add")],
    account: Annotated[int, typer.Option("--account", help="Account id")],
    reason: Annotated[
        str | None, typer.Option("--reason", help="Why (the ledger note and the audit log)")
    ] = None,
    data_dir: DataDirOption = None,
) -> None:
    """Grant credits to an account (audited)."""
    settings = load_settings(data_dir)

    async def work(db: Database) -> int:
        async with db.write() as session:
            return await accounts.grant_credits(
                session, account_id=account, amount=amount, actor=audit.CLI, reason=reason
            )

    balance = run_with_db(settings, work)
    out.print(f"account {account}: balance {balance}")


@app.command("show")
def credits_show(
    account: Annotated[
        int | None, typer.Option("--account", help="Account id (default: every account)")
    ] = None,
    data_dir: DataDirOption = None,
) -> None:
    """An account's balance, and per channel what ended tasks were charged against what the
    channel's upstream says it cost (its margin)."""
    settings = load_settings(data_dir)

    async def work(db: Database) -> tuple[tuple[int, int] | None, list[ChannelSettlement]]:
        totals = None
        async with db.read() as session:
            if account is not None:
                totals = (
                    await billing.balance(session, account),
                    await billing.ledger_sum(session, account),
                )
        settlement = await db.backend.run_read(
            lambda conn: repository.channel_settlement(conn, account_id=account)
        )
        return totals, settlement

    totals, settlement = run_with_db(settings, work)
    if totals is not None:
        balance, ledger_total = totals
        out.print(f"account {account}: balance {balance} (ledger total {ledger_total})")
    if not settlement:
        out.print("no ended tasks on any channel yet")
        return
    table = Table(title="Ended tasks per channel")
    for column in ("channel", "tasks", "charged", "upstream cost", "margin"):
        table.add_column(column, justify="left" if column == "channel" else "right")
    for row in settlement:
        # The margin counts only the tasks whose upstream reported what it charged.
        margin = str(row.charged_with_cost - row.upstream_cost) if row.tasks_with_cost else "-"
        cost = f"{row.upstream_cost} ({row.tasks_with_cost} reported)"
        table.add_row(row.channel, str(row.tasks), str(row.charged), cost, margin)
    out.print(table)
