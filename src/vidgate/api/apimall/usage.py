"""GET /api/v1/account/usage and /api/v1/account/ledger: what an account's keys spent."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from sqlalchemy import Connection

from vidgate.api.apimall.usage_schemas import (
    MAX_ID,
    LedgerKind,
    LedgerPage,
    UsageReportView,
    ledger_page_view,
    usage_report_view,
)
from vidgate.api.deps import CurrentPrincipal, GatewayDep
from vidgate.api.envelope import Envelope
from vidgate.api.errors import responses
from vidgate.api.request_context import request_id_of
from vidgate.billing import usage
from vidgate.billing.usage import INSTANT_PATTERN, GroupBy, LedgerRow, UsageReport
from vidgate.db.types import utcnow
from vidgate.keys.service import Principal

router = APIRouter(prefix="/api/v1/account", tags=["account"])

MAX_TASK_ID_CHARS = 40  # video_tasks.id

# Stated, not validated by the framework: usage.parse_instant refuses the rest with a message
# that shows the expected spelling.
_INSTANT_DESCRIPTION = (
    "ISO 8601 date (2026-03-12: a whole UTC day) or datetime (2026-03-12T09:30:00Z; without an "
    "offset it is UTC)"
)
AccountParam = Annotated[
    int | None,
    Query(
        ge=1,
        le=MAX_ID,
        description="Admin keys: the account to read (default: the caller's own). Any other "
        "account than its own is 404 to a non-admin key",
    ),
]


def _account_of(conn: Connection, principal: Principal, account_id: int | None) -> int:
    return usage.account_in_view(
        conn,
        caller_account_id=principal.account_id,
        is_admin=principal.is_admin,
        account_id=account_id,
    )


@router.get("/usage", response_model=Envelope[UsageReportView], responses=responses())
async def get_usage(
    request: Request,
    principal: CurrentPrincipal,
    gateway: GatewayDep,
    from_: Annotated[
        str | None,
        Query(
            alias="from",
            max_length=40,
            description=f"Start of the window, inclusive: {_INSTANT_DESCRIPTION}. Default: 30 "
            "days before `to`",
            json_schema_extra={"pattern": INSTANT_PATTERN},
        ),
    ] = None,
    to: Annotated[
        str | None,
        Query(
            max_length=40,
            description=f"End of the window: {_INSTANT_DESCRIPTION}; a date includes that day. "
            "Default: now. At most 366 days after `from`",
            json_schema_extra={"pattern": INSTANT_PATTERN},
        ),
    ] = None,
    group_by: Annotated[GroupBy, Query(description="One group per UTC day, model or key")] = (
        GroupBy.DAY
    ),
    key_id: Annotated[
        int | None,
        Query(ge=1, le=MAX_ID, description="Only the tasks of this key of the account"),
    ] = None,
    account_id: AccountParam = None,
) -> Envelope[UsageReportView]:
    """Per day, model or key: the tasks created in the window by status, the credits the
    ledger debited and refunded for tasks in it, and the seconds of video completed."""
    window = usage.usage_window(from_, to, now=utcnow())

    def work(conn: Connection) -> tuple[int, UsageReport]:
        account = _account_of(conn, principal, account_id)
        if key_id is not None:
            usage.check_key_of(conn, key_id=key_id, account_id=account)
        report = usage.usage_report(
            conn, account_id=account, window=window, group_by=group_by, key_id=key_id
        )
        return account, report

    account, report = await gateway.db.backend.run_read(work)
    data = usage_report_view(report, account_id=account)
    return Envelope(data=data, request_id=request_id_of(request))


@router.get("/ledger", response_model=Envelope[LedgerPage], responses=responses())
async def get_ledger(
    request: Request,
    principal: CurrentPrincipal,
    gateway: GatewayDep,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    after: Annotated[
        int | None,
        Query(ge=1, le=MAX_ID, description="The last id of the previous page: older entries"),
    ] = None,
    kind: Annotated[LedgerKind | None, Query(description="Only entries of this kind")] = None,
    task_id: Annotated[
        str | None,
        Query(min_length=1, max_length=MAX_TASK_ID_CHARS, description="Only this task's"),
    ] = None,
    account_id: AccountParam = None,
) -> Envelope[LedgerPage]:
    """The account's credit ledger, newest first: grants, task debits and refunds, and
    adjustments, each with the balance after it."""

    def work(conn: Connection) -> tuple[list[LedgerRow], bool]:
        account = _account_of(conn, principal, account_id)
        return usage.ledger_page(
            conn, account_id=account, limit=limit, after=after, kind=kind, task_id=task_id
        )

    rows, has_more = await gateway.db.backend.run_read(work)
    data = ledger_page_view(rows, limit=limit, has_more=has_more)
    return Envelope(data=data, request_id=request_id_of(request))
