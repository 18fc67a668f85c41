"""One Settings object, read from the environment (prefix VIDGATE_) at assembly time only."""

from __future__ import annotations

import ipaddress
import secrets
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


def _split_csv(value: object) -> object:
    # Lists come from the environment as "a,b,c"; an empty string means "none".
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    return value


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="VIDGATE_", extra="ignore")

    data_dir: Path = Path(".vidgate")
    database_url: str | None = Field(
        default=None, description="SQLAlchemy URL; default: SQLite file in the data dir"
    )
    public_url: str | None = Field(
        default=None,
        description="Base URL clients use to reach the gateway (`serve` defaults it to its own)",
    )
    allowed_hosts: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="Host headers accepted; empty accepts any"
    )
    secret_key: str | None = Field(
        default=None, description="Signs result URLs; default: generated once in the data dir"
    )
    log_level: str = "INFO"
    # Log lines as text (for people) or one JSON object per line (for log shippers)
    log_format: Literal["text", "json"] = "text"

    # Prometheus metrics at GET /metrics (docs/operations.md "Metrics and logs")
    metrics_enabled: bool = True
    # When set, /metrics asks for `Authorization: Bearer <token>`; unset: open to anyone
    metrics_token: str | None = None
    # A directory shared by the processes of one machine (prometheus-client's multiprocess
    # mode; PROMETHEUS_MULTIPROC_DIR also works): every process's metrics in each scrape
    metrics_dir: Path | None = None
    # `vidgate worker` only: serve its metrics on this port (the API serves them on its own)
    worker_metrics_port: int | None = None

    # HTTP edge
    max_body_bytes: int = 1024 * 1024
    # Proxies (IPs or CIDRs; "*": any) whose X-Forwarded-For and X-Forwarded-Proto `serve`
    # believes: the client address that failed authentications are limited by
    forwarded_allow_ips: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["127.0.0.1", "::1"]
    )

    # Per-key limits (a key's own settings override these)
    rate_limit_per_second: float = 20.0
    rate_limit_burst: int = 40
    max_concurrent_jobs: int = 20
    # Seconds a key's lookup is cached per process: how long a revoke or account change made
    # elsewhere can take to reach this process when Redis is not there to announce it at once
    principal_cache_ttl_s: float = Field(default=1.0, ge=0)

    # Redis (scale-out): the rate-limit store shared by every API process and the announcer of
    # key and account invalidations; none: both stay in process
    redis_url: str | None = None
    # Prefix of every Redis key and channel, so deployments can share one Redis
    redis_prefix: str = "vidgate:"
    # Redis unreachable: `open` limits each process on its own, `closed` answers 503
    redis_failure_mode: Literal["open", "closed"] = "open"

    # Credits given to the account the first `serve` creates
    initial_credits: int = 1000
    # Accounts made by the admin API or `vidgate accounts create` start pending (approved later)
    new_accounts_pending: bool = False

    # Worker
    worker_enabled: bool = True
    worker_concurrency: int = 4
    worker_poll_interval_s: float = 0.5
    # PostgreSQL: the task and webhook loops LISTEN for NOTIFY wake-ups; false: they poll alone
    pg_notify: bool = True
    worker_lease_s: float = 30.0
    provider_poll_interval_s: float = 1.0
    # Worker pools: the queues (and, optionally, models) this process's worker claims from;
    # empty means every queue (every model). `vidgate worker --queues/--models` sets them.
    worker_queues: Annotated[list[str], NoDecode] = Field(default_factory=list)
    worker_models: Annotated[list[str], NoDecode] = Field(default_factory=list)
    # Pending tasks of a suspended account: `fail` them (refunded) when a worker picks them, or
    # let them `wait` unclaimed until the account is active again; running ones may finish
    suspended_tasks: Literal["fail", "wait"] = "fail"

    # Results
    result_url_ttl_s: int = 24 * 3600
    # Retention: days after a task ends that the worker's reaper deletes its result files
    # (the task still reads, without them); 0 keeps them until deleted by the user
    result_retention_days: float = Field(default=0, ge=0)
    # How long an Idempotency-Key is remembered; the contract promises at least 24 h
    idempotency_retention_hours: float = Field(default=24, ge=24)
    # Seconds between the reaper's rounds (each deletes a bounded batch)
    reaper_interval_s: float = Field(default=60, gt=0)
    storage_url: str | None = Field(
        default=None,
        description="Where result files live: s3://bucket/prefix for an S3 bucket (AWS_* "
        "credentials and region); default: the data dir's files/ folder",
    )
    # The S3 endpoint when it is not AWS's (MinIO, Cloudflare R2, moto): http(s)://host:port
    s3_endpoint_url: str | None = None

    # Fetching user-supplied URLs
    fetch_max_bytes: int = 20 * 1024 * 1024
    fetch_timeout_s: float = 20.0
    fetch_allowed_private_networks: Annotated[list[str], NoDecode] = Field(default_factory=list)

    # Model catalogue (TOML); default: the built-in one
    catalogue_path: Path | None = None
    # Upstream instances (TOML, `[providers.NAME]`); none: every model runs on built-in providers
    providers_path: Path | None = None
    # Content moderation policy (TOML: word and regex lists per model, an optional external
    # /v1/moderations endpoint); none: prompts are not moderated
    moderation_path: Path | None = None

    # Webhooks: seconds before each try of a delivery (Standard Webhooks' schedule: at once,
    # 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 14 h, 20 h, 24 h; jittered); comma-separated
    webhook_retry_delays: Annotated[list[float], NoDecode] = Field(
        default_factory=lambda: [0.0, 5, 300, 1800, 7200, 18000, 36000, 50400, 72000, 86400]
    )

    # Opt-in failure injection in the sample provider (prompt markers), for client tests
    sample_failure_injection: bool = False

    _split = field_validator(
        "allowed_hosts",
        "forwarded_allow_ips",
        "fetch_allowed_private_networks",
        "worker_queues",
        "worker_models",
        "webhook_retry_delays",
        mode="before",
    )(_split_csv)

    @field_validator("webhook_retry_delays")
    @classmethod
    def _check_delays(cls, value: list[float]) -> list[float]:
        if not value or any(delay < 0 for delay in value):
            raise ValueError("give one or more delays in seconds, none negative")
        return value

    @field_validator("forwarded_allow_ips")
    @classmethod
    def _check_proxies(cls, value: list[str]) -> list[str]:
        # uvicorn would take a misspelt address as a literal that never matches: refuse it.
        if "*" in value and len(value) > 1:
            raise ValueError("* (any proxy) stands alone")
        for proxy in value:
            if proxy != "*":
                try:
                    ipaddress.ip_network(proxy, strict=False)
                except ValueError:
                    raise ValueError(f"{proxy!r} is not an IP address or network, nor *") from None
        return value

    @field_validator("fetch_allowed_private_networks")
    @classmethod
    def _check_networks(cls, value: list[str]) -> list[str]:
        for network in value:
            ipaddress.ip_network(network, strict=False)
        return value

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{(self.data_dir / 'vidgate.db').resolve()}"

    @property
    def result_retention(self) -> timedelta | None:
        """How long result files are kept after their task ends; None: until deleted."""
        days = self.result_retention_days
        return timedelta(days=days) if days else None

    @property
    def resolved_public_url(self) -> str:
        return (self.public_url or "http://127.0.0.1:8000").rstrip("/")

    @property
    def is_sqlite(self) -> bool:
        return self.resolved_database_url.startswith("sqlite")

    @property
    def files_dir(self) -> Path:
        return self.data_dir / "files"

    def ensure_data_dir(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.files_dir.mkdir(parents=True, exist_ok=True)

    def resolved_secret_key(self) -> str:
        """The configured secret, or one generated on first use and kept in the data dir."""
        if self.secret_key:
            return self.secret_key
        self.ensure_data_dir()
        path = self.data_dir / "secret_key"
        if not path.exists():
            path.touch(mode=0o600)
            path.write_text(secrets.token_hex(32))
        return path.read_text().strip()
