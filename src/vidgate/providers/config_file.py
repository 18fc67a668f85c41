"""Reading the providers file (VIDGATE_PROVIDERS_PATH): one `[providers.NAME]` table per upstream
instance, checked whole, the first problem a ProvidersFileError naming the file and the field.

Secrets never live in the file: it names an environment variable (`api_key_env`) or a file
(`api_key_file`) that holds the key, and no message ever shows a key, only where it was looked for.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from vidgate.providers.config import ProviderConfig
from vidgate.providers.options import shown
from vidgate.toml_files import (
    NAME,
    NO_SECRETS,
    ConfigFileError,
    SecretReader,
    key,
    load_toml,
)

# Kinds of upstream the gateway can talk to; diffusers runs a local model in the worker.
KINDS = ("apimall", "openai", "diffusers")
LOCAL_KINDS = frozenset({"diffusers"})
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
# A local model's table: where its weights are and how to run them, no endpoint or key.
# Its settings reach the provider as `options`; a relative path is next to the providers file.
LOCAL_PROVIDER_KEYS = (
    "kind",
    "pipeline",
    "path",
    "device",
    "dtype",
    "fps",
    "max_sequence_length",
    "max_concurrent",
)
# Below this a timeout or poll interval is a typo, not a setting.
_SMALLEST_SECONDS = 0.01
_DEFAULTS = ProviderConfig(name="", kind="", base_url="")


class ProvidersFileError(ConfigFileError):
    """A providers file that cannot be used: names the file and the field, in one line."""

    label = "providers"


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


class _Reader(SecretReader):
    def __init__(self, source: str, base_dir: Path, environ: Mapping[str, str]) -> None:
        super().__init__(source, ProvidersFileError, base_dir=base_dir, environ=environ)

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
            self.fail(f"{where}.api_key", NO_SECRETS)
        kind = self.kind(table.get("kind"), f"{where}.kind")
        if kind in LOCAL_KINDS:
            return self.local_provider(name, kind, table, where)
        self.keys(table, PROVIDER_KEYS, where)
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

    def local_provider(
        self, name: str, kind: str, table: Mapping[str, Any], where: str
    ) -> ProviderConfig:
        self.keys(table, LOCAL_PROVIDER_KEYS, where)
        if "path" not in table:
            self.fail(f"{where}.path", "missing: the folder of the pipeline's weights")
        options = {k: v for k, v in table.items() if k not in ("kind", "max_concurrent")}
        options["path"] = str(self.base_dir / self.text(table["path"], f"{where}.path"))
        return ProviderConfig(
            name=name,
            kind=kind,
            base_url="",
            max_concurrent=None
            if "max_concurrent" not in table
            else self.integer(table["max_concurrent"], f"{where}.max_concurrent", minimum=1),
            options=options,
        )

    def kind(self, value: object, where: str) -> str:
        if value is None:
            self.fail(where, f"missing: the provider's kind (known: {', '.join(KINDS)})")
        if value not in KINDS:
            self.fail(where, f"unknown kind {shown(value)} (known: {', '.join(KINDS)})")
        return str(value)

    def seconds(
        self, table: Mapping[str, Any], name: str, where: str, *, default: float | None = None
    ) -> float:
        fallback = getattr(_DEFAULTS, name) if default is None else default
        return self.number(table.get(name, fallback), f"{where}.{name}", low=_SMALLEST_SECONDS)

    def options(self, value: object, where: str) -> dict[str, Any]:
        options = self.table(value, where)
        if "api_key" in options:
            self.fail(f"{where}.api_key", NO_SECRETS)
        return dict(options)
