"""Model options: the four option types a catalogue file can declare, and their validation.

A request's value is checked against its option's rule; every refusal is an InvalidRequest whose
message starts with the option's name and says the rule, so a client can fix the field.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from vidgate.errors import InvalidRequest

OptionValue = str | bool | int
_DECIMAL = re.compile(r"-?[0-9]{1,40}")
_SHOWN_CHARS = 40  # a refused value is echoed back, but never at length


class OptionKind(StrEnum):
    ENUM = "enum"
    BOOLEAN = "boolean"
    INTEGER = "integer"
    STRING = "string"


def shown(value: object) -> str:
    """A refused value as the client wrote it (JSON), cut short."""
    try:
        text = json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= _SHOWN_CHARS else f"{text[: _SHOWN_CHARS - 3]}..."


def as_integer(value: object) -> int | None:
    """A JSON integer, an integral JSON number, or a decimal string; never a boolean."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)  # JSON Schema counts 42.0 as an integer, so clients may send it
    if isinstance(value, str) and _DECIMAL.fullmatch(value):
        return int(value)
    return None


@dataclass(frozen=True, kw_only=True)
class OptionSpec:
    """One option of a model. Which fields apply depends on `kind`: `values` for enums,
    `min`/`max` for integers, `max_length` for strings; `default` is already validated."""

    name: str
    kind: OptionKind = OptionKind.ENUM
    values: tuple[str, ...] = ()
    min: int | None = None
    max: int | None = None
    max_length: int | None = None
    default: OptionValue | None = None

    def validate(self, value: object) -> OptionValue:
        if self.kind is OptionKind.BOOLEAN:
            if not isinstance(value, bool):
                raise self._refuse(f"must be true or false (got {shown(value)})")
            return value
        if self.kind is OptionKind.INTEGER:
            number = as_integer(value)
            if number is None or not self._in_bounds(number):
                raise self._refuse(f"must be {self.integer_rule()} (got {shown(value)})")
            return number
        if self.kind is OptionKind.STRING:
            if not isinstance(value, str):
                raise self._refuse(f"must be a string (got {shown(value)})")
            if self.max_length is not None and len(value) > self.max_length:
                raise self._refuse(f"at most {self.max_length} characters (got {len(value)})")
            return value
        # API Mall sends enum options as strings ("10"); clients often send the number 10.
        text = str(value) if isinstance(value, int) and not isinstance(value, bool) else value
        if not isinstance(text, str) or text not in self.values:
            allowed = ", ".join(json.dumps(v) for v in self.values)
            raise self._refuse(f"must be one of {allowed} (got {shown(value)})")
        return text

    def integer_rule(self) -> str:
        if self.min is not None and self.max is not None:
            return f"an integer from {self.min} to {self.max}"
        if self.min is not None:
            return f"an integer of at least {self.min}"
        if self.max is not None:
            return f"an integer of at most {self.max}"
        return "an integer"

    def _in_bounds(self, number: int) -> bool:
        return (self.min is None or number >= self.min) and (self.max is None or number <= self.max)

    def _refuse(self, rule: str) -> InvalidRequest:
        return InvalidRequest(f"{self.name}: {rule}")

    def public_view(self) -> dict[str, Any]:
        """How GET /api/v1/models shows the option (enums are strings with `values`)."""
        view: dict[str, Any]
        if self.kind is OptionKind.ENUM:
            view = {"type": "string", "values": list(self.values)}
        elif self.kind is OptionKind.INTEGER:
            view = {"type": "integer", "min": self.min, "max": self.max}
        elif self.kind is OptionKind.STRING:
            view = {"type": "string", "max_length": self.max_length}
        else:
            view = {"type": "boolean"}
        return {**view, "default": self.default}

    def json_schema(self) -> dict[str, Any]:
        """The option as JSON Schema (2020-12), as strict as the validation above or stricter,
        so any value generated from it is accepted."""
        schema: dict[str, Any]
        if self.kind is OptionKind.ENUM:
            schema = {"type": "string", "enum": list(self.values)}
        elif self.kind is OptionKind.INTEGER:
            schema = {"type": "integer"}
            if self.min is not None:
                schema["minimum"] = self.min
            if self.max is not None:
                schema["maximum"] = self.max
        elif self.kind is OptionKind.STRING:
            schema = {"type": "string"}
            if self.max_length is not None:
                schema["maxLength"] = self.max_length
        else:
            schema = {"type": "boolean"}
        if self.default is not None:
            schema["default"] = self.default
        return schema


def price_key(value: OptionValue) -> str:
    """How a value is spelled in a price table: TOML keys are strings, booleans lower-case."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
