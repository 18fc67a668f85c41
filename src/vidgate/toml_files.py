"""What the catalogue and providers readers share: reading a TOML file and checking its values,
each problem raised as the reader's own one-line error naming the file and the field."""

from __future__ import annotations

import json
import math
import re
import tomllib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, NoReturn

from vidgate.providers.options import shown

# Model ids, queue names and provider names end up in URLs, settings lists and log lines.
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
_TOML_POSITION = re.compile(r"\s*\(at (line \d+, column \d+|end of document)\)$")

# Builds the reader's error from (source, where, problem), e.g. CatalogueError.
ErrorFactory = Callable[[str, str, str], Exception]


def key(name: str) -> str:
    """A key as it is written in a dotted field path (quoted when it is not a bare key)."""
    return name if _BARE_KEY.fullmatch(name) else json.dumps(name)


def load_toml(path: Path, error: ErrorFactory) -> dict[str, Any]:
    """The file's tables; an unreadable file or bad TOML is one error with the position."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise error(str(path), "", f"cannot read the file: {reason}") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        message = str(exc)
        position = _TOML_POSITION.search(message)
        where = position.group(1) if position else ""
        problem = f"invalid TOML: {message[: position.start()] if position else message}"
        raise error(str(path), where, problem) from None


class TomlReader:
    """Value checkers for one file, knowing its name for the error messages."""

    def __init__(self, source: str, error: ErrorFactory) -> None:
        self.source = source
        self.error = error

    def fail(self, where: str, problem: str) -> NoReturn:
        raise self.error(self.source, where, problem)

    def table(self, value: object, where: str) -> dict[str, Any]:
        if not isinstance(value, dict):
            self.fail(where, f"must be a table (got {shown(value)})")
        return value

    def keys(self, table: Mapping[str, Any], allowed: tuple[str, ...], where: str) -> None:
        for name in table:
            if name not in allowed:
                place = f"{where}.{key(name)}" if where else key(name)
                self.fail(place, f"unknown key (allowed: {', '.join(allowed)})")

    def integer(self, value: object, where: str, *, minimum: int | None = None) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(where, f"must be an integer (got {shown(value)})")
        if minimum is not None and value < minimum:
            self.fail(where, f"must be at least {minimum} (got {value})")
        return value

    def number(self, value: object, where: str, *, low: float, high: float | None = None) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            self.fail(where, f"must be a number (got {shown(value)})")
        if not math.isfinite(value):  # TOML has nan and inf, which compare as no bound expects
            self.fail(where, f"must be a finite number (got {value})")
        if value < low or (high is not None and value > high):
            bounds = f"from {low:g} to {high:g}" if high is not None else f"at least {low:g}"
            self.fail(where, f"must be {bounds} (got {value:g})")
        return float(value)

    def text(self, value: object, where: str, *, pattern: re.Pattern[str] | None = None) -> str:
        if not isinstance(value, str):
            self.fail(where, f"must be a string (got {shown(value)})")
        if pattern is not None and not pattern.fullmatch(value):
            self.fail(where, f"{shown(value)} is not a valid name (letters, digits, . _ -)")
        return value

    def boolean(self, value: object, where: str) -> bool:
        if not isinstance(value, bool):
            self.fail(where, f"must be true or false (got {shown(value)})")
        return value
