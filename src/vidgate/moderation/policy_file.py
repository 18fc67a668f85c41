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

import json
import os
import re
import tomllib
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any, NoReturn
from urllib.parse import urlsplit

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
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# OpenAI's categories look like `violence/graphic`, `self-harm/intent`; other endpoints' alike.
_CATEGORY = re.compile(r"[A-Za-z0-9][A-Za-z0-9/_.-]{0,63}")
_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
_TOML_POSITION = re.compile(r"\s*\(at (line \d+, column \d+|end of document)\)$")


class ModerationFileError(ValueError):
    """A moderation file that cannot be used: names the file and the field, in one line."""

    def __init__(self, source: str, where: str, problem: str) -> None:
        self.source = source
        self.where = where
        self.problem = problem
        place = f"{source}: {where}" if where else source
        super().__init__(f"moderation {place}: {problem}")


def read_policy(
    path: Path,
    *,
    known_models: Collection[str] | None = None,
    environ: Mapping[str, str] | None = None,
) -> ModerationPolicy:
    """The policy in `path`. `known_models`: the catalogue's ids, so that a misspelt
    `[models.<id>]` is refused rather than silently never applied. `environ`: where
    `api_key_env` is looked up (default: this process's environment)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ModerationFileError(str(path), "", f"cannot read the file: {reason}") from None
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        message = str(exc)
        position = _TOML_POSITION.search(message)
        where = position.group(1) if position else ""
        problem = message[: position.start()] if position else message
        raise ModerationFileError(str(path), where, f"invalid TOML: {problem}") from None
    reader = _Reader(
        str(path),
        base_dir=path.parent,
        known_models=known_models,
        environ=os.environ if environ is None else environ,
    )
    return reader.policy(raw)


def _key(name: str) -> str:
    return name if _BARE_KEY.fullmatch(name) else json.dumps(name)


class _Reader:
    def __init__(
        self,
        source: str,
        *,
        base_dir: Path,
        known_models: Collection[str] | None,
        environ: Mapping[str, str],
    ) -> None:
        self.source = source
        self.base_dir = base_dir
        self.known_models = known_models
        self.environ = environ

    def fail(self, where: str, problem: str) -> NoReturn:
        raise ModerationFileError(self.source, where, problem)

    # -- values ---------------------------------------------------------------------------

    def table(self, value: object, where: str) -> dict[str, Any]:
        if not isinstance(value, dict):
            self.fail(where, f"must be a table (got {shown(value)})")
        return value

    def keys(self, table: Mapping[str, Any], allowed: tuple[str, ...], where: str) -> None:
        for key in table:
            if key not in allowed:
                place = f"{where}.{_key(key)}" if where else _key(key)
                self.fail(place, f"unknown key (allowed: {', '.join(allowed)})")

    def strings(self, value: object, where: str) -> list[str]:
        if not isinstance(value, list):
            self.fail(where, f"must be a list of strings (got {shown(value)})")
        for index, item in enumerate(value):
            if not isinstance(item, str):
                self.fail(f"{where}[{index}]", f"must be a string (got {shown(item)})")
        return value

    def text(self, value: object, where: str) -> str:
        if not isinstance(value, str) or not value.strip():
            self.fail(where, f"must be a non-empty string (got {shown(value)})")
        return value.strip()

    # -- tables ---------------------------------------------------------------------------

    def policy(self, raw: Mapping[str, Any]) -> ModerationPolicy:
        self.keys(raw, TOP_KEYS, "")
        everywhere = self.rule_lists(raw, "")
        models = self.table(raw.get("models", {}), "models")
        per_model = {
            model_id: self.model(model_id, entry, f"models.{_key(model_id)}")
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
            self.fail(
                f"{where}.api_key",
                "the key does not go in this file: name it with api_key_env or api_key_file",
            )
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
            model=self.text(table.get("model", DEFAULT_EXTERNAL_MODEL), f"{where}.model"),
            timeout_s=self.seconds(table.get("timeout_s", DEFAULT_TIMEOUT_S), f"{where}.timeout_s"),
            max_retries=self.retries(
                table.get("max_retries", DEFAULT_MAX_RETRIES), f"{where}.max_retries"
            ),
            on_error=on_error,
            categories=self.categories(table, f"{where}.categories"),
        )

    def base_url(self, value: object, where: str) -> str:
        url = self.text(value, where)
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            self.fail(where, f"must be an http(s) URL (got {shown(url)})")
        if parts.username is not None or parts.password is not None:
            # Never echoed: the part before the host may be a secret.
            self.fail(where, "credentials do not go in the URL: use api_key_env or api_key_file")
        if parts.query or parts.fragment:
            self.fail(where, f"must have no query or fragment (got {shown(url)})")
        return url.rstrip("/")

    def api_key(self, table: Mapping[str, Any], where: str) -> str:
        has_env, has_file = "api_key_env" in table, "api_key_file" in table
        if has_env and has_file:
            self.fail(f"{where}.api_key_file", "give api_key_env or api_key_file, not both")
        if has_env:
            place = f"{where}.api_key_env"
            name = self.text(table["api_key_env"], place)
            if not _ENV_NAME.fullmatch(name):
                self.fail(place, f"{shown(name)} is not an environment variable name")
            key = self.environ.get(name, "").strip()
            if not key:
                self.fail(place, f"the environment variable {name} is not set or empty")
            return self.checked_key(key, place)
        if has_file:
            place = f"{where}.api_key_file"
            path = self.base_dir / Path(self.text(table["api_key_file"], place)).expanduser()
            try:
                key = path.read_text(encoding="utf-8").strip()
            except (OSError, UnicodeDecodeError) as exc:
                reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else "not text"
                self.fail(place, f"cannot read {path}: {reason}")
            if not key:
                self.fail(place, f"{path} is empty")
            return self.checked_key(key, place)
        self.fail(where, "missing: api_key_env or api_key_file (the key never goes in this file)")

    def checked_key(self, key: str, where: str) -> str:
        # It becomes an HTTP header value; say what is wrong without showing any of it.
        if any(char.isspace() or not char.isprintable() for char in key):
            self.fail(where, "the key contains whitespace or control characters")
        return key

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
