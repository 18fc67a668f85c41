"""The admin CLI, run as the real `vidgate` command against a data dir."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from support import fresh_postgres_database

VIDGATE = [sys.executable, "-m", "vidgate"]


def vidgate(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*VIDGATE, *args, "--data-dir", str(data_dir)],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", "COLUMNS": "200"},
    )


def test_keys_and_credits_commands(tmp_path: Path) -> None:
    created = vidgate(tmp_path, "keys", "create", "--title", "team-a", "--credits", "50")
    assert created.returncode == 0, created.stderr
    plaintext = created.stdout.strip().splitlines()[-1]
    assert re.fullmatch(r"sk-[0-9a-f]{48}", plaintext)

    second = vidgate(tmp_path, "keys", "create", "--title", "team-a-2", "--account", "1")
    assert second.returncode == 0, second.stderr

    listed = vidgate(tmp_path, "keys", "list")
    assert listed.returncode == 0, listed.stderr
    assert "team-a" in listed.stdout
    assert f"sk-{plaintext[3:7]}...{plaintext[-4:]}" in listed.stdout
    assert plaintext not in listed.stdout

    granted = vidgate(tmp_path, "credits", "grant", "--account", "1", "25")
    assert granted.returncode == 0, granted.stderr
    assert "balance 75" in granted.stdout
    shown = vidgate(tmp_path, "credits", "show", "--account", "1")
    assert "balance 75 (ledger total 75)" in shown.stdout

    limited = vidgate(
        tmp_path, "keys", "limits", "2", "--rate-limit", "2.5", "--max-concurrent-jobs", "3"
    )
    assert limited.returncode == 0, limited.stderr
    assert "key 2: rate limit 2.5 requests/s, concurrent jobs 3" in limited.stdout
    reset = vidgate(tmp_path, "keys", "limits", "2")
    assert "key 2: rate limit default (20/s), concurrent jobs default (20)" in reset.stdout

    revoked = vidgate(tmp_path, "keys", "revoke", "1")
    assert revoked.returncode == 0, revoked.stderr
    assert "revoked" in revoked.stdout
    assert re.search(r"\b1\b.*revoked", vidgate(tmp_path, "keys", "list").stdout)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("credits", "show", "--account", "42"), "account 42 not found"),
        (("credits", "grant", "--account", "42", "5"), "account 42 not found"),
        (("keys", "revoke", "42"), "API key 42 not found"),
        (("keys", "create", "--title", "x", "--account", "42"), "account 42 not found"),
        (("keys", "create", "--title", "  "), "title: must not be empty"),
        (("credits", "grant", "--account", "1", "0"), "amount"),
        (("keys", "create"), "--title"),
        (("keys", "revoke", "abc"), "key_id"),
        (("keys", "limits", "1", "--rate-limit", "0"), "rate limit: must be a positive"),
        (("keys", "limits", "42"), "API key 42 not found"),
    ],
)
def test_bad_arguments_fail_clearly(tmp_path: Path, args: tuple[str, ...], message: str) -> None:
    result = vidgate(tmp_path, *args)
    assert result.returncode != 0
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_serve_refuses_an_unmigrated_postgresql_database(tmp_path: Path) -> None:
    with fresh_postgres_database() as url:  # created, never migrated
        env = {"PATH": "/usr/bin:/bin", "VIDGATE_DATABASE_URL": url}
        for command in (["serve", "--port", "1"], ["worker"]):
            result = subprocess.run(
                [*VIDGATE, *command, "--data-dir", str(tmp_path)],
                capture_output=True,
                text=True,
                timeout=60,
                env=env,
            )
            assert result.returncode == 1, result.stderr
            assert "run `vidgate migrate` first" in result.stderr
