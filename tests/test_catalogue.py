"""The model catalogue: option types and their messages, prices, clip shapes, queues, and the
one-line errors of a broken catalogue file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from vidgate.errors import InvalidRequest
from vidgate.providers.catalogue import (
    Catalogue,
    CatalogueError,
    ModelSpec,
    VideoShape,
    frame_size,
)
from vidgate.worker.retry import RetryPolicy

SAMPLE_CHANNEL = [{"provider": "sample"}]


@pytest.fixture(scope="module")
def catalogue() -> Catalogue:
    return Catalogue.load()


def one_model(**entry: Any) -> ModelSpec:
    return Catalogue.from_dict({"models": {"m": {"channels": SAMPLE_CHANNEL, **entry}}}).get("m")


@pytest.fixture(scope="module")
def wan() -> ModelSpec:
    return one_model(
        options={
            "seed": {"type": "integer", "min": 0, "max": 2**32 - 1},
            "steps": {"type": "integer", "min": 1, "default": 30},
            "negative_prompt": {"type": "string", "max_length": 500},
            "style": {"values": ["film", "anime"]},
            "enhance": {"type": "boolean", "default": True},
        },
        price={"base": 5, "by_option": {"enhance": {"true": 2, "false": 0}}},
    )


def refusal(model: ModelSpec, options: dict[str, Any]) -> str:
    with pytest.raises(InvalidRequest) as raised:
        model.normalize_options(options)
    return raised.value.message


# -- the built-in catalogue ---------------------------------------------------------------


def test_default_models(catalogue: Catalogue) -> None:
    assert {"sora2", "sora2-stable", "sora2-pro", "sample"} <= set(catalogue.models)


def test_seed_price_sora2_ten_frames_costs_thirty(catalogue: Catalogue) -> None:
    model = catalogue.get("sora2")
    options = model.normalize_options(
        {"aspect_ratio": "landscape", "n_frames": "10", "remove_watermark": False}
    )
    assert model.credits(options) == 30
    assert model.credits(model.normalize_options({"n_frames": "15"})) == 45


def test_price_rules_add_up(catalogue: Catalogue) -> None:
    pro = catalogue.get("sora2-pro")
    assert pro.credits(pro.normalize_options({})) == 90
    assert pro.credits(pro.normalize_options({"n_frames": "15", "resolution": "1080p"})) == 225


def test_unknown_model_lists_the_available_ones(catalogue: Catalogue) -> None:
    with pytest.raises(InvalidRequest) as raised:
        catalogue.get("sora3")
    assert raised.value.message.startswith("model: unknown model 'sora3' (available: ")
    assert "sora2" in raised.value.message
    assert "sample" in raised.value.message


def test_defaults_fill_in(catalogue: Catalogue) -> None:
    assert catalogue.get("sora2").normalize_options({}) == {
        "aspect_ratio": "landscape",
        "n_frames": "10",
        "remove_watermark": False,
    }


def test_every_built_in_model_runs_on_the_default_queue(catalogue: Catalogue) -> None:
    assert {model.queue for model in catalogue.models.values()} == {"default"}
    assert catalogue.queues == ("default",)


# -- option types -------------------------------------------------------------------------


def test_bad_enum_value_lists_allowed_values(catalogue: Catalogue) -> None:
    message = refusal(catalogue.get("sora2"), {"n_frames": "12"})
    assert message == 'n_frames: must be one of "10", "15" (got "12")'


def test_integers_spelling_an_allowed_value_are_accepted(catalogue: Catalogue) -> None:
    assert catalogue.get("sora2").normalize_options({"n_frames": 15})["n_frames"] == "15"
    assert refusal(catalogue.get("sora2"), {"n_frames": True}).endswith("(got true)")


def test_unknown_option_lists_the_model_options(catalogue: Catalogue) -> None:
    assert refusal(catalogue.get("sora2"), {"resolution": "720p"}) == (
        "resolution: not an option of model sora2 "
        "(allowed: aspect_ratio, n_frames, remove_watermark)"
    )


def test_boolean_option_must_be_boolean(catalogue: Catalogue) -> None:
    message = refusal(catalogue.get("sora2"), {"remove_watermark": "yes"})
    assert message == 'remove_watermark: must be true or false (got "yes")'


@pytest.mark.parametrize(("given", "value"), [(42, 42), ("42", 42), (0, 0), (42.0, 42)])
def test_integer_option_accepts_numbers_and_decimal_strings(
    wan: ModelSpec, given: object, value: int
) -> None:
    options = wan.normalize_options({"seed": given})
    assert options["seed"] == value
    assert type(options["seed"]) is int


@pytest.mark.parametrize(
    ("given", "message"),
    [
        (-1, "seed: must be an integer from 0 to 4294967295 (got -1)"),
        (2**32, "seed: must be an integer from 0 to 4294967295 (got 4294967296)"),
        ("x", 'seed: must be an integer from 0 to 4294967295 (got "x")'),
        (True, "seed: must be an integer from 0 to 4294967295 (got true)"),
        (1.5, "seed: must be an integer from 0 to 4294967295 (got 1.5)"),
        (" 7", 'seed: must be an integer from 0 to 4294967295 (got " 7")'),
    ],
)
def test_integer_option_refusals_say_the_range(wan: ModelSpec, given: object, message: str) -> None:
    assert refusal(wan, {"seed": given}) == message


def test_one_sided_integer_bound_is_said_as_such(wan: ModelSpec) -> None:
    assert refusal(wan, {"steps": 0}) == "steps: must be an integer of at least 1 (got 0)"
    assert wan.normalize_options({})["steps"] == 30


def test_string_option_has_a_maximum_length(wan: ModelSpec) -> None:
    assert wan.normalize_options({"negative_prompt": "blur"})["negative_prompt"] == "blur"
    assert refusal(wan, {"negative_prompt": "x" * 812}) == (
        "negative_prompt: at most 500 characters (got 812)"
    )
    assert refusal(wan, {"negative_prompt": 5}) == "negative_prompt: must be a string (got 5)"


def test_long_refused_values_are_cut_short(wan: ModelSpec) -> None:
    message = refusal(wan, {"seed": "y" * 5000})
    assert message.startswith("seed: must be an integer")
    assert len(message) < 120


def test_null_means_not_given_and_defaults_are_typed(wan: ModelSpec) -> None:
    assert wan.normalize_options({"seed": None, "style": None}) == {"steps": 30, "enhance": True}


def test_boolean_options_are_priced_by_true_and_false(wan: ModelSpec) -> None:
    assert wan.credits(wan.normalize_options({})) == 7
    assert wan.credits(wan.normalize_options({"enhance": False})) == 5


def test_public_view_lists_types_bounds_and_queue(wan: ModelSpec) -> None:
    view = wan.public_view()
    assert view["options"] == {
        "seed": {"type": "integer", "min": 0, "max": 4294967295, "default": None},
        "steps": {"type": "integer", "min": 1, "max": None, "default": 30},
        "negative_prompt": {"type": "string", "max_length": 500, "default": None},
        "style": {"type": "string", "values": ["film", "anime"], "default": None},
        "enhance": {"type": "boolean", "default": True},
    }
    assert view["queue"] == "default"
    assert view["price"]["default_credits"] == 7


# -- clip shape ---------------------------------------------------------------------------


def test_clip_seconds_prefers_duration(catalogue: Catalogue) -> None:
    sample = catalogue.get("sample")
    assert sample.clip_seconds(sample.normalize_options({})) == 10
    assert sample.clip_seconds(sample.normalize_options({"duration": "2"})) == 2
    assert sample.clip_seconds(sample.normalize_options({"n_frames": "15"})) == 15


def test_shape_from_options(catalogue: Catalogue) -> None:
    sample = catalogue.get("sample")
    options = sample.normalize_options({"aspect_ratio": "portrait", "duration": 3})
    assert sample.shape(options) == VideoShape(width=480, height=854, seconds=3)
    sora2 = catalogue.get("sora2")  # no resolution option: 720p
    assert sora2.shape(sora2.normalize_options({})) == VideoShape(
        width=1280, height=720, seconds=10
    )


def test_shape_from_model_defaults_and_integer_duration() -> None:
    model = one_model(
        default_resolution="240p",
        default_aspect_ratio="1:1",
        default_seconds=4,
        options={"duration": {"type": "integer", "min": 1, "max": 8}},
    )
    assert model.shape(model.normalize_options({})) == VideoShape(width=240, height=240, seconds=4)
    assert model.shape(model.normalize_options({"duration": "2"})).seconds == 2


@pytest.mark.parametrize(
    ("aspect", "resolution", "size"),
    [
        ("landscape", "720p", (1280, 720)),
        ("portrait", "720p", (720, 1280)),
        ("9:16", "720p", (720, 1280)),
        ("square", "480p", (480, 480)),
        ("landscape", "240p", (426, 240)),
    ],
)
def test_frame_size(aspect: str, resolution: str, size: tuple[int, int]) -> None:
    assert frame_size(aspect_ratio=aspect, resolution=resolution) == size


# -- channels and queues ------------------------------------------------------------------


def test_channel_queue_and_retry_policy() -> None:
    model = one_model(
        channels=[
            {
                "provider": "wan-local",
                "queue": "gpu",
                "retry": {"base_s": 1, "factor": 3.0, "max_attempts": 4},
            },
            {"provider": "sample", "queue": "gpu"},
        ]
    )
    assert model.queue == "gpu"
    assert model.channels[0].retry == RetryPolicy(base_s=1.0, factor=3.0, max_attempts=4)
    assert model.channels[1].retry is None


def test_custom_catalogue_file(tmp_path: Path) -> None:
    path = tmp_path / "models.toml"
    path.write_text(
        """
