"""The key-control options of `vidgate keys create` and `keys update`, and `keys update`
itself: role, expiry, model allow-list, spend budget (keys/service.py KeyControls)."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from sqlalchemy.ext.asyncio import AsyncSession

from vidgate.accounts import audit
from vidgate.accounts.service import key_snapshot
from vidgate.db.engine import Database
from vidgate.db.models import ApiKey
from vidgate.db.types import iso_ms, utcnow
from vidgate.keys import service as keys
from vidgate.keys.budget import BudgetPeriod
from vidgate.keys.invalidation import Invalidation, Scope, announce

AdminOption = Annotated[
    bool, typer.Option("--admin", help="An admin key: manages every account (/api/v1/admin)")
]
BudgetOption = Annotated[
    int | None,
    typer.Option(
        "--budget", min=0, help="Credits this key may spend per budget period (default: no cap)"
    ),
]
BudgetPeriodOption = Annotated[
    BudgetPeriod | None,
    typer.Option(
        "--budget-period", help="The budget's period: a UTC day, month, or total (default)"
    ),
]
ModelsOption = Annotated[
    list[str] | None,
    typer.Option(
        "--models",
        metavar="MODEL,...",
        help="Only these models (repeatable or comma-separated; default: every model)",
    ),
]
ExpiresInOption = Annotated[
    str | None,
    typer.Option(
        "--expires-in",
        metavar="DURATION",
        help="Refuse the key after this long: 30d, 12h, 90m, 2w (default: never)",
    ),
]


def expiry_of(expires_in: str | None, *, now: datetime) -> datetime | None:
    if expires_in is None:
        return None
    return now + keys.parse_duration(expires_in, field="--expires-in")


def controls_from_options(
    *,
    admin: bool,
    budget: int | None,
    budget_period: BudgetPeriod | None,
    models: list[str] | None,
    expires_in: str | None,
) -> keys.KeyControls:
    return keys.KeyControls(
        role=keys.KeyRole.ADMIN if admin else keys.KeyRole.USER,
        expires_at=expiry_of(expires_in, now=utcnow()),
        allowed_models=None if models is None else keys.split_models(models),
        budget_credits=budget,
        budget_period=budget_period,
    )


async def record_key_action(
    session: AsyncSession, key: ApiKey, *, action: str, before: dict[str, Any] | None
) -> None:
    """The audit row of an operator's key change at the CLI, in its transaction."""
    await audit.record(
        session,
        actor=audit.CLI,
        action=action,
        target_type="key",
        target_id=key.id,
        account_id=key.account_id,
        before=before,
        after=key_snapshot(key),
    )


def describe_controls(key: ApiKey) -> tuple[str, str, str, str]:
    """`keys list`'s role, models, budget and expiry columns."""
    if key.budget_credits is None:
        budget = "-"
    elif key.budget_period in (None, BudgetPeriod.TOTAL):
        budget = f"{key.budget_credits} total"
    else:
        budget = f"{key.budget_credits}/{key.budget_period}"
    models = ",".join(key.allowed_models) if key.allowed_models is not None else "all"
    return key.role, models, budget, iso_ms(key.expires_at) or "never"


def keys_update(
    key_id: Annotated[int, typer.Argument(help="Key id (see `vidgate keys list`)")],
    admin: Annotated[
        bool | None, typer.Option("--admin/--user", help="Make it an admin key, or a user key")
    ] = None,
    budget: BudgetOption = None,
    no_budget: Annotated[bool, typer.Option("--no-budget", help="Remove the budget")] = False,
    budget_period: BudgetPeriodOption = None,
    models: ModelsOption = None,
    all_models: Annotated[
        bool, typer.Option("--all-models", help="Remove the model allow-list")
    ] = False,
    expires_in: ExpiresInOption = None,
    no_expiry: Annotated[bool, typer.Option("--no-expiry", help="Never expire")] = False,
    data_dir: Annotated[
        Path | None,
        typer.Option(
            "--data-dir", help="Data directory (default: $VIDGATE_DATA_DIR or ./.vidgate)"
        ),
    ] = None,
) -> None:
    """Change a key's role, budget, model list or expiry; what is not given stays as it is.
    Every API process applies it at once with Redis, else within the principal cache TTL."""
    from vidgate.cli.admin import fail, load_settings, out, run_with_db
    from vidgate.providers.catalogue import Catalogue

    for given, cleared, name in (
        (budget is not None, no_budget, "--budget"),
        (models is not None, all_models, "--models"),
        (expires_in is not None, no_expiry, "--expires-in"),
    ):
        if given and cleared:
            raise fail(f"{name}: give it or clear it, not both")
    settings = load_settings(data_dir)
    known = Catalogue.load(settings.catalogue_path).models

    async def work(db: Database) -> tuple[str, str, str, str]:
        async with db.write() as session:
            key = await keys.get_key(session, key_id=key_id)
            before = key_snapshot(key)
            controls = keys.controls_of(key)
            changes: dict[str, object] = {}
            if admin is not None:
                changes["role"] = keys.KeyRole.ADMIN if admin else keys.KeyRole.USER
            if budget is not None or no_budget:  # a new amount keeps the period unless given
                changes["budget_credits"] = budget
                period = budget_period or controls.budget_period
                changes["budget_period"] = period if budget is not None else None
            elif budget_period is not None:
                changes["budget_period"] = budget_period
            if models is not None or all_models:
                changes["allowed_models"] = None if all_models else keys.split_models(models or [])
            if expires_in is not None or no_expiry:
                changes["expires_at"] = expiry_of(expires_in, now=utcnow())
            key = await keys.set_controls(
                session,
                key_id=key_id,
                controls=replace(controls, **changes),  # type: ignore[arg-type]
                known_models=known,
            )
            await record_key_action(session, key, action="key.update", before=before)
            described = describe_controls(key)
        await announce(settings, Invalidation(Scope.KEY, key_id))  # API processes: at once
        return described

    role, allowed, budget_text, expires = run_with_db(settings, work)
    out.print(
        f"key {key_id}: role {role}, models {allowed}, budget {budget_text}, expires {expires}",
        highlight=False,
    )
