"""Usage reports and the ledger: the report's queries on both databases (UTC days whatever the
session's time zone, the window, the filters), then over HTTP against real `vidgate serve`
processes with the sample renderer, and `vidgate usage` with its CSV."""

from __future__ import annotations

import csv
import io
import re
import subprocess
import sys
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine, select, update

from support import (
    AcceptAll,
    Caller,
    GatewayProcess,
    create_key_with_cli,
    make_caller,
    wait_for_task,
)
from vidgate.billing import usage
from vidgate.billing.usage import GroupBy, UsageFigures, UsageReport, Window
from vidgate.db.engine import Database, open_database
from vidgate.db.models import LedgerEntry, VideoTask
from vidgate.errors import InvalidRequest
from vidgate.keys.service import Principal
from vidgate.providers.catalogue import Catalogue
from vidgate.tasks import service, transitions
from vidgate.tasks.commands import CreateTask
from vidgate.tasks.states import TaskErrorCode, TaskStatus

CATALOGUE = Catalogue.from_dict(
    {
        "models": {
            "short": {"price": {"base": 2}, "default_seconds": 4, "channels": [{"provider": "x"}]},
            "long": {"price": {"base": 5}, "default_seconds": 6, "channels": [{"provider": "x"}]},
        }
    }
)
# A session time zone far from UTC: a day taken in the session's zone would move 23:59 UTC a day.
FAR_ZONE = "Pacific/Kiritimati"  # UTC+14
DAY_1 = datetime(2026, 3, 11, tzinfo=UTC)
DAY_2 = DAY_1 + timedelta(days=1)


# -- the report's queries, on both databases ------------------------------------------------


@pytest.fixture
async def far_db(database_url: str) -> AsyncIterator[Database]:
    """The database, its PostgreSQL sessions in a time zone 14 hours east of UTC."""
    if database_url.startswith("postgresql"):
        database_url += f"?options=-c%20TimeZone%3D{FAR_ZONE}"
    database = open_database(database_url)
    yield database
    await database.dispose()


async def create(db: Database, caller: Caller, model: str) -> str:
    principal = Principal(
        key_id=caller.key_id,
        account_id=caller.account_id,
        rate_limit_per_second=None,
        max_concurrent_jobs=None,
    )
    outcome = await service.create_task(
        db,
        principal=principal,
        command=CreateTask(surface="apimall", model=model, prompt="a heron"),
        request_id="req_test",
        idempotency_key=None,
        catalogue=CATALOGUE,
        routing=AcceptAll(),
        default_max_concurrent_jobs=1000,
    )
    return outcome.task.id


async def backdate(db: Database, task_id: str, *, created: datetime, kind: str) -> None:
    """Move a task's creation, or one of its ledger entries, to another instant (time passing)."""

    def work(conn: Any) -> None:
        if kind == "task":
            conn.execute(
                update(VideoTask).where(VideoTask.id == task_id).values(created_at=created)
            )
            return
        conn.execute(
            update(LedgerEntry)
            .where(LedgerEntry.task_id == task_id, LedgerEntry.kind == kind)
            .values(created_at=created)
        )

    await db.backend.run_write(work)


async def report(
    db: Database, account_id: int, window: Window, group_by: GroupBy, **kw: Any
) -> UsageReport:
    return await db.backend.run_read(
        lambda conn: usage.usage_report(
            conn, account_id=account_id, window=window, group_by=group_by, **kw
        )
    )


def figures_of(found: UsageReport) -> dict[str, tuple[int, ...]]:
    """Per group: (tasks, completed, failed, debited, refunded, net, seconds)."""

    def row(f: UsageFigures) -> tuple[int, ...]:
        by = f.tasks_by_status
        return (
            f.tasks,
            by[TaskStatus.COMPLETED],
            by[TaskStatus.FAILED],
            f.credits_debited,
            f.credits_refunded,
            f.net_credits,
            f.seconds_of_video,
        )

    return {group.group: row(group.figures) for group in found.groups} | {
        "total": row(found.totals)
    }