[models.tiny]
description = "test"
options.duration = { values = ["1", "2"], default = "1" }
options.seed = { type = "integer", min = 0, default = 7 }
price = { base = 2, per_second = 3 }
channels = [{ provider = "sample" }]
"""
    )
    tiny = Catalogue.load(path).get("tiny")
    assert tiny.credits(tiny.normalize_options({"duration": "2"})) == 8
    assert tiny.types == ("text-to-video",)
    assert tiny.normalize_options({})["seed"] == 7


# -- broken catalogue files ---------------------------------------------------------------

MODEL = '[models.wan]\nchannels = [{ provider = "sample" }]\n'


@pytest.mark.parametrize(
    ("text", "where", "problem"),
    [
        ("[models.x\n", "line 1, column 10", "invalid TOML: "),
        ("[models.wan]\nchannels = []\n", "models.wan.channels", "at least one channel"),
        ("[models.wan]\n", "models.wan.channels", "missing: at least one channel"),
        (
            MODEL + 'options.seed = { type = "integer", max = "x" }\n',
            "models.wan.options.seed.max",
            'must be an integer (got "x")',
        ),
        (
            MODEL + 'options.seed = { type = "integer", min = 0, default = -1 }\n',
            "models.wan.options.seed.default",
            "must be an integer of at least 0 (got -1)",
        ),
        (
            MODEL + 'options.a = { values = ["1"], default = "2" }\n',
            "models.wan.options.a.default",
            'must be one of "1" (got "2")',
        ),
        (
            MODEL + 'options.seed = { type = "float" }\n',
            "models.wan.options.seed.type",
            'unknown option type "float" (known: boolean, enum, integer, string)',
        ),
        (
            MODEL + 'options.seed = { type = "integer", max_length = 3 }\n',
            "models.wan.options.seed.max_length",
            "unknown key (allowed: type, min, max, default)",
        ),
        (
            MODEL + "options.a = { values = [] }\n",
            "models.wan.options.a.values",
            "an enum option needs a non-empty list of values",
        ),
        (
            MODEL + 'options.prompt = { type = "string" }\n',
            "models.wan.options.prompt",
            "is a request field of its own",
        ),
        (
            MODEL + 'options.resolution = { values = ["4k"] }\n',
            "models.wan.options.resolution.values[0]",
            '"4k" is not one of 240p,',
        ),
        (MODEL + "colour = 1\n", "models.wan.colour", "unknown key (allowed: description,"),
        (
            '[models.wan]\nchannels = [{ provider = "sample", cost = 2 }]\n',
            "models.wan.channels[0].cost",
            "unknown key (allowed: provider,",
        ),
        (
            '[models.wan]\nchannels = [{ provider = "sample", weight = 0 }]\n',
            "models.wan.channels[0].weight",
            "must be at least 1 (got 0)",
        ),
        (
            '[models.wan]\nchannels = [{ provider = "sample", priority = -1 }]\n',
            "models.wan.channels[0].priority",
            "must be at least 0 (got -1)",
        ),
        (
            '[models.wan]\nchannels = [{ provider = "a" }, { provider = "b", queue = "gpu" }]\n',
            "models.wan.channels[1].queue",
            '"gpu" differs from "default" of channels[0]',
        ),
        (
            '[models.wan]\nchannels = [{ provider = "a", retry = { jitter = 2 } }]\n',
            "models.wan.channels[0].retry.jitter",
            "must be from 0 to 1 (got 2)",
        ),
        (
            MODEL + "price = { base = -1 }\n",
            "models.wan.price.base",
            "must be at least 0 (got -1)",
        ),
        (
            MODEL + 'price = { by_option = { n_frames = { "10" = 30 } } }\n',
            "models.wan.price.by_option.n_frames",
            "not an option of this model (options: none)",
        ),
        (
            MODEL + 'options.a = { values = ["1"] }\nprice = { by_option = { a = { "2" = 3 } } }\n',
            "models.wan.price.by_option.a.2",
            "not a value of the option",
        ),
        (MODEL + 'types = ["text-to-audio"]\n', "models.wan.types[0]", "must be one of"),
        ("[model.wan]\n", "model", "unknown key (allowed: models)"),
    ],
)
def test_broken_catalogue_files_name_the_file_and_field(
    tmp_path: Path, text: str, where: str, problem: str
) -> None:
    path = tmp_path / "models.toml"
    path.write_text(text)
    with pytest.raises(CatalogueError) as raised:
        Catalogue.load(path)
    message = str(raised.value)
    assert message.startswith(f"catalogue {path}: {where}: "), message
    assert problem in message
    assert "\n" not in message
    assert isinstance(raised.value, ValueError)  # callers that catch ValueError still do


def test_a_missing_file_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(CatalogueError, match="cannot read the file: No such file"):
        Catalogue.load(tmp_path / "nope.toml")
