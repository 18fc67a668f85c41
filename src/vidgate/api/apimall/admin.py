"""The admin API, /api/v1/admin/...: accounts, their credits and keys, every account's tasks,
and the audit log. Only admin keys may call it: any other key gets 403 on every route.

Each action commits with its audit row (accounts/service.py), then forgets the account's cached
principals, so a change takes effect at once in this process and within the principal cache's
TTL in the others."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Request

from vidgate import errors
from vidgate.accounts import audit
from vidgate.accounts import service as accounts
from vidgate.accounts.audit import Actor
from vidgate.api.apimall.admin_schemas import (
    AccountPage,
    AccountStatusName,
    AccountView,
    AdjustRequest,
    AdminCreatedKey,
    AdminKeyInfo,
    AdminTaskPage,
    AuditPage,
    CreateAccountRequest,
    CreditChange,
    GrantRequest,
    RevokedKey,
    StatusChangeRequest,
    TaskStatusName,
    account_view,
    audit_view,
    created_key,
    key_info,
    task_item,
)
from vidgate.api.apimall.key_schemas import CreateKeyRequest, KeyId
from vidgate.api.apimall.webhook_schemas import MAX_ID
from vidgate.api.deps import CurrentPrincipal, GatewayDep
from vidgate.api.envelope import Envelope
from vidgate.api.errors import responses
from vidgate.api.request_context import request_id_of
from vidgate.db.types import utcnow
from vidgate.keys import budget
from vidgate.keys.service import AccountStatus
from vidgate.tasks import repository

router = APIRouter(prefix="/api/v1/admin", tags=["admin"])

AccountId = Annotated[int, Path(ge=1, le=MAX_ID)]
Page = Annotated[int, Query(ge=1, le=100_000)]
Limit = Annotated[int, Query(ge=1, le=100)]
ADMIN_ERRORS = responses(errors.Forbidden)


async def admin_actor(principal: CurrentPrincipal) -> Actor:
    """The calling admin key as an audit actor; 403 for any other key."""
    if not principal.is_admin:
        raise errors.Forbidden("this route needs an admin key (vidgate keys create --admin)")
    return Actor.admin_key(principal.key_id)


AdminActor = Annotated[Actor, Depends(admin_actor)]


async def _account_view(gateway: GatewayDep, account_id: int) -> AccountView:
    async with gateway.db.read() as session:
        return account_view(await accounts.get_account(session, account_id))


# -- accounts --------------------------------------------------------------------------------


@router.get("/accounts", response_model=Envelope[AccountPage], responses=ADMIN_ERRORS)
async def list_accounts(
    request: Request,
    _actor: AdminActor,
    gateway: GatewayDep,
    status: AccountStatusName | None = None,
    page: Page = 1,
    limit: Limit = 20,
) -> Envelope[AccountPage]:
    """Every account (or those of one status), oldest first."""
    async with gateway.db.read() as session:
        total, found = await accounts.list_accounts(
            session,
            status=None if status is None else AccountStatus(status),
            offset=(page - 1) * limit,
            limit=limit,
        )
    data = AccountPage(items=[account_view(a) for a in found], page=page, limit=limit, total=total)
    return Envelope(data=data, request_id=request_id_of(request))


@router.post("/accounts", response_model=Envelope[AccountView], responses=ADMIN_ERRORS)
async def create_account(
    body: CreateAccountRequest, request: Request, actor: AdminActor, gateway: GatewayDep
) -> Envelope[AccountView]:
    """A new account, pending or active, with its first credits."""
    pending = gateway.settings.new_accounts_pending if body.pending is None else body.pending
    async with gateway.db.write() as session:
        account = await accounts.create_account(
            session, title=body.title, credits=body.credits, pending=pending, actor=actor
        )
    data = await _account_view(gateway, account.id)
    return Envelope(data=data, request_id=request_id_of(request))


@router.get("/accounts/{account_id}", response_model=Envelope[AccountView], responses=ADMIN_ERRORS)
async def get_account(
    account_id: AccountId, request: Request, _actor: AdminActor, gateway: GatewayDep
) -> Envelope[AccountView]:
    return Envelope(
        data=await _account_view(gateway, account_id), request_id=request_id_of(request)
    )


StatusChange = Callable[..., Awaitable[object]]


async def _change_status(
    change: StatusChange,
    account_id: int,
    request: Request,
    actor: Actor,
    gateway: GatewayDep,
    body: StatusChangeRequest | None,
) -> Envelope[AccountView]:
    async with gateway.db.write() as session:
        await change(
            session, account_id=account_id, actor=actor, reason=body.reason if body else None
        )
    gateway.principals.invalidate_account(account_id)
    data = await _account_view(gateway, account_id)
    return Envelope(data=data, request_id=request_id_of(request))


@router.post(
    "/accounts/{account_id}/approve", response_model=Envelope[AccountView], responses=ADMIN_ERRORS
)
async def approve_account(
    account_id: AccountId,
    request: Request,
    actor: AdminActor,
    gateway: GatewayDep,
    body: StatusChangeRequest | None = None,
) -> Envelope[AccountView]:
    """Let the account's keys in (pending or suspended -> active)."""
    return await _change_status(accounts.approve, account_id, request, actor, gateway, body)


@router.post(
    "/accounts/{account_id}/suspend", response_model=Envelope[AccountView], responses=ADMIN_ERRORS
)
async def suspend_account(
    account_id: AccountId,
    request: Request,
    actor: AdminActor,
    gateway: GatewayDep,
    body: StatusChangeRequest | None = None,
) -> Envelope[AccountView]:
    """Shut the account's keys out (403 "account suspended"); its balance and tasks stay."""
    return await _change_status(accounts.suspend, account_id, request, actor, gateway, body)