async def test_days_are_utc_days_and_credits_fall_on_the_day_the_ledger_wrote_them(
    far_db: Database,
) -> None:
    db = far_db
    caller = await make_caller(db, credits=100, title="reseller")
    stranger = await make_caller(db, credits=100, title="stranger")
    # "short" (2 credits) is paid one second before midnight UTC and refunded two seconds later.
    failing = await create(db, caller, "short")
    await db.backend.run_write(
        lambda conn: transitions.failed(
            conn, failing, at=DAY_2, code=TaskErrorCode.GENERATION_FAILED, message="no"
        )
    )
    await backdate(db, failing, created=DAY_2 - timedelta(seconds=1), kind="task")
    await backdate(db, failing, created=DAY_2 - timedelta(seconds=1), kind="debit")
    await backdate(db, failing, created=DAY_2 + timedelta(seconds=1), kind="refund")
    # "long" (5 credits, 6 s) is made on the second day and completes.
    done = await create(db, caller, "long")
    await db.backend.run_write(
        lambda conn: conn.execute(
            update(VideoTask).where(VideoTask.id == done).values(status="completed")
        )
    )
    await backdate(db, done, created=DAY_2 + timedelta(hours=23), kind="task")
    await backdate(db, done, created=DAY_2 + timedelta(hours=23), kind="debit")
    other = await create(db, stranger, "long")  # another account's: in no report of ours
    await backdate(db, other, created=DAY_2, kind="task")
    await backdate(db, other, created=DAY_2, kind="debit")

    both_days = Window(start=DAY_1, end=DAY_2 + timedelta(days=1))
    by_day = figures_of(await report(db, caller.account_id, both_days, GroupBy.DAY))
    assert by_day == {
        "2026-03-11": (1, 0, 1, 2, 0, 2, 0),
        "2026-03-12": (1, 1, 0, 5, 2, 3, 6),
        "total": (2, 1, 1, 7, 2, 5, 6),
    }
    by_model = figures_of(await report(db, caller.account_id, both_days, GroupBy.MODEL))
    assert by_model == {
        "long": (1, 1, 0, 5, 0, 5, 6),
        "short": (1, 0, 1, 2, 2, 0, 0),
        "total": (2, 1, 1, 7, 2, 5, 6),
    }
    by_key = figures_of(await report(db, caller.account_id, both_days, GroupBy.KEY))
    assert by_key == {str(caller.key_id): by_day["total"], "total": by_day["total"]}

    # The second day alone: the refund written then, not the task made the day before.
    second = Window(start=DAY_2, end=DAY_2 + timedelta(days=1))
    assert figures_of(await report(db, caller.account_id, second, GroupBy.MODEL)) == {
        "long": (1, 1, 0, 5, 0, 5, 6),
        "short": (0, 0, 0, 0, 2, -2, 0),
        "total": (1, 1, 0, 5, 2, 3, 6),
    }
    # The end is exclusive: a window ending at midnight leaves the refund out.
    first = Window(start=DAY_1, end=DAY_2)
    assert figures_of(await report(db, caller.account_id, first, GroupBy.DAY)) == {
        "2026-03-11": (1, 0, 1, 2, 0, 2, 0),
        "total": (1, 0, 1, 2, 0, 2, 0),
    }
    # Another key's filter, and every account (the CLI's default) counts the stranger too.
    assert figures_of(
        await report(db, caller.account_id, both_days, GroupBy.DAY, key_id=stranger.key_id)
    ) == {"total": (0, 0, 0, 0, 0, 0, 0)}
    everyone = await db.backend.run_read(
        lambda conn: usage.usage_report(
            conn, account_id=None, window=both_days, group_by=GroupBy.KEY
        )
    )
    assert figures_of(everyone)["total"] == (3, 1, 1, 12, 2, 10, 6)


