"""The admin CLI, run as the real `vidgate` command against a data dir."""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from support import free_port, fresh_postgres_database

VIDGATE = [sys.executable, "-m", "vidgate"]


def vidgate(
    data_dir: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*VIDGATE, *args, "--data-dir", str(data_dir)],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", "COLUMNS": "200", **(env or {})},
    )


def assert_one_error_line(result: subprocess.CompletedProcess[str], message: str) -> None:
    """What a user sees of a failed command: a non-zero status and one line that says why."""
    assert result.returncode != 0, result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: "), result.stderr
    assert message in lines[0], result.stderr


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
        (("keys", "limits", "1", "--max-concurrent-jobs", "0"), "max concurrent jobs"),
        (("keys", "create", "--title", "x", "--credits", "-5"), "'--credits'"),
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


def test_unreachable_database_is_one_line_naming_it(tmp_path: Path) -> None:
    url = f"postgresql+psycopg://vidgate:hunter2@127.0.0.1:{free_port()}/vidgate"
    for command in (
        ["keys", "list"],
        ["keys", "create", "--title", "x"],
        ["credits", "show", "--account", "1"],
        ["migrate"],
        ["serve", "--port", str(free_port())],
        ["worker"],
    ):
        result = vidgate(tmp_path, *command, env={"VIDGATE_DATABASE_URL": url})
        assert result.returncode == 1, (command, result.stderr)
        assert_one_error_line(result, "cannot use the database postgresql+psycopg://vidgate:***@")
        assert "Connection refused" in result.stderr
        assert "hunter2" not in result.stderr


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"VIDGATE_DATABASE_URL": "mysql+nodriver://x/y"}, "invalid database URL mysql+nodriver"),
        ({"VIDGATE_DATABASE_URL": "not a url"}, "invalid database URL"),
        ({"VIDGATE_RATE_LIMIT_PER_SECOND": "fast"}, "VIDGATE_RATE_LIMIT_PER_SECOND"),
    ],
)
def test_bad_configuration_is_one_line(tmp_path: Path, env: dict[str, str], message: str) -> None:
    assert_one_error_line(vidgate(tmp_path, "keys", "list", env=env), message)


def test_unusable_data_dir_is_one_line(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    result = vidgate(blocker / "data", "keys", "list")
    assert_one_error_line(result, f"cannot create the data dir {blocker / 'data'}")


def test_admin_commands_refuse_an_unmigrated_postgresql_database(tmp_path: Path) -> None:
    with fresh_postgres_database() as url:  # created, never migrated
        env = {"VIDGATE_DATABASE_URL": url}
        refused = vidgate(tmp_path, "keys", "create", "--title", "x", env=env)
        assert_one_error_line(refused, "run `vidgate migrate` first")
        assert vidgate(tmp_path, "migrate", env=env).returncode == 0
        created = vidgate(tmp_path, "keys", "create", "--title", "x", env=env)
        assert created.returncode == 0, created.stderr


def test_serve_on_a_port_in_use_says_so_and_prints_no_key(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = vidgate(tmp_path, "serve", "--port", str(port))
    assert result.returncode == 1
    assert_one_error_line(result, f"cannot listen on 127.0.0.1:{port}: Address already in use")
    assert "sk-" not in result.stdout  # the first key is made by the first serve that runs


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ("--models", "sample,sora9"),
            "--models: unknown sora9 (available: sample, sora-2, sora-2-pro, sora2",
        ),
        (("--queues", "default", "--queues", "gpu"), "--queues: unknown gpu (available: default"),
    ],
)
def test_worker_refuses_unknown_queues_and_models(
    tmp_path: Path, args: tuple[str, ...], message: str
) -> None:
    assert_one_error_line(vidgate(tmp_path, "worker", *args), message)


def test_worker_pool_options(tmp_path: Path) -> None:
    """Repeated and comma-separated values add up; the worker says which tasks it claims."""
    log = tmp_path / "worker.log"
    with log.open("w") as out:
        worker = subprocess.Popen(
            [*VIDGATE, "worker", "--data-dir", str(tmp_path), "--queues", "default",
             "--models", "sample,sora2", "--models", "sora2-pro"],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={"PATH": "/usr/bin:/bin"},
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while "worker claims" not in log.read_text() and time.monotonic() < deadline:
            assert worker.poll() is None, log.read_text()
            time.sleep(0.1)
    finally:
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=30) == 0, log.read_text()
    text = log.read_text()
    assert "worker claims tasks of queues: default; models: sample, sora2, sora2-pro" in text
    assert "Traceback" not in text


@pytest.mark.parametrize(
    ("command", "url", "message"),
    [
        ("serve", "s3://key:secret@bucket/videos", "put no credentials in the URL"),
        ("worker", "s3://key:secret@bucket/videos", "put no credentials in the URL"),
        ("serve", "s3://", "s3:// needs a bucket name"),
        ("worker", "ftp://secret@host/videos", "unsupported storage ftp://"),
    ],
)
def test_a_bad_storage_url_stops_serve_and_worker_in_one_line(
    tmp_path: Path, command: str, url: str, message: str
) -> None:
    result = vidgate(tmp_path, command, env={"VIDGATE_STORAGE_URL": url})
    assert result.returncode == 2, result.stderr
    assert_one_error_line(result, f"VIDGATE_STORAGE_URL: {message}")
    assert "secret" not in result.stderr
    assert "sk-" not in result.stdout  # stopped before a first key was made
