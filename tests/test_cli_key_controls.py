"""`vidgate keys create/update/list` with a key's role and controls, as the real command, each
change leaving one audit row with the actor `cli`."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

from sqlalchemy import select

from vidgate.db.engine import open_database
from vidgate.db.models import ApiKey, AuditEntry


def vidgate(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "vidgate", *args, "--data-dir", str(data_dir)],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", "COLUMNS": "250"},
    )


def stored(data_dir: Path) -> tuple[list[ApiKey], list[AuditEntry]]:
    async def read() -> tuple[list[ApiKey], list[AuditEntry]]:
        db = open_database(f"sqlite+aiosqlite:///{data_dir / 'vidgate.db'}")
        try:
            async with db.read() as session:
                found = list(await session.scalars(select(ApiKey).order_by(ApiKey.id)))
                entries = list(await session.scalars(select(AuditEntry).order_by(AuditEntry.id)))
                return found, entries
        finally:
            await db.dispose()

    return asyncio.run(read())


def test_keys_create_update_and_list_with_controls(tmp_path: Path) -> None:
    created = vidgate(
        tmp_path, "keys", "create", "--title", "shop", "--credits", "9",
        "--budget", "3", "--budget-period", "day", "--models", "sample,sora2",
        "--expires-in", "12h",
    )  # fmt: skip
    assert created.returncode == 0, created.stderr
    assert created.stdout.strip().splitlines()[-1].startswith("sk-")
    admin = vidgate(tmp_path, "keys", "create", "--title", "ops", "--account", "1", "--admin")
    assert admin.returncode == 0, admin.stderr

    (shop, ops), entries = stored(tmp_path)
    assert (shop.budget_credits, shop.budget_period, shop.allowed_models) == (
        3,
        "day",
        ["sample", "sora2"],
    )
    assert shop.expires_at is not None
    assert shop.role == "user"
    assert ops.role == "admin"
    assert ops.budget_credits is None
    assert ops.allowed_models is None
    assert [(e.actor, e.action, e.target_id) for e in entries] == [
        ("cli", "key.create", "1"),
        ("cli", "key.create", "2"),
    ]

    listed = vidgate(tmp_path, "keys", "list")
    assert listed.returncode == 0, listed.stderr
    rows = [line for line in listed.stdout.splitlines() if " shop " in line or " ops " in line]
    assert "3/day" in rows[0]
    assert "sample,sora2" in rows[0]
    assert " user " in rows[0]
    assert " admin " in rows[1]
    assert " all " in rows[1]
    assert " never " in rows[1]

    updated = vidgate(
        tmp_path, "keys", "update", "1", "--budget", "5", "--all-models", "--no-expiry"
    )
    assert updated.returncode == 0, updated.stderr
    assert "budget 5/day" in updated.stdout  # a new amount keeps the period
    (shop, _ops), entries = stored(tmp_path)
    assert (shop.budget_credits, shop.allowed_models, shop.expires_at) == (5, None, None)
    assert entries[-1].action == "key.update"
    assert entries[-1].before is not None
    assert entries[-1].before["budget_credits"] == 3
    assert entries[-1].after is not None
    assert entries[-1].after["budget_credits"] == 5


def test_bad_key_controls_are_one_error_line_and_change_nothing(tmp_path: Path) -> None:
    assert vidgate(tmp_path, "keys", "create", "--title", "shop").returncode == 0
    for args, message in [
        (("--models", "nope"), "models: unknown model nope"),
        (("--expires-in", "3x"), "--expires-in: give a positive duration"),
        (("--budget-period", "day"), "budget_period: give a budget too"),
    ]:
        result = vidgate(tmp_path, "keys", "create", "--title", "x", "--account", "1", *args)
        assert result.returncode == 1, result.stdout
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1, result.stderr
        assert lines[0].startswith(f"error: {message}"), result.stderr
    both = vidgate(tmp_path, "keys", "update", "1", "--budget", "2", "--no-budget")
    assert both.returncode == 1
    assert "--budget: give it or clear it, not both" in both.stderr
    found, entries = stored(tmp_path)
    assert len(found) == 1
    assert len(entries) == 1
