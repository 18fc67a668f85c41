"""What the readers of our TOML files share (the catalogue, the providers file, the moderation
file): reading the file, checking its values, reading a key it names, each problem raised as
the reader's own one-line error naming the file and the field."""

from __future__ import annotations

import json
import math
import re
import tomllib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, ClassVar, NoReturn
from urllib.parse import urlsplit

from vidgate.providers.options import shown

# Model ids, queue names and provider names end up in URLs, settings lists and log lines.
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
_TOML_POSITION = re.compile(r"\s*\(at (line \d+, column \d+|end of document)\)$")

_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
NO_SECRETS = (
    "secrets never go in the file: name an environment variable with api_key_env "
    "or a file holding the key with api_key_file"
)


class ConfigFileError(ValueError):
    """A file that cannot be used, in one line: `<label> <file>: <field>: <problem>`."""

    label: ClassVar[str] = "file"

    def __init__(self, source: str, where: str, problem: str) -> None:
        self.source = source
        self.where = where
        self.problem = problem
        place = f"{source}: {where}" if where else source
        super().__init__(f"{self.label} {place}: {problem}")


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


class SecretReader(TomlReader):
    """A reader whose file names a key by `api_key_env` or `api_key_file` (never the key itself):
    it reads the key, and no message it raises shows any of it."""

    def __init__(
        self, source: str, error: ErrorFactory, *, base_dir: Path, environ: Mapping[str, str]
    ) -> None:
        super().__init__(source, error)
        self.base_dir = base_dir  # relative key files are next to the file
        self.environ = environ

    def base_url(self, value: object, where: str) -> str:
        """An operator's http(s) base URL: a host, no credentials, no query (both may carry a
        secret, so neither is echoed); the trailing / dropped."""
        if value is None:
            self.fail(where, "missing: the endpoint's URL, e.g. https://api.example.com")
        text = self.text(value, where)
        try:
            parts = urlsplit(text)
            parts.port  # noqa: B018 - raises ValueError on a port that is not a number
        except ValueError:
            self.fail(where, "is not a valid URL")
        if parts.username is not None or parts.password is not None:
            self.fail(where, f"must not hold credentials; {NO_SECRETS}")
        if parts.scheme not in ("http", "https") or not parts.hostname:
            self.fail(where, f"must be an http:// or https:// URL with a host (got {shown(text)})")
        if parts.query or parts.fragment:
            self.fail(where, "must not have a query or a fragment")
        return text.rstrip("/")

    def api_key(self, table: Mapping[str, Any], where: str) -> str:
        has_env, has_file = "api_key_env" in table, "api_key_file" in table
        if has_env and has_file:
            self.fail(f"{where}.api_key_file", "give either api_key_env or api_key_file, not both")
        if has_env:
            return self.key_from_env(table["api_key_env"], f"{where}.api_key_env")
        if has_file:
            return self.key_from_file(table["api_key_file"], f"{where}.api_key_file")
        self.fail(
            f"{where}.api_key_env",
            "missing: name the environment variable holding the key (or give api_key_file, "
            "a file holding it); the key itself never goes in this file",
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
        # It becomes an HTTP header value; say what is wrong without showing any of it.
        secret = secret.strip()
        if not secret:
            self.fail(where, f"{origin} is empty")
        if any(char.isspace() or not char.isprintable() for char in secret):
            self.fail(where, f"{origin} must hold the key alone, on one line")
        return secret
