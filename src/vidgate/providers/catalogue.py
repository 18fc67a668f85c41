"""The model catalogue: which models exist, what they accept, what they cost, where they run.

Everything about a model is data in a TOML file (catalogue.toml, or VIDGATE_CATALOGUE_PATH);
catalogue_file.py reads and checks it, this module holds what it becomes.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vidgate.errors import InvalidRequest
from vidgate.providers.options import OptionKind, OptionSpec, OptionValue, as_integer, price_key
from vidgate.toml_files import ConfigFileError
from vidgate.worker.retry import RetryPolicy

__all__ = [
    "BUILTIN_CATALOGUE",
    "DEFAULT_RESOLUTION",
    "Catalogue",
    "CatalogueError",
    "ChannelSpec",
    "ModelSpec",
    "OptionKind",
    "OptionSpec",
    "OptionValue",
    "PriceRule",
    "VideoShape",
    "frame_size",
    "parse_size",
]

BUILTIN_CATALOGUE = Path(__file__).with_name("catalogue.toml")
DEFAULT_CLIP_SECONDS = 10
DEFAULT_QUEUE = "default"
# Short side in pixels for each resolution name; the aspect ratio gives the long side.
RESOLUTION_SHORT_SIDE = {"240p": 240, "360p": 360, "480p": 480, "720p": 720, "1080p": 1080}
DEFAULT_RESOLUTION = "720p"
# Aspect ratio names (Sora's words and the usual ratios) and the frame orientation each means.
ASPECT_RATIOS = {
    "landscape": "landscape",
    "16:9": "landscape",
    "portrait": "portrait",
    "9:16": "portrait",
    "square": "square",
    "1:1": "square",
}
DEFAULT_ASPECT_RATIO = "landscape"
# Options that give the clip's length in seconds, in order of precedence (Sora's n_frames is
# the clip length in seconds, not a frame count; `seconds` is the OpenAI-style surface's word).
SECONDS_OPTIONS = ("duration", "n_frames", "seconds")
# An option that gives the frame size itself, as "WIDTHxHEIGHT" (the OpenAI-style `size`); it
# wins over aspect_ratio and resolution.
SIZE_OPTION = "size"
_SIZE = re.compile(r"([1-9][0-9]{0,4})x([1-9][0-9]{0,4})")


class CatalogueError(ConfigFileError):
    """A catalogue file that cannot be used: names the file and the field, in one line."""

    label = "catalogue"


@dataclass(frozen=True, kw_only=True)
class VideoShape:
    """What the provider is asked to render: frame size in pixels and clip length."""

    width: int
    height: int
    seconds: int


@dataclass(frozen=True, kw_only=True)
class PriceRule:
    base: int = 0
    by_option: dict[str, dict[str, int]] = field(default_factory=dict)
    per_second: int = 0

    def credits(self, options: Mapping[str, OptionValue], *, seconds: int) -> int:
        total = self.base + self.per_second * seconds
        for option, table in self.by_option.items():
            value = options.get(option)
            if value is not None:
                total += table.get(price_key(value), 0)
        return total


@dataclass(frozen=True, kw_only=True)
class ChannelSpec:
    """One way to run a model: a provider adapter, on a worker queue, with its retry policy
    (None: the worker's default). Channels are tried as DNS SRV records are (RFC 2782): lowest
    `priority` first; among equal priorities, at random in proportion to `weight`."""

    provider: str
    priority: int = 0
    weight: int = 1
    # A task cancelled once this channel accepted it: refunded (True), or not, when the
    # upstream charges for what it started.
    refund_on_cancel: bool = True
    upstream_model: str | None = None
    only_without_upstream: bool = False
    queue: str = DEFAULT_QUEUE
    retry: RetryPolicy | None = None


@dataclass(frozen=True, kw_only=True)
class ModelSpec:
    id: str
    description: str
    types: tuple[str, ...]
    options: dict[str, OptionSpec]
    price: PriceRule
    channels: tuple[ChannelSpec, ...]
    time_limit_seconds: int
    # The shape of a clip when the model has no option for it.
    default_aspect_ratio: str = DEFAULT_ASPECT_RATIO
    default_resolution: str = DEFAULT_RESOLUTION
    default_seconds: int = DEFAULT_CLIP_SECONDS

    @property
    def queue(self) -> str:
        """The worker queue that runs this model (the loader made its channels agree)."""
        return self.channels[0].queue if self.channels else DEFAULT_QUEUE

    def normalize_options(self, given: Mapping[str, Any]) -> dict[str, OptionValue]:
        """Validated options with defaults filled in; unknown options are an error."""
        unknown = sorted(name for name in given if name not in self.options)
        if unknown:
            allowed = ", ".join(sorted(self.options)) or "none"
            raise InvalidRequest(
                f"{unknown[0]}: not an option of model {self.id} (allowed: {allowed})"
            )
        result: dict[str, OptionValue] = {}
        for name, spec in self.options.items():
            if given.get(name) is not None:
                result[name] = spec.validate(given[name])
            elif spec.default is not None:
                result[name] = spec.default
        return result

    def clip_seconds(self, options: Mapping[str, object]) -> int:
        for name in SECONDS_OPTIONS:
            seconds = as_integer(options.get(name))
            if seconds is not None:
                return seconds
        return self.default_seconds

    def shape(self, options: Mapping[str, object]) -> VideoShape:
        """The clip the provider renders for these (normalized) options."""
        size = options.get(SIZE_OPTION)
        given = parse_size(size) if isinstance(size, str) else None
        if given is not None:
            width, height = given
            return VideoShape(width=width, height=height, seconds=self.clip_seconds(options))
        aspect = options.get("aspect_ratio")
        resolution = options.get("resolution")
        width, height = frame_size(
            aspect_ratio=aspect if isinstance(aspect, str) else self.default_aspect_ratio,
            resolution=resolution if isinstance(resolution, str) else self.default_resolution,
        )
        return VideoShape(width=width, height=height, seconds=self.clip_seconds(options))

    def credits(self, options: Mapping[str, OptionValue]) -> int:
        return self.price.credits(options, seconds=self.clip_seconds(options))

    def public_view(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "description": self.description,
            "types": list(self.types),
            "options": {name: spec.public_view() for name, spec in self.options.items()},
            "price": {
                "base": self.price.base,
                "by_option": self.price.by_option,
                "per_second": self.price.per_second,
                "default_credits": self.credits(self.normalize_options({})),
            },
            "time_limit_seconds": self.time_limit_seconds,
            "queue": self.queue,
        }


def parse_size(text: str) -> tuple[int, int] | None:
    """(width, height) of a "WIDTHxHEIGHT" size, or None if it is not one."""
    match = _SIZE.fullmatch(text)
    return (int(match.group(1)), int(match.group(2))) if match else None


def frame_size(*, aspect_ratio: str, resolution: str) -> tuple[int, int]:
    short = RESOLUTION_SHORT_SIDE[resolution]
    long = (short * 16 // 9 + 1) // 2 * 2  # keep it even for H.264
    orientation = ASPECT_RATIOS.get(aspect_ratio, "landscape")
    if orientation == "portrait":
        return short, long
    if orientation == "square":
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

    @property
    def queues(self) -> tuple[str, ...]:
        return tuple(sorted({model.queue for model in self.models.values()}))

    @classmethod
    def load(cls, path: Path | None = None) -> Catalogue:
        """The catalogue in `path` (default: the built-in one); CatalogueError if unusable."""
        from vidgate.providers.catalogue_file import read_catalogue  # it imports this module

        return cls(read_catalogue(path or BUILTIN_CATALOGUE))

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any], *, source: str = "<dict>") -> Catalogue:
        from vidgate.providers.catalogue_file import parse_models

        return cls(parse_models(raw, source=source))
