"""`vidgate providers check`, run as the real command, against a second gateway as the upstream
(vidgate speaks API Mall's protocol, so it is a real apimall upstream); and `serve`/`worker`
refusing a broken providers file in one line."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from support import GatewayProcess, free_port

VIDGATE = [sys.executable, "-m", "vidgate"]
# Distinctive, so finding it in the output is unambiguous.
WRONG_KEY = "sk-" + "0badc0de" * 6


def vidgate(
    data_dir: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*VIDGATE, *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={
            "PATH": "/usr/bin:/bin",
            "COLUMNS": "250",  # wide enough that no table cell is folded
            "VIDGATE_DATA_DIR": str(data_dir),
            **(env or {}),
        },
    )


def providers_file(directory: Path, base_url: str, *, extra: str = "") -> Path:
    path = directory / "providers.toml"
    path.write_text(
        f"""
[providers.apimall]
kind = "apimall"
base_url = "{base_url}"
api_key_env = "UPSTREAM_KEY"
request_timeout_s = 10
{extra}"""
    )
    return path


def row(output: str, name: str) -> list[str]:
    """The cells of the table row whose first cell is `name`."""
    for line in output.splitlines():
        cells = [cell.strip() for cell in line.replace("┃", "│").strip().strip("│").split("│")]
        if cells and cells[0] == name:
            return cells
    raise AssertionError(f"no row {name!r} in:\n{output}")


HEADINGS = ["name", "kind", "base URL", "reachable", "auth", "balance", "detail"]


@pytest.fixture(scope="module")
def upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    server = GatewayProcess(tmp_path_factory.mktemp("upstream")).start()
    yield server
    server.stop()


def test_without_a_file_only_the_built_in(tmp_path: Path) -> None:
    result = vidgate(tmp_path, "providers", "check")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no providers file (VIDGATE_PROVIDERS_PATH is not set)" in result.stdout
    assert row(result.stdout, "name") == HEADINGS
    sample = row(result.stdout, "sample")
    assert sample[1:6] == ["sample", "built-in", "yes", "-", "-"]
    assert "renders locally" in sample[6]
    assert "apimall" not in result.stdout


@pytest.mark.e2e
def test_a_real_upstream_reachable_authenticated_with_its_balance(
    tmp_path: Path, upstream: GatewayProcess
) -> None:
    assert upstream.api_key is not None
    balance = httpx.get(
        f"{upstream.base_url}/api/v1/account/balances", headers=upstream.headers, timeout=5
    ).json()["data"]["credits"]
    path = providers_file(tmp_path, upstream.base_url + "/")
    env = {"VIDGATE_PROVIDERS_PATH": str(path), "UPSTREAM_KEY": upstream.api_key}
    result = vidgate(tmp_path / "data", "providers", "check", env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"providers file {path}: 1 upstream(s)" in result.stdout
    assert row(result.stdout, "apimall")[:6] == [
        "apimall", "apimall", upstream.base_url, "yes", "yes", str(balance),
    ]  # fmt: skip
    assert row(result.stdout, "sample")[3] == "yes"
    assert "every provider is reachable and takes its key" in result.stdout
    assert upstream.api_key not in result.stdout + result.stderr


@pytest.mark.e2e
def test_a_wrong_key_fails_the_check_without_being_shown(
    tmp_path: Path, upstream: GatewayProcess
) -> None:
    path = providers_file(tmp_path, upstream.base_url)
    env = {"VIDGATE_PROVIDERS_PATH": str(path), "UPSTREAM_KEY": WRONG_KEY}
    result = vidgate(tmp_path / "data", "providers", "check", env=env)
    assert result.returncode == 1, result.stdout + result.stderr
    assert row(result.stdout, "apimall")[3:6] == ["yes", "FAILED", "-"]
    assert "failed: apimall" in result.stdout
    assert WRONG_KEY not in result.stdout + result.stderr
    assert WRONG_KEY[3:15] not in result.stdout + result.stderr  # nor a preview of it


def test_a_closed_port_is_unreachable(tmp_path: Path) -> None:
    closed = f"http://127.0.0.1:{free_port()}"
    path = providers_file(tmp_path, closed, extra="connect_timeout_s = 2\n")
    env = {"VIDGATE_PROVIDERS_PATH": str(path), "UPSTREAM_KEY": WRONG_KEY}
    result = vidgate(tmp_path / "data", "providers", "check", env=env)
    assert result.returncode == 1, result.stdout + result.stderr
    cells = row(result.stdout, "apimall")
    assert cells[2:6] == [closed, "NO", "-", "-"]
    assert "cannot connect" in cells[6]
    assert "failed: apimall" in result.stdout
    assert WRONG_KEY not in result.stdout + result.stderr


def test_a_provider_no_channel_names_is_said_in_its_row(tmp_path: Path) -> None:
    closed = f"http://127.0.0.1:{free_port()}"
    path = providers_file(
        tmp_path,
        closed,
        extra=f'[providers.spare]\nkind = "apimall"\nbase_url = "{closed}"\n'
        'api_key_env = "UPSTREAM_KEY"\n',
    )
    env = {"VIDGATE_PROVIDERS_PATH": str(path), "UPSTREAM_KEY": WRONG_KEY}
    result = vidgate(tmp_path / "data", "providers", "check", env=env)
    assert "no catalogue channel names it" in row(result.stdout, "spare")[6]
    assert "no catalogue channel names it" not in row(result.stdout, "apimall")[6]


# -- a broken file: one line, exit 2, before anything starts ---------------------------------


@pytest.mark.parametrize("command", [("providers", "check"), ("serve",), ("worker",)])
def test_a_broken_file_stops_the_command_in_one_line(
    tmp_path: Path, command: tuple[str, ...]
) -> None:
    path = providers_file(tmp_path, "http://127.0.0.1:9", extra="max_concurrent = 0\n")
    env = {"VIDGATE_PROVIDERS_PATH": str(path), "UPSTREAM_KEY": WRONG_KEY}
    result = vidgate(tmp_path / "data", *command, env=env)
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.strip() == (
        f"error: providers {path}: providers.apimall.max_concurrent: must be at least 1 (got 0)"
    )
    assert WRONG_KEY not in result.stdout + result.stderr


@pytest.mark.parametrize("command", [("providers", "check"), ("serve",)])
def test_an_unset_key_variable_stops_the_command_in_one_line(
    tmp_path: Path, command: tuple[str, ...]
) -> None:
    path = providers_file(tmp_path, "http://127.0.0.1:9")
    result = vidgate(tmp_path / "data", *command, env={"VIDGATE_PROVIDERS_PATH": str(path)})
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.strip() == (
        f"error: providers {path}: providers.apimall.api_key_env: "
        "environment variable UPSTREAM_KEY is not set"
    )
