"""The model catalogue: validation messages, price rules, custom catalogue files."""

from __future__ import annotations

from pathlib import Path

import pytest

from vidgate.errors import InvalidRequest
from vidgate.providers.catalogue import Catalogue, frame_size


@pytest.fixture(scope="module")
def catalogue() -> Catalogue:
    return Catalogue.load()


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


def test_bad_enum_value_lists_allowed_values(catalogue: Catalogue) -> None:
    with pytest.raises(InvalidRequest) as raised:
        catalogue.get("sora2").normalize_options({"n_frames": "12"})
    assert raised.value.message == 'n_frames: must be one of "10", "15" (got \'12\')'


def test_unknown_option_lists_the_model_options(catalogue: Catalogue) -> None:
    with pytest.raises(InvalidRequest) as raised:
        catalogue.get("sora2").normalize_options({"resolution": "720p"})
    assert raised.value.message == (
        "resolution: not an option of model sora2 "
        "(allowed: aspect_ratio, n_frames, remove_watermark)"
    )


def test_integers_spelling_an_allowed_value_are_accepted(catalogue: Catalogue) -> None:
    assert catalogue.get("sora2").normalize_options({"n_frames": 15})["n_frames"] == "15"


def test_boolean_option_must_be_boolean(catalogue: Catalogue) -> None:
    with pytest.raises(InvalidRequest, match="remove_watermark: must be true or false"):
        catalogue.get("sora2").normalize_options({"remove_watermark": "yes"})


def test_defaults_fill_in(catalogue: Catalogue) -> None:
    assert catalogue.get("sora2").normalize_options({}) == {
        "aspect_ratio": "landscape",
        "n_frames": "10",
        "remove_watermark": False,
    }


def test_clip_seconds_prefers_duration(catalogue: Catalogue) -> None:
    sample = catalogue.get("sample")
    assert sample.clip_seconds(sample.normalize_options({})) == 10
    assert sample.clip_seconds(sample.normalize_options({"duration": "2"})) == 2
    assert sample.clip_seconds(sample.normalize_options({"n_frames": "15"})) == 15


@pytest.mark.parametrize(
    ("aspect", "resolution", "size"),
    [
        ("landscape", "720p", (1280, 720)),
        ("portrait", "720p", (720, 1280)),
        ("square", "480p", (480, 480)),
        ("landscape", "240p", (426, 240)),
    ],
)
def test_frame_size(aspect: str, resolution: str, size: tuple[int, int]) -> None:
    assert frame_size(aspect_ratio=aspect, resolution=resolution) == size


def test_custom_catalogue_file(tmp_path: Path) -> None:
    path = tmp_path / "models.toml"
    path.write_text(
        """
[models.tiny]
description = "test"
options.duration = { values = ["1", "2"], default = "1" }
price = { base = 2, per_second = 3 }
channels = [{ provider = "sample" }]
"""
    )
    tiny = Catalogue.load(path).get("tiny")
    assert tiny.credits(tiny.normalize_options({"duration": "2"})) == 8
    assert tiny.types == ("text-to-video",)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("[models.x]\nchannels = []\n", "at least one channel"),
        (
            '[models.x]\noptions.a = { values = ["1"], default = "2" }\n'
            'channels = [{ provider = "sample" }]\n',
            "default '2' is not allowed",
        ),
        ("[models.x\n", "invalid model catalogue"),
    ],
)
def test_invalid_catalogue_files_are_refused(tmp_path: Path, text: str, problem: str) -> None:
    path = tmp_path / "models.toml"
    path.write_text(text)
    with pytest.raises(ValueError, match=problem):
        Catalogue.load(path)
