"""Per-key spend budgets and model allow-lists at create, on SQLite and PostgreSQL: a create
that would pass the budget is 402 budget_exceeded with the budget, the spend and the reset;
concurrent creates cannot pass it; a refund gives the credits back to the period they were
charged in; a model outside the list is 403 before any charge."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy import Connection, select, update

from support import AcceptAll, Caller, GatewayProcess, make_caller
from vidgate.billing import service as billing
from vidgate.client import BudgetExceededError, InsufficientCreditsError, VidgateClient
from vidgate.db.engine import Database
from vidgate.db.models import ApiKey, KeyBudgetSpend, VideoTask
from vidgate.db.types import utcnow
from vidgate.errors import BudgetExceeded, InsufficientCredits
from vidgate.gateway import Gateway
from vidgate.keys import budget
from vidgate.keys.budget import Budget, BudgetPeriod
from vidgate.keys.service import Principal
from vidgate.providers.catalogue import Catalogue
from vidgate.tasks import service, transitions
from vidgate.tasks.cancel import cancel_task
from vidgate.tasks.commands import CreateTask
from vidgate.tasks.states import TaskErrorCode

CATALOGUE = Catalogue.load()  # `sample` costs 1 credit


class NoProviders:
    """Cancel's providers in a process that runs none (nothing was submitted anyway)."""

    def provider(self, name: str) -> None:
        return None


def principal_of(caller: Caller, limit: Budget | None) -> Principal:
    return Principal(
        key_id=caller.key_id,
        account_id=caller.account_id,
        rate_limit_per_second=None,
        max_concurrent_jobs=None,
        budget=limit,
    )


async def create(db: Database, principal: Principal, prompt: str = "a cat") -> str:
    outcome = await service.create_task(
        db,
        principal=principal,
        command=CreateTask(surface="apimall", model="sample", prompt=prompt),
        request_id="req_test",
        idempotency_key=None,
        catalogue=CATALOGUE,
        routing=AcceptAll(),
        default_max_concurrent_jobs=1000,
    )
    return outcome.task.id


async def spend_rows(db: Database, key_id: int) -> dict[datetime, int]:
    async with db.read() as session:
        rows = await session.execute(
            select(KeyBudgetSpend.period_start, KeyBudgetSpend.spent).where(
                KeyBudgetSpend.api_key_id == key_id
            )
        )
        return {start: spent for start, spent in rows}


async def balance(db: Database, account_id: int) -> int:
    async with db.read() as session:
        return await billing.balance(session, account_id)


def test_periods_are_utc_calendar_days_and_months() -> None:
    at = datetime(2026, 12, 31, 23, 59, 59, tzinfo=UTC)
    assert budget.period_start(BudgetPeriod.DAY, at) == datetime(2026, 12, 31, tzinfo=UTC)
    assert budget.period_end(BudgetPeriod.DAY, at) == datetime(2027, 1, 1, tzinfo=UTC)
    assert budget.period_start(BudgetPeriod.MONTH, at) == datetime(2026, 12, 1, tzinfo=UTC)
    assert budget.period_end(BudgetPeriod.MONTH, at) == datetime(2027, 1, 1, tzinfo=UTC)
    feb = datetime(2028, 2, 29, 12, tzinfo=UTC)
    assert budget.period_end(BudgetPeriod.MONTH, feb) == datetime(2028, 3, 1, tzinfo=UTC)
    assert budget.period_end(BudgetPeriod.TOTAL, at) is None


async def test_twenty_concurrent_creates_against_a_budget_of_five_let_exactly_five_through(
    db: Database,
) -> None:
    caller = await make_caller(db, credits=100)
    principal = principal_of(caller, Budget(credits=5, period=BudgetPeriod.DAY))
    outcomes = await asyncio.gather(
        *(create(db, principal) for _ in range(20)), return_exceptions=True
    )
    created = [o for o in outcomes if isinstance(o, str)]
    refused = [o for o in outcomes if isinstance(o, BudgetExceeded)]
    assert (len(created), len(refused)) == (5, 15), [o for o in outcomes if not isinstance(o, str)]
    assert list((await spend_rows(db, caller.key_id)).values()) == [5]
    assert await balance(db, caller.account_id) == 95  # only the five were charged
    async with db.read() as session:
        tasks = await session.scalars(
            select(VideoTask.id).where(VideoTask.api_key_id == caller.key_id)
        )
        assert sorted(tasks) == sorted(created)


