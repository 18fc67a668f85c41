"""Reading a catalogue file: every table, key and value is checked, and the first problem is a
CatalogueError naming the file and the field (`models.wan.options.seed.max`), so an operator
can fix a broken file from one line instead of a traceback at the first request."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from vidgate.errors import InvalidRequest
from vidgate.providers.catalogue import (
    ASPECT_RATIOS,
    DEFAULT_ASPECT_RATIO,
    DEFAULT_CLIP_SECONDS,
    DEFAULT_QUEUE,
    DEFAULT_RESOLUTION,
    RESOLUTION_SHORT_SIDE,
    SECONDS_OPTIONS,
    SIZE_OPTION,
    CatalogueError,
    ChannelSpec,
    ModelSpec,
    PriceRule,
    parse_size,
)
from vidgate.providers.options import OptionKind, OptionSpec, OptionValue, price_key, shown
from vidgate.toml_files import NAME, TomlReader, key, load_toml
from vidgate.worker.retry import RetryPolicy

TASK_TYPES = ("text-to-video", "image-to-video", "video-to-video")
# Request fields the API reads for itself: an option with one of these names could never arrive.
RESERVED_NAMES = frozenset(
    {
        "model",
        "type",
        "prompt",
        "image_urls",
        "input_image",
        "image_url",
        "video_url",
        "audio_url",
        "end_image_url",
        "callBackUrl",
        "callback_url",
        "input",
    }
)
MODEL_KEYS = (
    "description",
    "types",
    "time_limit_seconds",
    "options",
    "price",
    "channels",
    "default_aspect_ratio",
    "default_resolution",
    "default_seconds",
)
OPTION_KEYS = {
    OptionKind.ENUM: ("type", "values", "default"),
    OptionKind.BOOLEAN: ("type", "default"),
    OptionKind.INTEGER: ("type", "min", "max", "default"),
    OptionKind.STRING: ("type", "max_length", "default"),
}
CHANNEL_KEYS = (
    "provider",
    "upstream_model",
    "only_without_upstream",
    "queue",
    "retry",
    "priority",
    "weight",
    "refund_on_cancel",
)
RETRY_KEYS = tuple(f.name for f in dataclasses.fields(RetryPolicy))
PRICE_KEYS = ("base", "by_option", "per_second")
_OPTION_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
MAX_FRAME_SIDE = 4096


def read_catalogue(path: Path) -> dict[str, ModelSpec]:
    return parse_models(load_toml(path, CatalogueError), source=str(path))


def parse_models(raw: Mapping[str, Any], *, source: str) -> dict[str, ModelSpec]:
    return _Reader(source).catalogue(raw)


class _Reader(TomlReader):
    """Walks one catalogue, knowing the file's name for its error messages."""

    def __init__(self, source: str) -> None:
        super().__init__(source, CatalogueError)

    # -- tables ---------------------------------------------------------------------------

    def catalogue(self, raw: Mapping[str, Any]) -> dict[str, ModelSpec]:
        self.keys(raw, ("models",), "")
        if "models" not in raw:
            self.fail("models", "missing: a catalogue needs a [models.<id>] table")
        entries = self.table(raw["models"], "models")
        if not entries:
            self.fail("models", "at least one model is required")
        return {
            model_id: self.model(model_id, entry, f"models.{key(model_id)}")
            for model_id, entry in entries.items()
        }

    def model(self, model_id: str, entry: object, where: str) -> ModelSpec:
        if not NAME.fullmatch(model_id):
            self.fail(where, "a model id is 1-64 letters, digits, '.', '_' or '-'")
        table = self.table(entry, where)
        self.keys(table, MODEL_KEYS, where)
        options = {
            name: self.option(name, spec, f"{where}.options.{key(name)}")
            for name, spec in self.table(table.get("options", {}), f"{where}.options").items()
        }
        self.shape_options(options, f"{where}.options")
        types = table.get("types", ["text-to-video"])
        if not isinstance(types, list) or not types:
            self.fail(f"{where}.types", f"must be a non-empty list (got {shown(types)})")
        for index, kind in enumerate(types):
            if kind not in TASK_TYPES:
                self.fail(f"{where}.types[{index}]", f"must be one of {', '.join(TASK_TYPES)}")
        channels = self.channels(table.get("channels"), f"{where}.channels")
        aspect = table.get("default_aspect_ratio", DEFAULT_ASPECT_RATIO)
        if aspect not in ASPECT_RATIOS:
            known = ", ".join(ASPECT_RATIOS)
            self.fail(f"{where}.default_aspect_ratio", f"must be one of {known}")
        resolution = table.get("default_resolution", DEFAULT_RESOLUTION)
        if resolution not in RESOLUTION_SHORT_SIDE:
            known = ", ".join(RESOLUTION_SHORT_SIDE)
            self.fail(f"{where}.default_resolution", f"must be one of {known}")
        return ModelSpec(
            id=model_id,
            description=self.text(table.get("description", ""), f"{where}.description"),
            types=tuple(types),
            options=options,
            price=self.price(table.get("price", {}), options, f"{where}.price"),
            channels=channels,
            time_limit_seconds=self.integer(
                table.get("time_limit_seconds", 900), f"{where}.time_limit_seconds", minimum=1
            ),
            default_aspect_ratio=aspect,
            default_resolution=resolution,
            default_seconds=self.integer(
                table.get("default_seconds", DEFAULT_CLIP_SECONDS),
                f"{where}.default_seconds",
                minimum=1,
            ),
        )

    def option(self, name: str, raw: object, where: str) -> OptionSpec:
        if not _OPTION_NAME.fullmatch(name):
            self.fail(where, "an option name is a letter or '_' then letters, digits or '_'")
        if name in RESERVED_NAMES:
            self.fail(where, "is a request field of its own, so it cannot be an option")
        table = self.table(raw, where)
        kind_name = table.get("type", OptionKind.ENUM.value)
        if kind_name not in tuple(OptionKind):
            known = ", ".join(sorted(OptionKind))
            self.fail(f"{where}.type", f"unknown option type {shown(kind_name)} (known: {known})")
        kind = OptionKind(kind_name)
        self.keys(table, OPTION_KEYS[kind], where)
        spec = OptionSpec(name=name, kind=kind)
        if kind is OptionKind.ENUM:
            spec = dataclasses.replace(spec, values=self.enum_values(table.get("values"), where))
        elif kind is OptionKind.INTEGER:
            low, high = (
                None if table.get(bound) is None else self.integer(table[bound], f"{where}.{bound}")
                for bound in ("min", "max")
            )
            if low is not None and high is not None and low > high:
                self.fail(f"{where}.max", f"must be at least min ({low}) (got {high})")
            spec = dataclasses.replace(spec, min=low, max=high)
        elif kind is OptionKind.STRING and "max_length" in table:
            length = self.integer(table["max_length"], f"{where}.max_length", minimum=1)
            spec = dataclasses.replace(spec, max_length=length)
        if "default" not in table:
            return spec
        try:
            default = spec.validate(table["default"])
        except InvalidRequest as error:
            self.fail(f"{where}.default", error.message.removeprefix(f"{name}: "))
        return dataclasses.replace(spec, default=default)

    def enum_values(self, values: object, where: str) -> tuple[str, ...]:
        if not isinstance(values, list) or not values:
            self.fail(f"{where}.values", "an enum option needs a non-empty list of values")
        texts: list[str] = []
        for index, value in enumerate(values):
            if isinstance(value, bool) or not isinstance(value, str | int):
                self.fail(f"{where}.values[{index}]", f"must be a string (got {shown(value)})")
            if str(value) in texts:
                self.fail(f"{where}.values[{index}]", f"{shown(str(value))} is listed twice")
            texts.append(str(value))
        return tuple(texts)

    def shape_options(self, options: dict[str, OptionSpec], where: str) -> None:
        """Options that size the clip must name sizes the renderer knows, so a task's shape can
        always be computed."""
        checks: dict[str, Mapping[str, object]] = {
            "aspect_ratio": ASPECT_RATIOS,
            "resolution": RESOLUTION_SHORT_SIDE,
        }
        for name, known in checks.items():
            spec = options.get(name)
            if spec is None:
                continue
            if spec.kind is not OptionKind.ENUM:
                self.fail(f"{where}.{name}", f"{name} must be an enum option")
            for index, value in enumerate(spec.values):
                if value not in known:
                    self.fail(
                        f"{where}.{name}.values[{index}]",
                        f"{shown(value)} is not one of {', '.join(known)}",
                    )
        self.size_option(options.get(SIZE_OPTION), f"{where}.{SIZE_OPTION}")
        for name in SECONDS_OPTIONS:
            spec = options.get(name)
            if spec is None:
                continue
            if spec.kind is OptionKind.INTEGER:
                if spec.min is None or spec.min < 1:
                    self.fail(f"{where}.{name}.min", "clip seconds need min = 1 or more")
            elif spec.kind is OptionKind.ENUM:
                for index, value in enumerate(spec.values):
                    if not (value.isdecimal() and value.isascii() and int(value) >= 1):
                        self.fail(
                            f"{where}.{name}.values[{index}]",
                            f"clip seconds must be whole numbers of 1 or more (got {shown(value)})",
                        )
            else:
                self.fail(f"{where}.{name}", f"{name} must be an enum or integer option")

    def size_option(self, spec: OptionSpec | None, where: str) -> None:
        """A `size` option names frame sizes, "WIDTHxHEIGHT", that H.264 can encode (even
        sides, at most MAX_FRAME_SIDE)."""
        if spec is None:
            return
        if spec.kind is not OptionKind.ENUM:
            self.fail(where, f"{SIZE_OPTION} must be an enum option")
        for index, value in enumerate(spec.values):
            size = parse_size(value)
            if size is None or any(side % 2 or side > MAX_FRAME_SIDE for side in size):
                self.fail(
                    f"{where}.values[{index}]",
                    f"a size is WIDTHxHEIGHT with even sides of at most {MAX_FRAME_SIDE} "
                    f"(got {shown(value)})",
                )

    def channels(self, raw: object, where: str) -> tuple[ChannelSpec, ...]:
        if raw is None:
            self.fail(where, "missing: at least one channel is required")
        if not isinstance(raw, list) or not raw:
            self.fail(where, "at least one channel is required")
        channels = tuple(
            self.channel(entry, f"{where}[{i}]", position=i) for i, entry in enumerate(raw)
        )
        for index, channel in enumerate(channels):
            if channel.queue != channels[0].queue:
                self.fail(
                    f"{where}[{index}].queue",
                    f"{shown(channel.queue)} differs from {shown(channels[0].queue)} of "
                    f"{where.rsplit('.', 1)[-1]}[0]: a model's channels share one queue",
                )
        return channels

    def channel(self, raw: object, where: str, *, position: int) -> ChannelSpec:
        table = self.table(raw, where)
        self.keys(table, CHANNEL_KEYS, where)
        if "provider" not in table:
            self.fail(f"{where}.provider", "missing: name the provider adapter")
        upstream = table.get("upstream_model")
        return ChannelSpec(
            provider=self.text(table["provider"], f"{where}.provider"),
            upstream_model=None
            if upstream is None
            else self.text(upstream, f"{where}.upstream_model"),
            only_without_upstream=self.boolean(
                table.get("only_without_upstream", False), f"{where}.only_without_upstream"
            ),
            queue=self.text(table.get("queue", DEFAULT_QUEUE), f"{where}.queue", pattern=NAME),
            retry=None if "retry" not in table else self.retry(table["retry"], f"{where}.retry"),
            # Unset, a channel's place in the list is its priority: listed order is preference.
            priority=self.integer(table.get("priority", position), f"{where}.priority", minimum=0),
            weight=self.integer(table.get("weight", 1), f"{where}.weight", minimum=1),
            refund_on_cancel=self.boolean(
                table.get("refund_on_cancel", True), f"{where}.refund_on_cancel"
            ),
        )

    def retry(self, raw: object, where: str) -> RetryPolicy:
        table = self.table(raw, where)
        self.keys(table, RETRY_KEYS, where)
        default = RetryPolicy()
        base_s = self.number(table.get("base_s", default.base_s), f"{where}.base_s", low=0.001)
        return RetryPolicy(
            base_s=base_s,
            factor=self.number(table.get("factor", default.factor), f"{where}.factor", low=1),
            max_delay_s=self.number(
                table.get("max_delay_s", default.max_delay_s), f"{where}.max_delay_s", low=base_s
            ),
            jitter=self.number(
                table.get("jitter", default.jitter), f"{where}.jitter", low=0, high=1
            ),
            max_attempts=self.integer(
                table.get("max_attempts", default.max_attempts), f"{where}.max_attempts", minimum=1
            ),
        )

    def price(self, raw: object, options: dict[str, OptionSpec], where: str) -> PriceRule:
        table = self.table(raw, where)
        self.keys(table, PRICE_KEYS, where)
        by_option: dict[str, dict[str, int]] = {}
        tables = self.table(table.get("by_option", {}), f"{where}.by_option")
        for name, costs in tables.items():
            place = f"{where}.by_option.{key(name)}"
            spec = options.get(name)
            if spec is None:
                allowed = ", ".join(sorted(options)) or "none"
                self.fail(place, f"not an option of this model (options: {allowed})")
            by_option[name] = {
                self.price_value(spec, value, f"{place}.{key(value)}"): self.integer(
                    cost, f"{place}.{key(value)}", minimum=0
                )
                for value, cost in self.table(costs, place).items()
            }
        return PriceRule(
            base=self.integer(table.get("base", 0), f"{where}.base", minimum=0),
            by_option=by_option,
            per_second=self.integer(table.get("per_second", 0), f"{where}.per_second", minimum=0),
        )

    def price_value(self, spec: OptionSpec, value: str, where: str) -> str:
        """A price table's key, checked against its option and spelled as credits() looks it up."""
        parsed: OptionValue | None = {"true": True, "false": False}.get(value)
        if spec.kind is not OptionKind.BOOLEAN:
            try:
                parsed = spec.validate(value)
            except InvalidRequest as error:
                self.fail(where, f"not a value of the option: {error.message}")
        if parsed is None:
            self.fail(where, "a boolean option is priced with the keys true and false")
        return price_key(parsed)