def test_the_window_is_parsed_as_utc_and_bounded() -> None:
    now = datetime(2026, 3, 12, 9, 30, tzinfo=UTC)
    assert usage.usage_window(None, None, now=now) == Window(
        start=now - timedelta(days=30), end=now
    )
    whole_days = usage.usage_window("2026-03-01", "2026-03-31", now=now)
    assert whole_days == Window(
        start=datetime(2026, 3, 1, tzinfo=UTC), end=datetime(2026, 4, 1, tzinfo=UTC)
    )
    shifted = usage.usage_window("2026-03-01T10:00:00+02:00", "2026-03-01T12:00", now=now)
    assert shifted == Window(
        start=datetime(2026, 3, 1, 8, tzinfo=UTC), end=datetime(2026, 3, 1, 12, tzinfo=UTC)
    )
    assert usage.usage_window("2025-01-01", "2025-12-31", now=now).end == datetime(
        2026, 1, 1, tzinfo=UTC
    )
    for start, end, message in [
        ("2026-03-02", "2026-03-01", "from: 2026-03-02 is not before to (2026-03-01)"),
        ("2026-03-12T10:00Z", "2026-03-12T10:00Z", "is not before to"),
        ("2026-03-13", None, "from: 2026-03-13 is not before to (now)"),
        ("2024-01-01", "2025-03-01", "a report covers 366 days at most"),
        ("yesterday", None, "from: must be an ISO 8601 date"),
        ("2026-02-30", None, "from: '2026-02-30' is not a valid date"),
        (None, "9999-12-31", "to: '9999-12-31' is not a valid date"),
        (None, "2026-03-12T25:00Z", "to: '2026-03-12T25:00Z' is not a valid date"),
    ]:
        with pytest.raises(InvalidRequest, match=re.escape(message)):
            usage.usage_window(start, end, now=now)


# -- over HTTP: a reseller's keys, models and outcomes ---------------------------------------

SERVED_CATALOGUE = """
[models.clip]
price = { base = 2 }
default_resolution = "240p"
default_seconds = 1
channels = [{ provider = "sample" }]

[models.clip-pro]
price = { base = 5 }
default_resolution = "240p"
default_seconds = 2
channels = [{ provider = "sample" }]
"""
SLOW = "[slow:120]"  # long enough to be cancelled, or still running when the report is read


@dataclass
class Served:
    server: GatewayProcess
    database_url: str  # for SQLAlchemy's sync engine: the test reads the ledger itself

    def get(self, path: str, key: str | None = None, **params: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {key or self.server.api_key}"}
        return httpx.get(
            f"{self.server.base_url}{path}", params=params, headers=headers, timeout=10
        )

    def data(self, path: str, key: str | None = None, **params: Any) -> Any:
        response = self.get(path, key, **params)
        assert response.status_code == 200, response.text
        return response.json()["data"]

    def generate(self, key: str, model: str, prompt: str) -> str:
        response = httpx.post(
            f"{self.server.base_url}/api/v1/videos/generate",
            json={"model": model, "prompt": prompt},
            headers={"Authorization": f"Bearer {key}"},
            timeout=10,
        )
        assert response.status_code == 200, response.text
        task_id: str = response.json()["data"]["task_id"]
        return task_id

    def cancel(self, task_id: str) -> None:
        response = httpx.post(
            f"{self.server.base_url}/api/v1/videos/{task_id}/cancel",
            headers=self.server.headers,
            timeout=10,
        )
        assert response.status_code == 200, response.text

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "vidgate", *args],
            env=self.server.env,
            capture_output=True,
            text=True,
            timeout=60,
        )


@pytest.fixture(params=["sqlite", "postgresql"])
def served(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Served]:
    catalogue = tmp_path / "catalogue.toml"
    catalogue.write_text(SERVED_CATALOGUE)
    env = {"VIDGATE_CATALOGUE_PATH": str(catalogue), "VIDGATE_INITIAL_CREDITS": "1000"}
    data_dir = tmp_path / "gateway"
    database_url = f"sqlite:///{data_dir / 'vidgate.db'}"
    # Named in both cases, so the scale test pass keeps the SQLite case on SQLite.
    env["VIDGATE_DATABASE_URL"] = f"sqlite+aiosqlite:///{data_dir / 'vidgate.db'}"
    if request.param == "postgresql":
        database_url = request.getfixturevalue("private_postgres_url")
        env["VIDGATE_DATABASE_URL"] = database_url
    server = GatewayProcess(data_dir, env=env)
    if request.param == "postgresql":  # a shared database prints no first key
        server.api_key = create_key_with_cli(server.env, title="reseller", credits=1000)
    server.start()
    try:
        yield Served(server=server, database_url=database_url)
    finally:
        server.stop()


@dataclass(frozen=True)
class Ledger:
    """The ledger as the database holds it, beside each entry's task."""

    entries: list[dict[str, Any]]  # newest first
    tasks: dict[str, dict[str, Any]]


