"""The model catalogue: which models exist, what they accept, what they cost, where they run."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vidgate.errors import InvalidRequest

BUILTIN_CATALOGUE = Path(__file__).with_name("catalogue.toml")
DEFAULT_CLIP_SECONDS = 10
# Short side in pixels for each resolution name; the aspect ratio gives the long side.
RESOLUTION_SHORT_SIDE = {"240p": 240, "360p": 360, "480p": 480, "720p": 720, "1080p": 1080}
DEFAULT_RESOLUTION = "720p"


@dataclass(frozen=True, kw_only=True)
class OptionSpec:
    name: str
    values: tuple[str, ...] = ()  # empty for booleans
    kind: str = "enum"  # "enum" | "boolean"
    default: str | bool | None = None

    def validate(self, value: Any) -> str | bool:
        if self.kind == "boolean":
            if not isinstance(value, bool):
                raise InvalidRequest(f"{self.name}: must be true or false")
            return value
        # API Mall sends enum options as strings; accept integers that spell an allowed value.
        text = str(value) if isinstance(value, int) and not isinstance(value, bool) else value
        if text not in self.values:
            allowed = ", ".join(f'"{v}"' for v in self.values)
            raise InvalidRequest(f"{self.name}: must be one of {allowed} (got {value!r})")
        return str(text)


@dataclass(frozen=True, kw_only=True)
class PriceRule:
    base: int = 0
    by_option: dict[str, dict[str, int]] = field(default_factory=dict)
    per_second: int = 0

    def credits(self, options: dict[str, str | bool], *, seconds: int) -> int:
        total = self.base + self.per_second * seconds
        for option, table in self.by_option.items():
            value = options.get(option)
            if value is not None:
                total += table.get(str(value), 0)
        return total


@dataclass(frozen=True, kw_only=True)
class ChannelSpec:
    provider: str
    upstream_model: str | None = None
    only_without_upstream: bool = False


@dataclass(frozen=True, kw_only=True)
class ModelSpec:
    id: str
    description: str
    types: tuple[str, ...]
    options: dict[str, OptionSpec]
    price: PriceRule
    channels: tuple[ChannelSpec, ...]
    time_limit_seconds: int

    def normalize_options(self, given: dict[str, Any]) -> dict[str, str | bool]:
        """Validated options with defaults filled in; unknown options are an error."""
        unknown = sorted(set(given) - set(self.options))
        if unknown:
            allowed = ", ".join(sorted(self.options)) or "none"
            raise InvalidRequest(
                f"{unknown[0]}: not an option of model {self.id} (allowed: {allowed})"
            )
        result: dict[str, str | bool] = {}
        for name, spec in self.options.items():
            if given.get(name) is not None:
                result[name] = spec.validate(given[name])
            elif spec.default is not None:
                result[name] = spec.default
        return result

    def clip_seconds(self, options: dict[str, str | bool]) -> int:
        for name in ("duration", "n_frames"):  # Sora's n_frames is the clip length in seconds
            value = options.get(name)
            if isinstance(value, str):
                return int(value)
        return DEFAULT_CLIP_SECONDS

    def credits(self, options: dict[str, str | bool]) -> int:
        return self.price.credits(options, seconds=self.clip_seconds(options))

    def public_view(self) -> dict[str, Any]:
        default_options = self.normalize_options({})
        return {
            "id": self.id,
            "description": self.description,
            "types": list(self.types),
            "options": {
                name: (
                    {"type": "boolean", "default": spec.default}
                    if spec.kind == "boolean"
                    else {"type": "string", "values": list(spec.values), "default": spec.default}
                )
                for name, spec in self.options.items()
            },
            "price": {
                "base": self.price.base,
                "by_option": self.price.by_option,
                "per_second": self.price.per_second,
                "default_credits": self.credits(default_options),
            },
            "time_limit_seconds": self.time_limit_seconds,
        }


def frame_size(*, aspect_ratio: str, resolution: str) -> tuple[int, int]:
    short = RESOLUTION_SHORT_SIDE[resolution]
    long = (short * 16 // 9 + 1) // 2 * 2  # keep it even for H.264
    if aspect_ratio == "portrait":
        return short, long
    if aspect_ratio == "square":
        return short, short
    return long, short


@dataclass(frozen=True)
class Catalogue:
    models: dict[str, ModelSpec]

    def get(self, model_id: str) -> ModelSpec:
        model = self.models.get(model_id)
        if model is None:
            allowed = ", ".join(sorted(self.models))
            raise InvalidRequest(f"model: unknown model {model_id!r} (available: {allowed})")
        return model

    @classmethod
    def load(cls, path: Path | None = None) -> Catalogue:
        source = path or BUILTIN_CATALOGUE
        try:
            raw = tomllib.loads(source.read_text())
            return cls.from_dict(raw)
        except (OSError, tomllib.TOMLDecodeError, KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"invalid model catalogue {source}: {exc}") from exc

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Catalogue:
        models = {}
        for model_id, entry in raw["models"].items():
            options = {}
            for name, option in entry.get("options", {}).items():
                kind = option.get("type", "enum")
                if kind not in ("enum", "boolean"):
                    raise ValueError(f"{model_id}.{name}: unknown option type {kind!r}")
                values = tuple(str(v) for v in option.get("values", ()))
                if kind == "enum" and not values:
                    raise ValueError(f"{model_id}.{name}: an enum option needs values")
                default = option.get("default")
                if kind == "enum" and default is not None and default not in values:
                    raise ValueError(f"{model_id}.{name}: default {default!r} is not allowed")
                options[name] = OptionSpec(name=name, values=values, kind=kind, default=default)
            price = entry.get("price", {})
            channels = tuple(ChannelSpec(**channel) for channel in entry.get("channels", ()))
            if not channels:
                raise ValueError(f"{model_id}: at least one channel is required")
            models[model_id] = ModelSpec(
                id=model_id,
                description=entry.get("description", ""),
                types=tuple(entry.get("types", ["text-to-video"])),
                options=options,
                price=PriceRule(
                    base=int(price.get("base", 0)),
                    by_option={
                        k: {str(v): int(c) for v, c in t.items()}
                        for k, t in price.get("by_option", {}).items()
                    },
                    per_second=int(price.get("per_second", 0)),
                ),
                channels=channels,
                time_limit_seconds=int(entry.get("time_limit_seconds", 900)),
            )
        return cls(models)