async def test_the_budget_statement_alone_holds_under_concurrent_transactions(
    db: Database,
) -> None:
    """Without the create's other locks (the key's in-flight counter serialises its creates
    too): twenty transactions race on the spend row, five win."""
    caller = await make_caller(db, credits=0)
    limit = Budget(credits=5, period=BudgetPeriod.TOTAL)
    at = utcnow()

    def take(conn: Connection) -> datetime:
        return budget.take(conn, api_key_id=caller.key_id, budget=limit, amount=1, at=at)

    outcomes = await asyncio.gather(
        *(db.backend.run_write(take) for _ in range(20)), return_exceptions=True
    )
    assert sum(isinstance(o, datetime) for o in outcomes) == 5, outcomes
    assert all(isinstance(o, (datetime, BudgetExceeded)) for o in outcomes), outcomes
    assert await spend_rows(db, caller.key_id) == {budget.TOTAL_PERIOD_START: 5}


async def test_a_refused_create_says_budget_spend_and_reset_and_changes_nothing(
    db: Database,
) -> None:
    caller = await make_caller(db, credits=10)
    principal = principal_of(caller, Budget(credits=2, period=BudgetPeriod.DAY))
    for _ in range(2):
        await create(db, principal)
    with pytest.raises(BudgetExceeded) as refused:
        await create(db, principal)
    tomorrow = budget.period_end(BudgetPeriod.DAY, utcnow())
    assert tomorrow is not None
    reset = tomorrow.strftime("%Y-%m-%dT%H:%M:%S.000Z")
    assert refused.value.message == (
        "Budget exceeded: this API key may spend 2 credits per day (UTC); it has spent 2 today "
        f"and this task costs 1; it resets at {reset}"
    )
    assert refused.value.headers == {
        "X-Budget-Limit": "2",
        "X-Budget-Spent": "2",
        "X-Budget-Period": "day",
        "X-Budget-Reset": reset,
    }
    assert await balance(db, caller.account_id) == 8
    assert list((await spend_rows(db, caller.key_id)).values()) == [2]


async def test_a_price_above_the_whole_budget_is_refused_at_once(db: Database) -> None:
    caller = await make_caller(db, credits=10)
    with pytest.raises(BudgetExceeded, match="spent 0 in total and this task costs 1"):
        await create(db, principal_of(caller, Budget(credits=0, period=BudgetPeriod.TOTAL)))
    assert await spend_rows(db, caller.key_id) == {}
    assert await balance(db, caller.account_id) == 10


async def test_the_balance_still_applies_under_the_budget(db: Database) -> None:
    caller = await make_caller(db, credits=1)
    principal = principal_of(caller, Budget(credits=5, period=BudgetPeriod.MONTH))
    await create(db, principal)
    with pytest.raises(InsufficientCredits):
        await create(db, principal)
    assert list((await spend_rows(db, caller.key_id)).values()) == [1]  # the refusal took none


async def test_refunds_give_credits_back_to_the_period_they_were_charged_in(
    db: Database,
) -> None:
    caller = await make_caller(db, credits=10)
    principal = principal_of(caller, Budget(credits=3, period=BudgetPeriod.DAY))
    failed, cancelled, kept = [await create(db, principal) for _ in range(3)]
    today = budget.period_start(BudgetPeriod.DAY, utcnow())
    # As if `kept` had been charged yesterday: its refund must go back there, not to today.
    yesterday = today - timedelta(days=1)
    async with db.write() as session:
        session.add(KeyBudgetSpend(api_key_id=caller.key_id, period_start=yesterday, spent=1))
        await session.execute(
            update(VideoTask).where(VideoTask.id == kept).values(budget_period_start=yesterday)
        )
        await session.execute(
            update(KeyBudgetSpend)
            .where(KeyBudgetSpend.api_key_id == caller.key_id, KeyBudgetSpend.period_start == today)
            .values(spent=2)
        )
    assert await db.backend.run_write(
        lambda conn: transitions.failed(
            conn, failed, at=utcnow(), code=TaskErrorCode.GENERATION_FAILED, message="boom"
        )
    )
    await cancel_task(
        db,
        account_id=caller.account_id,
        task_id=cancelled,
        catalogue=CATALOGUE,
        providers=NoProviders(),
    )
    assert await spend_rows(db, caller.key_id) == {today: 0, yesterday: 1}
    assert await db.backend.run_write(
        lambda conn: transitions.failed(
            conn, kept, at=utcnow(), code=TaskErrorCode.GENERATION_FAILED, message="boom"
        )
    )
    assert await spend_rows(db, caller.key_id) == {today: 0, yesterday: 0}
    assert await balance(db, caller.account_id) == 10


