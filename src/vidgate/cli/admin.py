"""Server and admin commands: serve, migrate, keys, credits. No running server needed."""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer
from alembic.util import CommandError
from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from sqlalchemy import exc as sqlalchemy_exc
from sqlalchemy import select
from sqlalchemy.engine import make_url

from vidgate import metrics
from vidgate.billing import service as billing
from vidgate.cli import key_controls
from vidgate.db import migrate as migrations
from vidgate.db.engine import Database, open_database
from vidgate.db.models import Account
from vidgate.db.types import iso_ms
from vidgate.errors import VidgateError
from vidgate.keys import service as keys
from vidgate.keys.invalidation import Invalidation, Scope, announce
from vidgate.settings import Settings

if TYPE_CHECKING:
    from vidgate.providers.catalogue import Catalogue

T = TypeVar("T")
err = Console(stderr=True)
out = Console()

DataDirOption = Annotated[
    Path | None,
    typer.Option("--data-dir", help="Data directory (default: $VIDGATE_DATA_DIR or ./.vidgate)"),
]


RateLimitOption = Annotated[
    float | None,
    typer.Option("--rate-limit", help="Requests per second for this key (default: the gateway's)"),
]
MaxJobsOption = Annotated[
    int | None,
    typer.Option("--max-concurrent-jobs", help="Tasks in flight for this key (default: gateway's)"),
]


def fail(message: str, code: int = 1) -> typer.Exit:
    err.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


def load_settings(data_dir: Path | None = None) -> Settings:
    try:
        settings = Settings()
    except ValidationError as exc:
        problems = "; ".join(
            f"VIDGATE_{'_'.join(map(str, e['loc'])).upper()}: {e['msg']}" for e in exc.errors()
        )
        raise fail(f"invalid setting: {problems}") from None
    if data_dir is not None:
        settings = settings.model_copy(update={"data_dir": data_dir})
    try:
        settings.ensure_data_dir()
    except OSError as exc:
        raise fail(f"cannot create the data dir {settings.data_dir}: {exc.strerror}") from None
    return settings


def _shown_url(settings: Settings) -> str:
    try:
        return make_url(settings.resolved_database_url).render_as_string(hide_password=True)
    except sqlalchemy_exc.ArgumentError:
        return "VIDGATE_DATABASE_URL"


@contextmanager
def database_errors(settings: Settings) -> Iterator[None]:
    """A database that is down, refuses us or has an unknown schema: one line that names it
    (password hidden) and says why, not a driver traceback."""
    try:
        yield
    except sqlalchemy_exc.ArgumentError as exc:  # also an unknown driver (NoSuchModuleError)
        raise fail(f"invalid database URL {_shown_url(settings)}: {exc}") from None
    except sqlalchemy_exc.DBAPIError as exc:
        reason = str(exc.orig).strip().splitlines()[0] if str(exc.orig).strip() else repr(exc)
        raise fail(f"cannot use the database {_shown_url(settings)}: {reason}") from None
    except CommandError as exc:  # e.g. a revision this version does not know: a newer schema
        raise fail(f"cannot migrate the database {_shown_url(settings)}: {exc}") from None


def run_with_db(settings: Settings, work: Callable[[Database], Awaitable[T]]) -> T:
    """Run one admin operation against the database (migrated first if embedded) and close it."""
    prepare_schema(settings)

    async def runner() -> T:
        db = open_database(settings.resolved_database_url)
        try:
            return await work(db)
        finally:
            await db.dispose()

    try:
        with database_errors(settings):
            return asyncio.run(runner())
    except VidgateError as error:
        raise fail(error.message) from None


def prepare_schema(settings: Settings) -> None:
    """Embedded SQLite migrates itself; a shared database is migrated on purpose, by an
    operator running `vidgate migrate`, so processes refuse to start on an old schema; and
    none starts on a schema that a newer release migrated (in a rolling upgrade: an old
    process restarted after the migration)."""
    with database_errors(settings):
        state = migrations.schema_state(settings.resolved_database_url)
        refuse_newer_schema(state)
        if settings.is_sqlite:
            migrations.upgrade(settings.resolved_database_url)
        elif state.behind:
            raise fail("the database schema is not up to date: run `vidgate migrate` first")


