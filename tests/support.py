"""Helpers shared by the tests (importable: pytest puts tests/ on sys.path)."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from psycopg import sql

from vidgate.billing import service as billing
from vidgate.db.engine import Database
from vidgate.keys import service as keys
from vidgate.keys.service import Principal
from vidgate.providers.catalogue import Catalogue
from vidgate.tasks import service
from vidgate.tasks.commands import CreateTask
from vidgate.tasks.service import CreateOutcome


@dataclass(frozen=True)
class Caller:
    account_id: int
    key_id: int
    api_key: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"}


async def make_caller(db: Database, *, credits: int = 100, title: str = "test") -> Caller:
    async with db.write() as session:
        account = await billing.create_account(session, name=title, credits=credits)
        key, plaintext = await keys.create_key(session, account_id=account.id, title=title)
    return Caller(account_id=account.id, key_id=key.id, api_key=plaintext)


async def create_task_as(
    caller: Caller,
    db: Database,
    *,
    catalogue: Catalogue,
    model: str,
    prompt: str,
    idempotency_key: str | None = None,
) -> CreateOutcome:
    """A task created through the task service itself (no HTTP, every model routable), for
    tests of what happens to it afterwards."""
    return await service.create_task(
        db,
        principal=Principal(
            key_id=caller.key_id,
            account_id=caller.account_id,
            rate_limit_per_second=None,
            max_concurrent_jobs=None,
        ),
        command=CreateTask(surface="apimall", model=model, prompt=prompt),
        request_id="req_test",
        idempotency_key=idempotency_key,
        catalogue=catalogue,
        routing=AcceptAll(),
        default_max_concurrent_jobs=1000,
    )


class AcceptAll:
    """Routing for service-level tests: every model can be queued (tasks/service.py Routing)."""

    def check_routable(self, model: object) -> None:
        return None


# -- real gateway processes ---------------------------------------------------------------

_KEY_PATTERN = re.compile(r"\bsk-[0-9a-f]{48}\b")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class GatewayProcess:
    """`vidgate serve` as a real process on loopback, with its own data dir.

    Defaults suit tests: failure injection on, loopback allowed for input fetching (test servers
    run there), a short worker lease so crash tests resume quickly.
    """

    TEST_SETTINGS = {
        "VIDGATE_SAMPLE_FAILURE_INJECTION": "true",
        "VIDGATE_FETCH_ALLOWED_PRIVATE_NETWORKS": "127.0.0.0/8",
        "VIDGATE_WORKER_LEASE_S": "3",
        "VIDGATE_WORKER_POLL_INTERVAL_S": "0.2",
        "VIDGATE_PROVIDER_POLL_INTERVAL_S": "0.3",
    }

    def __init__(
        self,
        data_dir: Path,
        *,
        env: dict[str, str] | None = None,
        embedded_defaults: bool = False,
        serve_args: tuple[str, ...] = (),
    ) -> None:
        """`embedded_defaults=True` runs exactly what `make run` runs (no test settings)."""
        self.data_dir = data_dir
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": os.environ.get("HOME", "/tmp"),
            "VIDGATE_DATA_DIR": str(data_dir),
            **({} if embedded_defaults else self.TEST_SETTINGS),
            **(env or {}),
        }
        self.serve_args = serve_args
        self.api_key: str | None = None
        # The scale pass gives each process that names no database of its own a fresh
        # PostgreSQL database and the shared Redis; `make run`'s embedded mode stays as it is.
        self.provisioned = (
            SCALE_STACK and not embedded_defaults and not (env and "VIDGATE_DATABASE_URL" in env)
        )
        if self.provisioned:
            url = migrated_postgres_copy()
            _databases_of_processes.append(url)
            self.env = {
                "VIDGATE_DATABASE_URL": url,
                "VIDGATE_REDIS_URL": SCALE_REDIS_URL,
                **self.env,
            }
        self.process: subprocess.Popen[str] | None = None
        self.log_path = data_dir / "server.log"

    def start(self, timeout_s: float = 30.0) -> GatewayProcess:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if self.provisioned and self.api_key is None:
            # A shared database gets no first key from `serve`: make it as an operator would.
            credits = int(self.env.get("VIDGATE_INITIAL_CREDITS", "1000"))
            self.api_key = create_key_with_cli(self.env, title="first", credits=credits)
        log = self.log_path.open("a")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "vidgate", "serve", "--port", str(self.port), *self.serve_args],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=self.env,
            text=True,
        )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"gateway exited early:\n{self.log()}")
            try:
                if httpx.get(f"{self.base_url}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        else:
            raise RuntimeError(f"gateway did not become ready:\n{self.log()}")
        if self.api_key is None:  # embedded mode prints the first account's key once
            found = _KEY_PATTERN.search(self.log())
            assert found, "serve did not print the first API key"
            self.api_key = found.group(0)
        return self

    def log(self) -> str:
        return self.log_path.read_text() if self.log_path.exists() else ""

    def query(self, text: str, *params: object) -> list[tuple[Any, ...]]:
        """Rows of a read-only query on this process's database (SQLite file or PostgreSQL),
        with `%s` placeholders: what a test checks behind the API's back."""
        url = self.env.get("VIDGATE_DATABASE_URL")
        if url is None:
            import sqlite3

            path = self.data_dir / "vidgate.db"
            with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as conn:
                return conn.execute(text.replace("%s", "?"), params).fetchall()
        with psycopg.connect(url.replace("+psycopg", ""), autocommit=True) as conn:
            return conn.execute(text, params).fetchall()  # type: ignore[arg-type]

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"}

    def kill(self) -> None:
        """SIGKILL: no shutdown hooks, leases stay held until they expire."""
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)


