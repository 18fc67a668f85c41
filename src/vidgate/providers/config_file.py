"""Reading the providers file (VIDGATE_PROVIDERS_PATH): one `[providers.NAME]` table per upstream
instance, checked whole, the first problem a ProvidersFileError naming the file and the field.

Secrets never live in the file: it names an environment variable (`api_key_env`) or a file
(`api_key_file`) that holds the key, and no message ever shows a key, only where it was looked for.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from vidgate.providers.config import ProviderConfig
from vidgate.providers.options import shown
from vidgate.providers.toml_reader import NAME, TomlReader, key, load_toml

# Kinds of upstream the gateway can talk to (diffusers, a local model, comes later).
KINDS = ("apimall", "openai")
BUILTIN_NAMES = frozenset({"sample"})  # built-in providers; the file cannot redefine them
PROVIDER_KEYS = (
    "kind",
    "base_url",
    "api_key_env",
    "api_key_file",
    "connect_timeout_s",
    "request_timeout_s",
    "poll_interval_s",
    "max_poll_interval_s",
    "max_concurrent",
    "options",
)
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_NO_SECRETS = (
    "secrets never go in the file: name an environment variable with api_key_env "
    "or a file holding the key with api_key_file"
)
# Below this a timeout or poll interval is a typo, not a setting.
_SMALLEST_SECONDS = 0.01
_DEFAULTS = ProviderConfig(name="", kind="", base_url="")


class ProvidersFileError(ValueError):
    """A providers file that cannot be used: names the file and the field, in one line."""

    def __init__(self, source: str, where: str, problem: str) -> None:
        self.source = source
        self.where = where
        self.problem = problem
        place = f"{source}: {where}" if where else source
        super().__init__(f"providers {place}: {problem}")


def read_providers_file(
    path: Path, *, environ: Mapping[str, str] | None = None
) -> dict[str, ProviderConfig]:
    """Every provider of the file, keys read from the environment (default: os.environ) or from
    key files (relative paths: next to the providers file)."""
    raw = load_toml(path, ProvidersFileError)
    return parse_providers(
        raw,
        source=str(path),
        base_dir=path.parent,
        environ=os.environ if environ is None else environ,
    )


def parse_providers(
    raw: Mapping[str, Any], *, source: str, base_dir: Path, environ: Mapping[str, str]
) -> dict[str, ProviderConfig]:
    return _Reader(source, base_dir, environ).providers(raw)


class _Reader(TomlReader):
    def __init__(self, source: str, base_dir: Path, environ: Mapping[str, str]) -> None:
        super().__init__(source, ProvidersFileError)
        self.base_dir = base_dir
        self.environ = environ

    def providers(self, raw: Mapping[str, Any]) -> dict[str, ProviderConfig]:
        self.keys(raw, ("providers",), "")
        if "providers" not in raw:
            self.fail("providers", "missing: a providers file needs a [providers.<name>] table")
        entries = self.table(raw["providers"], "providers")
        if not entries:
            self.fail("providers", "at least one provider is required")
        return {
            name: self.provider(name, entry, f"providers.{key(name)}")
            for name, entry in entries.items()
        }

    def provider(self, name: str, entry: object, where: str) -> ProviderConfig:
        if not NAME.fullmatch(name):
            self.fail(where, "a provider name is 1-64 letters, digits, '.', '_' or '-'")
        if name in BUILTIN_NAMES:
            self.fail(where, f"{name} is the name of a built-in provider; choose another")
        table = self.table(entry, where)
        if "api_key" in table:  # before the unknown-key check, which would only list keys
            self.fail(f"{where}.api_key", _NO_SECRETS)
        self.keys(table, PROVIDER_KEYS, where)
        kind = self.kind(table.get("kind"), f"{where}.kind")
        base_url = self.base_url(table.get("base_url"), f"{where}.base_url")
        api_key = self.api_key(table, where)
        poll_interval_s = self.seconds(table, "poll_interval_s", where)
        # A slow first poll raises the ceiling with it unless the file sets one.
        ceiling = max(poll_interval_s, _DEFAULTS.max_poll_interval_s)
        max_poll_interval_s = self.seconds(table, "max_poll_interval_s", where, default=ceiling)
        if max_poll_interval_s < poll_interval_s:
            self.fail(
                f"{where}.max_poll_interval_s",
                f"must be at least poll_interval_s ({poll_interval_s:g}) "
                f"(got {max_poll_interval_s:g})",
            )
        return ProviderConfig(
            name=name,
            kind=kind,
            base_url=base_url,
            api_key=api_key,
            connect_timeout_s=self.seconds(table, "connect_timeout_s", where),
            request_timeout_s=self.seconds(table, "request_timeout_s", where),
            poll_interval_s=poll_interval_s,
            max_poll_interval_s=max_poll_interval_s,
            max_concurrent=None
            if "max_concurrent" not in table
            else self.integer(table["max_concurrent"], f"{where}.max_concurrent", minimum=1),
            options=self.options(table.get("options", {}), f"{where}.options"),
        )

    def kind(self, value: object, where: str) -> str:
        if value is None:
            self.fail(where, f"missing: the provider's kind (known: {', '.join(KINDS)})")
        if value not in KINDS:
            self.fail(where, f"unknown kind {shown(value)} (known: {', '.join(KINDS)})")
        return str(value)

    def base_url(self, value: object, where: str) -> str:
        if value is None:
            self.fail(where, "missing: the upstream's URL, e.g. https://api.example.com")
        text = self.text(value, where)
        try:
            parts = urlsplit(text)
            parts.port  # noqa: B018 - raises ValueError on a port that is not a number
        except ValueError:
            self.fail(where, "is not a valid URL")
        if parts.username is not None or parts.password is not None:
            # Not echoed: what precedes the @ may be a password.
            self.fail(where, f"must not hold credentials; {_NO_SECRETS}")
        if parts.scheme not in ("http", "https") or not parts.hostname:
            self.fail(where, f"must be an http:// or https:// URL with a host (got {shown(text)})")
        if parts.query or parts.fragment:  # not echoed either: a query may carry a key
            self.fail(where, "must not have a query or a fragment")
        return text.rstrip("/")

    def seconds(
        self, table: Mapping[str, Any], name: str, where: str, *, default: float | None = None
    ) -> float:
        fallback = getattr(_DEFAULTS, name) if default is None else default
        return self.number(table.get(name, fallback), f"{where}.{name}", low=_SMALLEST_SECONDS)

    def options(self, value: object, where: str) -> dict[str, Any]:
        options = self.table(value, where)
        if "api_key" in options:
            self.fail(f"{where}.api_key", _NO_SECRETS)
        return dict(options)

    # -- the secret ---------------------------------------------------------------------

    def api_key(self, table: Mapping[str, Any], where: str) -> str:
        """The key named by api_key_env or api_key_file; both kinds so far need one."""
        has_env, has_file = "api_key_env" in table, "api_key_file" in table
        if has_env and has_file:
            self.fail(f"{where}.api_key_file", "give either api_key_env or api_key_file, not both")
        if has_env:
            return self.key_from_env(table["api_key_env"], f"{where}.api_key_env")
        if has_file:
            return self.key_from_file(table["api_key_file"], f"{where}.api_key_file")
        self.fail(
            f"{where}.api_key_env",
            "missing: name the environment variable holding the upstream's key "
            "(or give api_key_file, a file holding it)",
        )

    def key_from_env(self, value: object, where: str) -> str:
        if not isinstance(value, str) or not _ENV_NAME.fullmatch(value):
            # Not echoed: a key pasted here by mistake would end up in the log.
            self.fail(where, "must be the name of an environment variable (letters, digits, _)")
        secret = self.environ.get(value)
        if secret is None:
            self.fail(where, f"environment variable {value} is not set")
        return self.checked_secret(secret, where, f"environment variable {value}")

    def key_from_file(self, value: object, where: str) -> str:
        path = self.base_dir / Path(self.text(value, where)).expanduser()
        try:
            secret = path.read_text(encoding="utf-8")
        except OSError as exc:
            self.fail(where, f"cannot read {path}: {exc.strerror or type(exc).__name__}")
        except UnicodeDecodeError:
            self.fail(where, f"{path} is not UTF-8 text")
        return self.checked_secret(secret, where, str(path))

    def checked_secret(self, secret: str, where: str, origin: str) -> str:
        secret = secret.strip()
        if not secret:
            self.fail(where, f"{origin} is empty")
        if any(char.isspace() for char in secret):
            self.fail(where, f"{origin} must hold the key alone, on one line")
        return secret