def read_ledger(database_url: str, account_id: int) -> Ledger:
    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            entries = conn.execute(
                select(
                    LedgerEntry.id,
                    LedgerEntry.kind,
                    LedgerEntry.amount,
                    LedgerEntry.balance_after,
                    LedgerEntry.task_id,
                    LedgerEntry.note,
                    LedgerEntry.created_at,
                )
                .where(LedgerEntry.account_id == account_id)
                .order_by(LedgerEntry.id.desc())
            ).all()
            found = conn.execute(
                select(
                    VideoTask.id,
                    VideoTask.model,
                    VideoTask.api_key_id,
                    VideoTask.status,
                    VideoTask.params,
                    VideoTask.created_at,
                ).where(VideoTask.account_id == account_id)
            ).all()
    finally:
        engine.dispose()
    return Ledger(
        entries=[dict(row._mapping) for row in entries],
        tasks={row.id: dict(row._mapping) for row in found},
    )


def group_value(task: dict[str, Any], at: datetime, group_by: str) -> str:
    if group_by == "model":
        return str(task["model"])
    if group_by == "key":
        return str(task["api_key_id"])
    return at.astimezone(UTC).date().isoformat()


def expected_groups(ledger: Ledger, group_by: str) -> dict[str, dict[str, Any]]:
    """The report computed by hand: credits from the ledger's own entries (by the day they were
    written), tasks and seconds from the task rows."""
    groups: dict[str, dict[str, Any]] = defaultdict(
        lambda: {"tasks": Counter(), "debited": 0, "refunded": 0, "seconds": 0}
    )
    for entry in ledger.entries:
        if entry["task_id"] is None:
            continue
        group = groups[group_value(ledger.tasks[entry["task_id"]], entry["created_at"], group_by)]
        if entry["kind"] == "debit":
            group["debited"] -= entry["amount"]
        elif entry["kind"] == "refund":
            group["refunded"] += entry["amount"]
    for task in ledger.tasks.values():
        group = groups[group_value(task, task["created_at"], group_by)]
        group["tasks"][task["status"]] += 1
        if task["status"] == "completed":
            group["seconds"] += task["params"]["seconds"]
    return {
        name: {
            "tasks": {
                "total": sum(g["tasks"].values()),
                **{status.value: g["tasks"][status.value] for status in TaskStatus},
            },
            "credits_debited": g["debited"],
            "credits_refunded": g["refunded"],
            "net_credits": g["debited"] - g["refunded"],
            "seconds_of_video": g["seconds"],
        }
        for name, g in groups.items()
    }