async def test_a_key_without_a_budget_leaves_no_spend_rows(db: Database) -> None:
    caller = await make_caller(db, credits=10)
    task_id = await create(db, principal_of(caller, None))
    async with db.read() as session:
        task = await session.get(VideoTask, task_id)
        assert task is not None
        assert task.budget_period_start is None
    assert await spend_rows(db, caller.key_id) == {}


# -- the allow-list, on both surfaces -------------------------------------------------------


async def test_a_model_outside_the_allow_list_is_403_naming_it_and_charges_nothing(
    client: httpx.AsyncClient, gateway: Gateway
) -> None:
    caller = await make_caller(gateway.db, credits=50)
    async with gateway.db.write() as session:
        await session.execute(
            update(ApiKey).where(ApiKey.id == caller.key_id).values(allowed_models=["sora2"])
        )
    refused = await client.post(
        "/api/v1/videos/generate",
        headers=caller.headers,
        json={"model": "sample", "prompt": "a cat"},
    )
    assert refused.status_code == 403, refused.text
    assert refused.json()["error"] == {
        "code": "forbidden",
        "message": "model sample is not allowed for this API key (allowed: sora2)",
    }
    openai = await client.post(
        "/v1/videos", headers=caller.headers, json={"model": "sora-2", "prompt": "a cat"}
    )
    assert openai.status_code == 403, openai.text
    assert openai.json()["error"]["type"] == "permission_error"
    assert "model sora-2 is not allowed" in openai.json()["error"]["message"]
    allowed = await client.post(
        "/api/v1/videos/generate", headers=caller.headers, json={"model": "sora2", "prompt": "x"}
    )
    assert allowed.status_code == 200, allowed.text
    price = allowed.json()["data"]["credits_used"]
    assert await balance(gateway.db, caller.account_id) == 50 - price


# -- over real HTTP: a key made by the CLI with a budget of 3 ---------------------------------


def test_a_budget_of_three_over_http_refuses_the_fourth_and_a_refunded_failure_frees_one(
    live_gateway: GatewayProcess,
) -> None:
    made = subprocess.run(
        [
            sys.executable, "-m", "vidgate", "keys", "create", "--title", "shop",
            "--credits", "10", "--budget", "3", "--budget-period", "day",
        ],
        env=live_gateway.env, capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    headers = {"Authorization": f"Bearer {made.stdout.strip().splitlines()[-1]}"}
    base = live_gateway.base_url

    def generate(prompt: str) -> httpx.Response:
        body = {"model": "sample", "prompt": prompt}
        return httpx.post(f"{base}/api/v1/videos/generate", headers=headers, json=body, timeout=10)

    # The failure waits 3 s, so its refund cannot free the budget before the 4th create.
    created = [generate(prompt) for prompt in ("a cat", "a dog", "[slow:3] [fail] a bird")]
    assert [r.status_code for r in created] == [200, 200, 200], [r.text for r in created]
    refused = generate("a fish")
    assert refused.status_code == 402, refused.text
    assert refused.json()["error"]["code"] == "budget_exceeded"
    assert (
        "spend 3 credits per day (UTC); it has spent 3 today" in refused.json()["error"]["message"]
    )
    assert (refused.headers["x-budget-limit"], refused.headers["x-budget-spent"]) == ("3", "3")
    openai = httpx.post(
        f"{base}/v1/videos", headers=headers, json={"model": "sora-2", "prompt": "x"}, timeout=10
    )
    assert openai.status_code == 402, openai.text
    assert openai.json()["error"]["type"] == "insufficient_quota"
    assert openai.json()["error"]["code"] == "budget_exceeded"

    failed_id = created[2].json()["data"]["task_id"]
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        task = httpx.get(f"{base}/api/v1/videos/{failed_id}", headers=headers, timeout=5).json()
        if task["data"]["status"] == "failed":
            break
        time.sleep(0.2)
    assert task["data"]["credits_refunded"] == 1, task
    assert generate("a fish").status_code == 200  # the refund gave its credit back
    # The SDK tells a spent budget from an empty balance, with the figures.
    client = VidgateClient(base_url=base, api_key=headers["Authorization"][7:])
    with client, pytest.raises(BudgetExceededError) as spent:
        client.videos.generate(model="sample", prompt="a horse")
    assert isinstance(spent.value, InsufficientCreditsError)  # old handlers still catch it
    assert (spent.value.budget, spent.value.spent, spent.value.period) == (3, 3, "day")
    tomorrow = datetime.now(UTC).date() + timedelta(days=1)
    assert spent.value.resets_at == datetime(
        tomorrow.year, tomorrow.month, tomorrow.day, tzinfo=UTC
    )
    balances = httpx.get(f"{base}/api/v1/account/balances", headers=headers, timeout=5).json()
    assert balances["data"]["credits"] == 10 - 4 + 1
