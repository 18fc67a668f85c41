"""`vidgate accounts` and the audit rows the admin CLI leaves, run as the real command."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

from test_cli_admin import assert_one_error_line, vidgate
from vidgate.accounts import audit
from vidgate.db.engine import open_database


def audit_rows(data_dir: Path) -> list[dict[str, Any]]:
    """The audit log of the data dir's database, oldest first."""

    async def read() -> list[dict[str, Any]]:
        db = open_database(f"sqlite+aiosqlite:///{data_dir / 'vidgate.db'}")
        try:
            async with db.read() as session:
                _total, entries = await audit.list_entries(session, limit=100)
        finally:
            await db.dispose()
        return [
            {
                "actor": (e.actor, e.actor_key_id),
                "action": e.action,
                "account": e.account_id,
                "before": e.before,
                "after": e.after,
                "reason": e.reason,
            }
            for e in reversed(entries)
        ]

    return asyncio.run(read())


def row_of(listing: str, account_id: str) -> list[str]:
    """The cells of an account's row in `vidgate accounts list`."""
    for line in listing.splitlines():
        cells = [cell.strip() for cell in re.split(r"[│|]", line) if cell.strip()]
        if cells and cells[0] == account_id:
            return cells
    raise AssertionError(f"account {account_id} not listed:\n{listing}")


def test_create_key_approve_suspend_and_grant_are_audited(tmp_path: Path) -> None:
    created = vidgate(
        tmp_path, "accounts", "create", "--title", "reseller", "--credits", "40", "--pending"
    )
    assert created.returncode == 0, created.stderr
    account_id = created.stdout.strip().splitlines()[-1]
    assert created.stdout.strip() == account_id  # the id alone, ready for $(...)
    assert account_id.isdigit()
    other = vidgate(tmp_path, "accounts", "create", "--title", "walk-in")
    other_id = other.stdout.strip()
    key = vidgate(tmp_path, "keys", "create", "--title", "shop", "--account", account_id)
    assert key.returncode == 0, key.stderr

    listing = vidgate(tmp_path, "accounts", "list").stdout
    assert row_of(listing, account_id)[:5] == [account_id, "reseller", "pending", "40", "1"]
    assert row_of(listing, other_id)[:5] == [other_id, "walk-in", "active", "0", "0"]

    approved = vidgate(tmp_path, "accounts", "approve", account_id)
    assert approved.returncode == 0, approved.stderr
    assert f"account {account_id}: active" in approved.stdout
    suspended = vidgate(tmp_path, "accounts", "suspend", account_id, "--reason", "chargeback")
    assert f"account {account_id}: suspended" in suspended.stdout
    granted = vidgate(
        tmp_path, "credits", "grant", "--account", account_id, "5", "--reason", "goodwill"
    )
    assert "balance 45" in granted.stdout
    assert row_of(vidgate(tmp_path, "accounts", "list").stdout, account_id)[2:4] == [
        "suspended",
        "45",
    ]

    rows = [row for row in audit_rows(tmp_path) if row["account"] == int(account_id)]
    state = {"title": "reseller", "credits": 40}
    assert rows == [
        {
            "actor": ("cli", None),
            "action": "account.create",
            "account": int(account_id),
            "before": None,
            "after": {**state, "status": "pending"},
            "reason": None,
        },
        {
            "actor": ("cli", None),
            "action": "key.create",
            "account": int(account_id),
            "before": None,
            "after": {
                "title": "shop",
                "status": "created",
                "role": "user",
                "expires_at": None,
                "allowed_models": None,
                "budget_credits": None,
                "budget_period": None,
            },
            "reason": None,
        },
        {
            "actor": ("cli", None),
            "action": "account.approve",
            "account": int(account_id),
            "before": {**state, "status": "pending"},
            "after": {**state, "status": "active"},
            "reason": None,
        },
        {
            "actor": ("cli", None),
            "action": "account.suspend",
            "account": int(account_id),
            "before": {**state, "status": "active"},
            "after": {**state, "status": "suspended"},
            "reason": "chargeback",
        },
        {
            "actor": ("cli", None),
            "action": "credits.grant",
            "account": int(account_id),
            "before": {"credits": 40},
            "after": {"credits": 45},
            "reason": "goodwill",
        },
    ]


def test_new_accounts_pending_setting_and_its_override(tmp_path: Path) -> None:
    env = {"VIDGATE_NEW_ACCOUNTS_PENDING": "true"}
    pending = vidgate(tmp_path, "accounts", "create", "--title", "a", env=env).stdout.strip()
    active = vidgate(tmp_path, "accounts", "create", "--title", "b", "--active", env=env)
    listing = vidgate(tmp_path, "accounts", "list").stdout
    assert row_of(listing, pending)[2] == "pending"
    assert row_of(listing, active.stdout.strip())[2] == "active"


def test_bad_account_commands_fail_in_one_line(tmp_path: Path) -> None:
    for args, message in (
        (("accounts", "approve", "42"), "account 42 not found"),
        (("accounts", "suspend", "42"), "account 42 not found"),
        (("accounts", "create", "--title", "  "), "title: must not be empty"),
    ):
        assert_one_error_line(vidgate(tmp_path, *args), message)
    assert audit_rows(tmp_path) == []