def refuse_newer_schema(state: migrations.SchemaState) -> None:
    if state.newer:
        from importlib.metadata import version

        raise fail(
            f"the database schema (revision {', '.join(state.newer)}) is newer than this "
            f"vidgate {version('vidgate')}: run the release that migrated it, or a later one"
        )


def listen(host: str, port: int) -> socket.socket:
    """The server's socket, bound before anything starts: a port in use is one clear line, and
    the first API key is never printed by a server that then cannot run."""
    try:
        family, kind, proto, _name, address = socket.getaddrinfo(
            host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
        sock = socket.socket(family, kind, proto)
    except OSError as exc:
        raise fail(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does
        sock.bind(address)
    except OSError as exc:
        sock.close()
        raise fail(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    return sock


def split_names(values: list[str] | None) -> list[str]:
    """Repeated options and comma-separated lists alike: `--queues a,b --queues c`."""
    return [name.strip() for value in values or [] for name in value.split(",") if name.strip()]


async def ensure_first_key(db: Database, *, credits: int) -> str | None:
    """On an empty database, create the first account and key; return the plaintext key."""
    async with db.write() as session:
        if await session.scalar(select(Account.id).limit(1)) is not None:
            return None
        account = await billing.create_account(session, name="default", credits=credits)
        _key, plaintext = await keys.create_key(session, account_id=account.id, title="default")
        return plaintext


def register(app: typer.Typer) -> None:
    app.command()(serve)
    app.command()(worker)
    app.command()(migrate)
    keys_app = typer.Typer(help="Create, list and revoke API keys.", no_args_is_help=True)
    keys_app.command("create")(keys_create)
    keys_app.command("list")(keys_list)
    keys_app.command("revoke")(keys_revoke)
    keys_app.command("limits")(keys_limits)
    keys_app.command("update")(key_controls.keys_update)
    app.add_typer(keys_app, name="keys")
    from vidgate.cli import accounts, credits  # they build on this module's helpers

    app.add_typer(credits.app, name="credits")
    app.add_typer(accounts.app, name="accounts")
    from vidgate.cli import tasks

    app.add_typer(tasks.app, name="tasks")


def check_catalogue(settings: Settings) -> None:
    """Read the model catalogue, the storage setting and the moderation file before anything
    starts: a broken file or URL stops the process with one line naming it (exit 2), not a
    traceback."""
    from vidgate.moderation.policy_file import ModerationFileError, read_policy
    from vidgate.providers.catalogue import Catalogue, CatalogueError
    from vidgate.storage.factory import StorageConfigError, build_file_store

    try:
        catalogue = Catalogue.load(settings.catalogue_path)
        build_file_store(settings)
        if settings.moderation_path is not None:
            read_policy(settings.moderation_path, known_models=catalogue.models)
    except (CatalogueError, StorageConfigError, ModerationFileError) as exc:
        raise fail(str(exc), code=2) from None


def check_providers(settings: Settings) -> None:
    """Read the providers file and build each provider before anything starts: a bad field,
    a key that is not where the file says, or options the adapter refuses stop the process
    with one line naming the field (exit 2)."""
    from vidgate.providers.config_file import ProvidersFileError
    from vidgate.providers.factory import check_providers_file

    try:
        check_providers_file(settings)
    except ProvidersFileError as exc:
        raise fail(str(exc), code=2) from None


def serve(
    host: Annotated[str, typer.Option(help="Interface to bind")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port")] = 8000,
    data_dir: DataDirOption = None,
    worker: Annotated[bool, typer.Option(help="Run the task worker in this process")] = True,
) -> None:
    """Run the gateway (API and, by default, the in-process worker)."""
    import uvicorn
    from uvicorn.config import LOGGING_CONFIG

    from vidgate.app import create_app
    from vidgate.logs import configure_logging

    settings = load_settings(data_dir)
    check_catalogue(settings)
    check_providers(settings)
    public_host = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
    settings = settings.model_copy(
        update={
            "worker_enabled": worker and settings.worker_enabled,
            "public_url": settings.public_url or f"http://{public_host}:{port}",
        }
    )
    configure_logging(settings.log_level, log_format=settings.log_format)
    metrics.configure(settings.metrics_dir)
    prepare_schema(settings)
    sock = listen(host, port)
    if settings.is_sqlite:  # embedded mode: make a first key
        first_key = run_with_db(
            settings, lambda db: ensure_first_key(db, credits=settings.initial_credits)
        )
        if first_key:
            out.print(
                "\n[bold green]vidgate: created the first account with "
                f"{settings.initial_credits} credits. Its API key (shown once):[/]\n"
                f"\n    {first_key}\n"
                "\nMore keys: `vidgate keys create --title NAME`.\n",
                highlight=False,
            )
    config = uvicorn.Config(
        create_app(settings),
        host=host,
        port=port,
        log_level=settings.log_level.lower(),
        forwarded_allow_ips=settings.forwarded_allow_ips,
        # JSON logs: uvicorn's loggers keep the handler configure_logging gave them.
        log_config=None if settings.log_format == "json" else LOGGING_CONFIG,
    )
    server = uvicorn.Server(config)
    server.run(sockets=[sock])
    if not server.started:  # the app failed to start; uvicorn has logged why
        raise typer.Exit(3)


def worker(
    queues: Annotated[
        list[str] | None,
        typer.Option(
            "--queues",
            metavar="NAME,...",
            help="Claim only tasks of these queues (repeatable or comma-separated; default: all)",
        ),
    ] = None,
    models: Annotated[
        list[str] | None,
        typer.Option(
            "--models",
            metavar="MODEL,...",
            help="Claim only tasks of these models (repeatable or comma-separated; default: all)",
        ),
    ] = None,
    data_dir: DataDirOption = None,
) -> None:
    """Run only the task worker (scale-out: API processes use `serve --no-worker`)."""
    import signal

    from vidgate.gateway import Gateway
    from vidgate.logs import configure_logging

    settings = load_settings(data_dir)
    check_catalogue(settings)
    check_providers(settings)
    update: dict[str, object] = {"worker_enabled": True}
    if queues:  # else the settings' own (VIDGATE_WORKER_QUEUES), empty meaning every queue
        update["worker_queues"] = split_names(queues)
    if models:
        update["worker_models"] = split_names(models)
    settings = settings.model_copy(update=update)
    configure_logging(settings.log_level, log_format=settings.log_format)
    metrics.configure(settings.metrics_dir)
    if settings.worker_metrics_port is not None:
        from vidgate.metrics.scrape import serve_process_metrics

        try:
            serve_process_metrics(settings.worker_metrics_port)
        except OSError as exc:
            port = settings.worker_metrics_port
            raise fail(f"cannot serve metrics on port {port}: {exc.strerror or exc}") from None
    prepare_schema(settings)

    async def run() -> None:
        gateway = Gateway.build(settings)
        try:
            check_pool(gateway.catalogue, settings)
            logging.getLogger("vidgate.worker").info(
                "worker claims tasks of queues: %s; models: %s",
                ", ".join(settings.worker_queues) or "all",
                ", ".join(settings.worker_models) or "all",
            )
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for signum in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(signum, stop.set)
            await gateway.start()
            await stop.wait()
        finally:
            await gateway.close()

    asyncio.run(run())


def check_pool(catalogue: Catalogue, settings: Settings) -> None:
    """A misspelt queue or model would leave the worker idle for ever: refuse it at once."""
    for option, names, known in (
        ("--queues", settings.worker_queues, catalogue.queues),
        ("--models", settings.worker_models, tuple(sorted(catalogue.models))),
    ):
        unknown = [name for name in names if name not in known]
        if unknown:
            raise fail(f"{option}: unknown {', '.join(unknown)} (available: {', '.join(known)})")


def migrate(data_dir: DataDirOption = None) -> None:
    """Apply database migrations up to the latest."""
    settings = load_settings(data_dir)
    with database_errors(settings):
        refuse_newer_schema(migrations.schema_state(settings.resolved_database_url))
        migrations.upgrade(settings.resolved_database_url)
    out.print("database is up to date")


def keys_create(
    title: Annotated[str, typer.Option("--title", help="A name for the key")],
    account: Annotated[
        int | None, typer.Option("--account", help="Account id (default: a new account)")
    ] = None,
    credits: Annotated[
        int, typer.Option("--credits", min=0, help="Credits to grant to the account")
    ] = 0,
    rate_limit: RateLimitOption = None,
    max_concurrent_jobs: MaxJobsOption = None,
    admin: key_controls.AdminOption = False,
    budget: key_controls.BudgetOption = None,
    budget_period: key_controls.BudgetPeriodOption = None,
    models: key_controls.ModelsOption = None,
    expires_in: key_controls.ExpiresInOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """Create an API key; prints the plaintext key alone on the last line."""
    from vidgate.providers.catalogue import Catalogue

    settings = load_settings(data_dir)
    check_catalogue(settings)
    known_models = Catalogue.load(settings.catalogue_path).models

    async def work(db: Database) -> tuple[int, int, str]:
        controls = key_controls.controls_from_options(
            admin=admin,
            budget=budget,
            budget_period=budget_period,
            models=models,
            expires_in=expires_in,
        )
        async with db.write() as session:
            if account is None:
                account_id = (await billing.create_account(session, name=title)).id
            else:
                account_id = (await billing.get_account(session, account)).id
            if credits:
                await billing.grant(
                    session, account_id=account_id, amount=credits, note="keys create"
                )
            key, plaintext = await keys.create_key(
                session,
                account_id=account_id,
                title=title,
                controls=controls,
                known_models=known_models,
            )
            if rate_limit is not None or max_concurrent_jobs is not None:
                await keys.set_limits(
                    session,
                    key_id=key.id,
                    rate_limit_per_second=rate_limit,
                    max_concurrent_jobs=max_concurrent_jobs,
                )
            await key_controls.record_key_action(session, key, action="key.create", before=None)
            return account_id, key.id, plaintext

    account_id, key_id, plaintext = run_with_db(settings, work)
    err.print(f"created key {key_id} for account {account_id} (shown once):")
    print(plaintext)


def keys_limits(
    key_id: Annotated[int, typer.Argument(help="Key id (see `vidgate keys list`)")],
    rate_limit: RateLimitOption = None,
    max_concurrent_jobs: MaxJobsOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """Set a key's own limits; an omitted limit goes back to the gateway's default."""
    settings = load_settings(data_dir)

    async def work(db: Database) -> tuple[float | None, int | None]:
        async with db.write() as session:
            key = await keys.set_limits(
                session,
                key_id=key_id,
                rate_limit_per_second=rate_limit,
                max_concurrent_jobs=max_concurrent_jobs,
            )
            return key.rate_limit_per_second, key.max_concurrent_jobs

    rate, jobs = run_with_db(settings, work)
    rate_text = (
        f"{rate:g} requests/s" if rate else f"default ({settings.rate_limit_per_second:g}/s)"
    )
    jobs_text = str(jobs) if jobs else f"default ({settings.max_concurrent_jobs})"
    out.print(f"key {key_id}: rate limit {rate_text}, concurrent jobs {jobs_text}")


def keys_list(
    account: Annotated[int | None, typer.Option("--account", help="Only this account")] = None,
    data_dir: DataDirOption = None,
) -> None:
    """List API keys (previews only; plaintext keys are never stored)."""
    settings = load_settings(data_dir)

    async def work(db: Database) -> list[tuple[str, ...]]:
        async with db.read() as session:
            found = await keys.list_keys(session, account_id=account)
        return [
            (
                str(k.id),
                str(k.account_id),
                k.title,
                k.key_preview,
                k.status,
                *key_controls.describe_controls(k),
                iso_ms(k.created_at) or "",
                iso_ms(k.last_used_at) or "never",
            )
            for k in found
        ]

    rows = run_with_db(settings, work)
    table = Table(
        "id",
        "account",
        "title",
        "preview",
        "status",
        "role",
        "models",
        "budget",
        "expires",
        "created",
        "last used",
    )
    for row in rows:
        table.add_row(*row)
    out.print(table)


def keys_revoke(
    key_id: Annotated[int, typer.Argument(help="Key id (see `vidgate keys list`)")],
    data_dir: DataDirOption = None,
) -> None:
    """Revoke an API key; every API process refuses it from its next request on (without
    VIDGATE_REDIS_URL: within the principal cache TTL, 1 s)."""
    settings = load_settings(data_dir)

    async def work(db: Database) -> str:
        async with db.write() as session:
            key = await keys.revoke_key(session, key_id=key_id)
            status = key.status
        await announce(settings, Invalidation(Scope.KEY, key_id))
        return status

    status = run_with_db(settings, work)
    out.print(f"key {key_id}: {status}")
