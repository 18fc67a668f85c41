"""Reading the moderation file (VIDGATE_MODERATION_PATH). Every key and value is checked, and
the first problem is a ModerationFileError naming the file and the field
(`models.sora2.patterns[1]: invalid regex ...`), so `serve` stops with one line instead of
a traceback at the first create. The shape is shown in moderation.example.toml beside this
module and in the README.

The external endpoint's key is read here, once, from the environment variable or the file the
moderation file names; the key itself is never in the moderation file, and no message below
ever includes it.
"""

from __future__ import annotations

import os
import re
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

from vidgate.moderation.builtin import normalise
from vidgate.moderation.policy import (
    DEFAULT_EXTERNAL_MODEL,
    DEFAULT_MAX_RETRIES,
    DEFAULT_TIMEOUT_S,
    ExternalConfig,
    ModerationPolicy,
    OnError,
    RuleLists,
)
from vidgate.providers.options import shown
from vidgate.toml_files import NO_SECRETS, ConfigFileError, SecretReader, key, load_toml

TOP_KEYS = ("words", "patterns", "models", "external")
MODEL_KEYS = ("words", "patterns")
EXTERNAL_KEYS = (
    "base_url",
    "api_key_env",
    "api_key_file",
    "model",
    "timeout_s",
    "max_retries",
    "on_error",
    "categories",
)
ON_ERROR_CHOICES: tuple[OnError, ...] = ("block", "allow")
# OpenAI's categories look like `violence/graphic`, `self-harm/intent`; other endpoints' alike.
_CATEGORY = re.compile(r"[A-Za-z0-9][A-Za-z0-9/_.-]{0,63}")


class ModerationFileError(ConfigFileError):
    """A moderation file that cannot be used: names the file and the field, in one line."""

    label = "moderation"


def read_policy(
    path: Path,
    *,
    known_models: Collection[str] | None = None,
    environ: Mapping[str, str] | None = None,
) -> ModerationPolicy:
    """The policy in `path`. `known_models`: the catalogue's ids, so that a misspelt
    `[models.<id>]` is refused rather than silently never applied. `environ`: where
    `api_key_env` is looked up (default: this process's environment)."""
    raw = load_toml(path, ModerationFileError)
    reader = _Reader(
        str(path),
        base_dir=path.parent,
        known_models=known_models,
        environ=os.environ if environ is None else environ,
    )
    return reader.policy(raw)


class _Reader(SecretReader):
    def __init__(
        self,
        source: str,
        *,
        base_dir: Path,
        known_models: Collection[str] | None,
        environ: Mapping[str, str],
    ) -> None:
        super().__init__(source, ModerationFileError, base_dir=base_dir, environ=environ)
        self.known_models = known_models

    # -- values ---------------------------------------------------------------------------

    def strings(self, value: object, where: str) -> list[str]:
        if not isinstance(value, list):
            self.fail(where, f"must be a list of strings (got {shown(value)})")
        for index, item in enumerate(value):
            if not isinstance(item, str):
                self.fail(f"{where}[{index}]", f"must be a string (got {shown(item)})")
        return value

    def filled(self, value: object, where: str) -> str:
        if not isinstance(value, str) or not value.strip():
            self.fail(where, f"must be a non-empty string (got {shown(value)})")
        return value.strip()

    # -- tables ---------------------------------------------------------------------------

    def policy(self, raw: Mapping[str, Any]) -> ModerationPolicy:
        self.keys(raw, TOP_KEYS, "")
        everywhere = self.rule_lists(raw, "")
        models = self.table(raw.get("models", {}), "models")
        per_model = {
            model_id: self.model(model_id, entry, f"models.{key(model_id)}")
            for model_id, entry in models.items()
        }
        external = None
        if "external" in raw:
            external = self.external(self.table(raw["external"], "external"), "external")
        if not everywhere and not per_model and external is None:
            self.fail("", "nothing to moderate with: give words, patterns or an [external] table")
        return ModerationPolicy(
            source=self.source, everywhere=everywhere, per_model=per_model, external=external
        )

    def model(self, model_id: str, entry: object, where: str) -> RuleLists:
        known = self.known_models
        if known is not None and model_id not in known:
            self.fail(where, f"not a model of the catalogue (models: {', '.join(sorted(known))})")
        table = self.table(entry, where)
        self.keys(table, MODEL_KEYS, where)
        lists = self.rule_lists(table, f"{where}.")
        if not lists:
            self.fail(where, "give this model words or patterns of its own")
        return lists

    def rule_lists(self, table: Mapping[str, Any], prefix: str) -> RuleLists:
        words = [
            self.word(word, f"{prefix}words[{index}]")
            for index, word in enumerate(self.strings(table.get("words", []), f"{prefix}words"))
        ]
        patterns = [
            self.pattern(pattern, f"{prefix}patterns[{index}]")
            for index, pattern in enumerate(
                self.strings(table.get("patterns", []), f"{prefix}patterns")
            )
        ]
        return RuleLists(words=tuple(words), patterns=tuple(patterns))

    def word(self, word: str, where: str) -> str:
        normal = " ".join(normalise(word).split())
        if not normal:
            self.fail(where, "a word cannot be empty")
        return normal

    def pattern(self, pattern: str, where: str) -> re.Pattern[str]:
        try:
            compiled = re.compile(pattern, re.IGNORECASE)
        except re.error as exc:
            self.fail(where, f"invalid regex: {exc}")
        if compiled.search(""):
            self.fail(where, "matches the empty string, so it would block every prompt")
        return compiled

    def external(self, table: Mapping[str, Any], where: str) -> ExternalConfig:
        if "api_key" in table:
            self.fail(f"{where}.api_key", NO_SECRETS)
        self.keys(table, EXTERNAL_KEYS, where)
        if "base_url" not in table:
            self.fail(f"{where}.base_url", "missing: the endpoint's API base, e.g. .../v1")
        on_error = table.get("on_error", "block")
        if on_error not in ON_ERROR_CHOICES:
            choices = " or ".join(map(shown, ON_ERROR_CHOICES))
            self.fail(f"{where}.on_error", f"must be {choices} (got {shown(on_error)})")
        return ExternalConfig(
            base_url=self.base_url(table["base_url"], f"{where}.base_url"),
            api_key=self.api_key(table, where),
            model=self.filled(table.get("model", DEFAULT_EXTERNAL_MODEL), f"{where}.model"),
            timeout_s=self.seconds(table.get("timeout_s", DEFAULT_TIMEOUT_S), f"{where}.timeout_s"),
            max_retries=self.retries(
                table.get("max_retries", DEFAULT_MAX_RETRIES), f"{where}.max_retries"
            ),
            on_error=on_error,
            categories=self.categories(table, f"{where}.categories"),
        )

    def seconds(self, value: object, where: str) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            self.fail(where, f"must be a number of seconds (got {shown(value)})")
        if not 0.1 <= value <= 120:
            self.fail(where, f"must be from 0.1 to 120 seconds (got {value:g})")
        return float(value)

    def retries(self, value: object, where: str) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 5:
            self.fail(where, f"must be an integer from 0 to 5 (got {shown(value)})")
        return value

    def categories(self, table: Mapping[str, Any], where: str) -> tuple[str, ...]:
        if "categories" not in table:
            return ()
        names = self.strings(table["categories"], where)
        if not names:
            self.fail(where, "list at least one category, or leave the key out to block on any")
        for index, name in enumerate(names):
            if not _CATEGORY.fullmatch(name):
                self.fail(f"{where}[{index}]", f"{shown(name)} is not a category name")
        return tuple(dict.fromkeys(names))