# -- credits ---------------------------------------------------------------------------------


@router.post(
    "/accounts/{account_id}/credits/grant",
    response_model=Envelope[CreditChange],
    responses=ADMIN_ERRORS,
)
async def grant_credits(
    account_id: AccountId,
    body: GrantRequest,
    request: Request,
    actor: AdminActor,
    gateway: GatewayDep,
) -> Envelope[CreditChange]:
    """Add credits to an account (a ledger `grant`)."""
    async with gateway.db.write() as session:
        balance = await accounts.grant_credits(
            session, account_id=account_id, amount=body.amount, actor=actor, reason=body.reason
        )
    data = CreditChange(account_id=account_id, amount=body.amount, balance=balance)
    return Envelope(data=data, request_id=request_id_of(request))


@router.post(
    "/accounts/{account_id}/credits/adjust",
    response_model=Envelope[CreditChange],
    responses=responses(errors.Forbidden, errors.InsufficientCredits),
)
async def adjust_credits(
    account_id: AccountId,
    body: AdjustRequest,
    request: Request,
    actor: AdminActor,
    gateway: GatewayDep,
) -> Envelope[CreditChange]:
    """Correct a balance either way, saying why (a ledger `adjust`); 402 rather than below 0."""
    async with gateway.db.write() as session:
        balance = await accounts.adjust_credits(
            session, account_id=account_id, amount=body.amount, actor=actor, reason=body.reason
        )
    data = CreditChange(account_id=account_id, amount=body.amount, balance=balance)
    return Envelope(data=data, request_id=request_id_of(request))


# -- keys ------------------------------------------------------------------------------------


@router.get(
    "/accounts/{account_id}/keys",
    response_model=Envelope[list[AdminKeyInfo]],
    responses=ADMIN_ERRORS,
)
async def list_account_keys(
    account_id: AccountId, request: Request, _actor: AdminActor, gateway: GatewayDep
) -> Envelope[list[AdminKeyInfo]]:
    now = utcnow()
    async with gateway.db.read() as session:
        found = await accounts.list_keys(session, account_id=account_id)
        spent = await budget.spent_by_key(session, found, at=now)
    return Envelope(
        data=[key_info(k, spent=spent.get(k.id), now=now) for k in found],
        request_id=request_id_of(request),
    )


@router.post(
    "/accounts/{account_id}/keys",
    response_model=Envelope[AdminCreatedKey],
    responses=ADMIN_ERRORS,
)
async def create_account_key(
    account_id: AccountId,
    body: CreateKeyRequest,
    request: Request,
    actor: AdminActor,
    gateway: GatewayDep,
) -> Envelope[AdminCreatedKey]:
    """A key for the account, an admin key too, with the controls of POST /api/v1/keys; the
    plaintext is shown only in this answer."""
    now = utcnow()
    async with gateway.db.write() as session:
        key, plaintext = await accounts.create_key(
            session,
            account_id=account_id,
            title=body.title,
            actor=actor,
            controls=body.controls(now=now),
            known_models=gateway.catalogue.models,
        )
    return Envelope(data=created_key(key, plaintext, now=now), request_id=request_id_of(request))


@router.delete(
    "/accounts/{account_id}/keys/{key_id}",
    response_model=Envelope[RevokedKey],
    responses=ADMIN_ERRORS,
)
async def revoke_account_key(
    account_id: AccountId,
    key_id: KeyId,
    request: Request,
    actor: AdminActor,
    gateway: GatewayDep,
) -> Envelope[RevokedKey]:
    """Revoke a key of the account (it stays listed); refused from its next request on."""
    async with gateway.db.write() as session:
        key = await accounts.revoke_key(session, account_id=account_id, key_id=key_id, actor=actor)
    gateway.principals.invalidate_key(key.id)
    return Envelope(
        data=RevokedKey(id=key.id, status=key.status), request_id=request_id_of(request)
    )


# -- tasks and the audit log -----------------------------------------------------------------


@router.get("/tasks", response_model=Envelope[AdminTaskPage], responses=ADMIN_ERRORS)
async def list_tasks(
    request: Request,
    _actor: AdminActor,
    gateway: GatewayDep,
    account_id: Annotated[int | None, Query(ge=1, le=MAX_ID)] = None,
    status: TaskStatusName | None = None,
    model: Annotated[str | None, Query(min_length=1, max_length=64)] = None,
    page: Page = 1,
    limit: Annotated[int, Query(ge=1, le=50)] = 20,
) -> Envelope[AdminTaskPage]:
    """Every account's tasks (or one account's, of one status or model), newest first."""
    total, found = await gateway.db.backend.run_read(
        lambda conn: repository.search(
            conn,
            account_id=account_id,
            status=status,
            model=model,
            offset=(page - 1) * limit,
            limit=limit,
        )
    )
    items = [task_item(task, gateway.url_for) for task in found]
    data = AdminTaskPage(items=items, page=page, limit=limit, total=total)
    return Envelope(data=data, request_id=request_id_of(request))


@router.get("/audit", response_model=Envelope[AuditPage], responses=ADMIN_ERRORS)
async def list_audit(
    request: Request,
    _actor: AdminActor,
    gateway: GatewayDep,
    account_id: Annotated[int | None, Query(ge=1, le=MAX_ID)] = None,
    page: Page = 1,
    limit: Limit = 20,
) -> Envelope[AuditPage]:
    """The admin actions (API and CLI), newest first; with `account_id`, on that account."""
    async with gateway.db.read() as session:
        total, found = await audit.list_entries(
            session, account_id=account_id, offset=(page - 1) * limit, limit=limit
        )
    data = AuditPage(items=[audit_view(e) for e in found], page=page, limit=limit, total=total)
    return Envelope(data=data, request_id=request_id_of(request))