def create_key_with_cli(env: dict[str, str], *, title: str, credits: int) -> str:
    """`vidgate keys create` for a new account, as an operator of a shared database does (no
    first key is printed there); the plaintext key."""
    created = subprocess.run(
        [
            sys.executable, "-m", "vidgate", "keys", "create",
            "--title", title, "--credits", str(credits),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )  # fmt: skip
    return created.stdout.strip().splitlines()[-1]


def wait_for_task(
    server: GatewayProcess,
    task_id: str,
    *,
    until: tuple[str, ...] = ("completed", "failed"),
    timeout_s: float = 60.0,
) -> dict[str, Any]:
    """Poll GET /api/v1/videos/{id} like a client until the status is one of `until`."""
    deadline = time.monotonic() + timeout_s
    data: dict[str, Any] = {}
    while time.monotonic() < deadline:
        response = httpx.get(
            f"{server.base_url}/api/v1/videos/{task_id}", headers=server.headers, timeout=5
        )
        assert response.status_code == 200, response.text
        data = response.json()["data"]
        if data["status"] in until:
            return data
        time.sleep(0.2)
    raise AssertionError(f"task {task_id} still {data.get('status')} after {timeout_s}s")


def decode_mp4(path: Path) -> dict[str, Any]:
    """What a user checks of a video file: codec, size, frame rate, length, decodable frames."""
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = [frame.to_ndarray(format="rgb24") for frame in container.decode(stream)]
        return {
            "codec": stream.codec_context.name,
            "width": stream.codec_context.width,
            "height": stream.codec_context.height,
            "fps": float(stream.average_rate or 0),
            "frames": frames,
            "duration_s": float(container.duration or 0) / 1_000_000,
        }


@contextmanager
def static_http_server(files: dict[str, tuple[str, bytes]]) -> Iterator[str]:
    """Serve {path: (content_type, body)} on a loopback port; yields the base URL."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path not in files:
                self.send_error(404)
                return
            content_type, body = files[self.path]
            self.send_response(200)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


# -- PostgreSQL ---------------------------------------------------------------------------

PG_ADMIN_DSN = os.environ.get(
    "VIDGATE_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/postgres"
)
IN_CI = os.environ.get("CI", "").lower() == "true"


def service_missing(reason: str) -> None:
    if IN_CI:
        pytest.fail(f"{reason} (required under CI=true)")
    pytest.skip(reason)


def _admin_connection() -> psycopg.Connection[Any]:
    try:
        return psycopg.connect(PG_ADMIN_DSN, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as exc:
        service_missing(f"PostgreSQL is not reachable at {PG_ADMIN_DSN}: {exc}")
        raise  # not reached: service_missing skips or fails


def _url_of(name: str) -> str:
    base = PG_ADMIN_DSN.rsplit("/", 1)[0]
    return f"{base.replace('postgresql://', 'postgresql+psycopg://', 1)}/{name}"


def create_postgres_database(*, template: str | None = None) -> str:
    """A new PostgreSQL database (a copy of `template` when given); its URL. Drop it with
    drop_postgres_database."""
    name = f"vidgate_test_{uuid.uuid4().hex[:12]}"
    statement = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
    if template is not None:
        statement += sql.SQL(" TEMPLATE {}").format(sql.Identifier(template))
    with _admin_connection() as admin:
        admin.execute(statement)
    return _url_of(name)


def drop_postgres_database(url: str) -> None:
    name = url.rsplit("/", 1)[1]
    with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as admin:
        admin.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


@contextmanager
def fresh_postgres_database() -> Iterator[str]:
    """A new, empty PostgreSQL database, dropped afterwards."""
    url = create_postgres_database()
    try:
        yield url
    finally:
        drop_postgres_database(url)


_migrated_template: str | None = None


def migrated_postgres_copy() -> str:
    """A new database with the schema at head: a copy of one migrated template database per test
    session (copying takes tens of milliseconds; migrating takes about a second)."""
    global _migrated_template
    if _migrated_template is None:
        from vidgate.db import migrate

        url = create_postgres_database()
        migrate.upgrade(url)
        _migrated_template = url.rsplit("/", 1)[1]
    return create_postgres_database(template=_migrated_template)


def drop_migrated_template() -> None:
    if _migrated_template is not None:
        drop_postgres_database(_url_of(_migrated_template))


# -- the test stack: which services the default fixtures and gateway processes use --------
# `VIDGATE_TEST_STACK=scale` runs the suite on the scale-out deployment (PostgreSQL + Redis)
# instead of the embedded defaults (SQLite, in-process limits); `make test` runs both passes.

SCALE_STACK = os.environ.get("VIDGATE_TEST_STACK", "embedded") == "scale"
# A Redis database of the scale pass's own, emptied before each test (key ids restart with
# every fresh database, so a previous test's rate-limit buckets must not linger).
SCALE_REDIS_URL = os.environ.get("VIDGATE_TEST_REDIS_URL", "redis://127.0.0.1:6379/1")
_databases_of_processes: list[str] = []


def drop_process_databases() -> None:
    while _databases_of_processes:
        drop_postgres_database(_databases_of_processes.pop())