def by_group(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {group.pop("group"): group for group in (dict(g) for g in report["groups"])}


def test_usage_figures_are_the_ledgers_sums_over_keys_models_and_outcomes(
    served: Served,
) -> None:
    key_a = served.server.api_key
    assert key_a is not None
    created = httpx.post(
        f"{served.server.base_url}/api/v1/keys",
        json={"title": "second"},
        headers=served.server.headers,
        timeout=10,
    )
    assert created.status_code == 200, created.text
    key_b, key_b_id = created.json()["data"]["api_key"], created.json()["data"]["id"]
    key_a_id = next(k["id"] for k in served.data("/api/v1/keys") if k["id"] != key_b_id)
    stranger = create_key_with_cli(served.server.env, title="stranger", credits=50)

    # Cancelled ones first, so that no slow render holds a worker slot for long.
    cancelled = [served.generate(key_a, "clip-pro", SLOW), served.generate(key_b, "clip", SLOW)]
    for task_id in cancelled:
        served.cancel(task_id)
    running = served.generate(key_b, "clip-pro", SLOW)
    completed = [
        served.generate(key_a, "clip", "a heron"),
        served.generate(key_a, "clip", "a crane"),
        served.generate(key_a, "clip-pro", "a stork"),
        served.generate(key_b, "clip-pro", "an ibis"),
    ]
    failed = [served.generate(key_a, "clip", "[fail]"), served.generate(key_b, "clip", "[fail]")]
    stranger_task = served.generate(stranger, "clip", "[fail] not ours")
    for task_id in completed:
        assert wait_for_task(served.server, task_id, timeout_s=120)["status"] == "completed"
    for task_id in failed:
        assert wait_for_task(served.server, task_id)["error_code"] == "generation_failed"
    wait_for_task(served.server, running, until=("processing",))

    report = served.data("/api/v1/account/usage", group_by="model")
    account_id = report["account_id"]
    ledger = read_ledger(served.database_url, account_id)
    assert {e["task_id"] for e in ledger.entries if e["task_id"]} == set(ledger.tasks)
    assert stranger_task not in ledger.tasks
    # What the user did: 9 tasks, 4 completed (clip: 2 credits and 1 s, clip-pro: 5 and 2 s),
    # 2 failed and 2 cancelled (refunded in full), 1 still running.
    assert report["totals"] == {
        "tasks": {
            "total": 9,
            "pending": 0,
            "processing": 1,
            "completed": 4,
            "failed": 2,
            "cancelled": 2,
        },
        "credits_debited": 5 * 2 + 4 * 5,
        "credits_refunded": 2 + 2 + 2 + 5,
        "net_credits": 30 - 11,
        "seconds_of_video": 2 * 1 + 2 * 2,
    }
    # Every group is the ledger's own sums for it, and the tasks' own counts.
    for group_by in ("model", "key", "day"):
        report = served.data("/api/v1/account/usage", group_by=group_by)
        assert report["group_by"] == group_by
        assert by_group(report) == expected_groups(ledger, group_by), group_by
        assert report["totals"]["credits_debited"] == -sum(
            e["amount"] for e in ledger.entries if e["kind"] == "debit"
        )
    by_key = by_group(served.data("/api/v1/account/usage", group_by="key"))
    assert set(by_key) == {str(key_a_id), str(key_b_id)}
    assert by_key[str(key_a_id)]["tasks"]["total"] == 5
    # The tasks' own credits_used and credits_refunded add up to the same.
    views = [served.data(f"/api/v1/videos/{task_id}") for task_id in ledger.tasks]
    assert sum(v["credits_used"] for v in views) == 30
    assert sum(v["credits_refunded"] for v in views) == 11
    # One key's figures.
    only_b = served.data("/api/v1/account/usage", group_by="model", key_id=key_b_id)
    assert only_b["key_id"] == key_b_id
    assert by_group(only_b)["clip"]["tasks"] == {
        "total": 2,
        "pending": 0,
        "processing": 0,
        "completed": 0,
        "failed": 1,
        "cancelled": 1,
    }
    # Its two clip-pro tasks (one done, one running); both clips were refunded.
    assert only_b["totals"]["net_credits"] == 5 + 5

    # The ledger, newest first, page by page.
    pages, after = [], None
    while True:
        page = served.data("/api/v1/account/ledger", limit=4, **({"after": after} if after else {}))
        assert page["limit"] == 4
        assert len(page["items"]) <= 4
        pages += page["items"]
        if not page["has_more"]:
            break
        after = page["last_id"]
        assert after == page["items"][-1]["id"]
    assert [e["id"] for e in pages] == [e["id"] for e in ledger.entries]
    assert len(pages) == 1 + 9 + 4  # the grant, 9 debits, 4 refunds
    for shown, stored in zip(pages, ledger.entries, strict=True):
        assert {k: shown[k] for k in ("kind", "amount", "balance_after", "task_id", "note")} == {
            k: stored[k] for k in ("kind", "amount", "balance_after", "task_id", "note")
        }
        assert shown["created_at"].endswith("Z")
    assert pages[-1]["kind"] == "grant"
    assert pages[-1]["task_id"] is None
    assert pages[0]["balance_after"] == served.data("/api/v1/account/balances")["credits"]
    refunds = served.data("/api/v1/account/ledger", kind="refund", limit=100)["items"]
    assert {e["task_id"] for e in refunds} == set(cancelled + failed)
    one_task = served.data("/api/v1/account/ledger", task_id=failed[0])["items"]
    assert [(e["kind"], e["amount"]) for e in one_task] == [("refund", 2), ("debit", -2)]

    # `vidgate usage --csv`: the same figures, for spreadsheets.
    result = served.cli("usage", "--account", str(account_id), "--group-by", "model", "--csv")
    assert result.returncode == 0, result.stderr
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    report = served.data("/api/v1/account/usage", group_by="model")
    assert [row["model"] for row in rows] == [g["group"] for g in report["groups"]]
    for row, group in zip(rows, report["groups"], strict=True):
        assert int(row["tasks"]) == group["tasks"]["total"]
        for status in TaskStatus:
            assert int(row[status.value]) == group["tasks"][status.value]
        for figure in ("credits_debited", "credits_refunded", "net_credits", "seconds_of_video"):
            assert int(row[figure]) == group[figure]
    table = served.cli("usage", "--account", str(account_id), "--group-by", "key")
    assert table.returncode == 0, table.stderr
    assert f"Usage of account {account_id}" in table.stdout
    assert "total" in table.stdout

    # An admin key reads any account's figures and ledger; nobody else does.
    stranger_key_id = next(
        k["id"] for k in served.data("/api/v1/keys", stranger) if k["title"] == "stranger"
    )
    for path in ("/api/v1/account/usage", "/api/v1/account/ledger"):
        hidden = served.get(path, stranger, account_id=account_id)
        assert hidden.status_code == 404, hidden.text
        assert hidden.json()["error"] == {
            "code": "not_found",
            "message": f"account {account_id} not found",
        }
    own = served.data("/api/v1/account/usage", account_id=account_id, group_by="key")
    assert by_group(own) == by_group(served.data("/api/v1/account/usage", group_by="key"))
    made = served.cli("keys", "create", "--title", "operator", "--admin")
    assert made.returncode == 0, made.stderr
    operator = made.stdout.strip().splitlines()[-1]
    as_admin = served.data("/api/v1/account/usage", operator, account_id=account_id, group_by="key")
    assert by_group(as_admin) == by_group(served.data("/api/v1/account/usage", group_by="key"))
    assert (
        served.data("/api/v1/account/ledger", operator, account_id=account_id)["items"]
        == (served.data("/api/v1/account/ledger")["items"])
    )
    assert served.data("/api/v1/account/usage", operator)["totals"]["tasks"]["total"] == 0
    assert served.get("/api/v1/account/usage", operator, account_id=10**9).status_code == 404
    foreign_key = served.get("/api/v1/account/usage", key_id=stranger_key_id)
    assert foreign_key.status_code == 404
    assert foreign_key.json()["error"]["message"] == f"API key {stranger_key_id} not found"
    # The sample provider's [slow] wait outlasts a graceful stop; nothing is left to check.
    served.server.kill()


BAD_PARAMETERS = [
    ("usage", {"from": "2026-03-02", "to": "2026-03-01"}, "from: 2026-03-02 is not before to"),
    ("usage", {"from": "2020-01-01", "to": "2026-01-01"}, "366 days at most"),
    ("usage", {"from": "last week"}, "from: must be an ISO 8601 date"),
    ("usage", {"to": "2026-02-30"}, "to: '2026-02-30' is not a valid date"),
    ("usage", {"group_by": "week"}, "group_by: Input should be 'day', 'model' or 'key'"),
    ("usage", {"key_id": "0"}, "key_id: Input should be greater than or equal to 1"),
    ("ledger", {"limit": "0"}, "limit: Input should be greater than or equal to 1"),
    ("ledger", {"kind": "bonus"}, "kind: Input should be"),
    ("ledger", {"after": "x"}, "after: Input should be a valid integer"),
]


def test_bad_parameters_are_400_in_the_envelope(live_gateway: GatewayProcess) -> None:
    for path, params, message in BAD_PARAMETERS:
        response = httpx.get(
            f"{live_gateway.base_url}/api/v1/account/{path}",
            params=params,
            headers=live_gateway.headers,
            timeout=10,
        )
        assert response.status_code == 400, (params, response.text)
        body = response.json()
        assert body["success"] is False
        assert body["request_id"].startswith("req_")
        assert body["error"]["code"] == "invalid_request"
        assert message in body["error"]["message"], params


def test_the_cli_refuses_a_bad_window_and_an_unknown_account(tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "VIDGATE_DATA_DIR": str(tmp_path)}

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "vidgate", "usage", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )

    bad = run("--from", "2026-03-12", "--to", "2026-03-01")
    assert bad.returncode == 1
    assert "from: 2026-03-12 is not before to (2026-03-01)" in bad.stderr
    unknown = run("--account", "42")
    assert unknown.returncode == 1
    assert "account 42 not found" in unknown.stderr
    empty = run("--csv")
    assert empty.returncode == 0, empty.stderr
    assert empty.stdout.splitlines() == [
        "day,tasks,pending,processing,completed,failed,cancelled,credits_debited,"
        "credits_refunded,net_credits,seconds_of_video"
    ]
