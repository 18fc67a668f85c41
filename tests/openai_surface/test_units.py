"""The parts of the OpenAI-style surface that need no server: the catalogue's size and seconds
options and the two sora-2 models, preview images, the error renderer, uploads in the store and
the worker reading them back."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from openai_surface.helpers import red_png
from vidgate import errors
from vidgate.api.errors import openai_error_payload
from vidgate.api.openai import inputs
from vidgate.api.openai.intake import decode_data_url
from vidgate.media.previews import PreviewError, write_spritesheet, write_thumbnail
from vidgate.providers.catalogue import Catalogue, CatalogueError, VideoShape
from vidgate.providers.sample_render import RenderSpec, render_sample_video
from vidgate.storage.local import LocalFileStore
from vidgate.worker.media import InputRejected, copy_stored_inputs

# -- catalogue ----------------------------------------------------------------------------


def test_the_sora_2_models_are_priced_per_second_in_the_protocols_sizes() -> None:
    catalogue = Catalogue.load()
    sora, pro = catalogue.get("sora-2"), catalogue.get("sora-2-pro")
    assert sora.options["size"].values == ("720x1280", "1280x720")
    assert pro.options["size"].values == ("720x1280", "1280x720", "1024x1792", "1792x1024")
    for model in (sora, pro):
        assert model.options["seconds"].values == ("4", "8", "12")
        assert [c.provider for c in model.channels] == ["openai", "sample"]
        assert model.channels[1].only_without_upstream
    assert [c.upstream_model for c in (sora.channels[0], pro.channels[0])] == [
        "sora-2",
        "sora-2-pro",
    ]
    defaults = sora.normalize_options({})
    assert sora.shape(defaults) == VideoShape(width=720, height=1280, seconds=4)
    assert sora.credits(defaults) == 12
    wide = pro.normalize_options({"size": "1792x1024", "seconds": 12})
    assert pro.shape(wide) == VideoShape(width=1792, height=1024, seconds=12)
    assert pro.credits(wide) == 108


def test_size_gives_the_frame_over_aspect_ratio_and_resolution() -> None:
    model = Catalogue.from_dict(
        {
            "models": {
                "m": {
                    "channels": [{"provider": "sample"}],
                    "options": {
                        "size": {"values": ["640x360"]},
                        "aspect_ratio": {"values": ["portrait"], "default": "portrait"},
                        "seconds": {"type": "integer", "min": 1, "max": 20},
                    },
                }
            }
        }
    ).get("m")
    options = model.normalize_options({"size": "640x360", "seconds": "7"})
    assert model.shape(options) == VideoShape(width=640, height=360, seconds=7)
    # Without a size the older options still decide.
    assert model.shape(model.normalize_options({})).width == 720


@pytest.mark.parametrize(
    ("size_option", "field", "words"),
    [
        ({"values": ["1281x720"]}, "models.m.options.size.values[0]", "even sides"),
        ({"values": ["big"]}, "models.m.options.size.values[0]", "WIDTHxHEIGHT"),
        ({"values": ["8192x4320"]}, "models.m.options.size.values[0]", "at most 4096"),
        ({"type": "string"}, "models.m.options.size", "must be an enum"),
    ],
)
def test_a_catalogue_file_with_a_bad_size_option_names_the_field(
    size_option: dict[str, Any], field: str, words: str
) -> None:
    raw = {
        "models": {"m": {"channels": [{"provider": "sample"}], "options": {"size": size_option}}}
    }
    with pytest.raises(CatalogueError) as refused:
        Catalogue.from_dict(raw, source="cat.toml")
    assert field in str(refused.value)
    assert words in str(refused.value)


# -- previews -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("previews") / "clip.mp4"
    render_sample_video(RenderSpec(prompt="p", width=320, height=180, seconds=2, fps=12), path)
    return path


def test_a_thumbnail_is_one_full_size_frame_in_webp(clip: Path, tmp_path: Path) -> None:
    write_thumbnail(clip, tmp_path / "thumb.webp")
    image = Image.open(tmp_path / "thumb.webp")
    assert (image.format, image.size) == ("WEBP", (320, 180))


def test_a_spritesheet_is_a_grid_of_frames_spread_over_the_clip(clip: Path, tmp_path: Path) -> None:
    write_spritesheet(clip, tmp_path / "sheet.jpg")
    sheet = Image.open(tmp_path / "sheet.jpg")
    assert (sheet.format, sheet.size) == ("JPEG", (4 * 256, 4 * 144))
    # The sample's progress bar grows with time: the first and last tiles differ.
    first = sheet.crop((0, 0, 256, 144)).tobytes()
    last = sheet.crop((3 * 256, 3 * 144, 4 * 256, 4 * 144)).tobytes()
    assert first != last


def test_a_file_that_is_no_video_has_no_previews(tmp_path: Path) -> None:
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00\x00\x00\x18ftypisom" + b"junk" * 100)
    with pytest.raises(PreviewError, match=r"broken\.mp4"):
        write_thumbnail(broken, tmp_path / "t.webp")


# -- the OpenAI-shape error renderer ------------------------------------------------------


INVALID = "invalid_request_error"


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (
            errors.InvalidRequest('size: must be one of "720x1280"'),
            (INVALID, "size", "invalid_request"),
        ),
        (
            errors.InvalidRequest("input_reference.image_url: bad"),
            (INVALID, "input_reference.image_url", "invalid_request"),
        ),
        (
            errors.InvalidRequest("a JSON object body is required"),
            (INVALID, None, "invalid_request"),
        ),
        (errors.Unauthorized(), ("authentication_error", None, "invalid_api_key")),
        (
            errors.InsufficientCredits("Insufficient credits: 3"),
            ("insufficient_quota", None, "insufficient_quota"),
        ),
        (errors.Forbidden(), ("permission_error", None, "forbidden")),
        (errors.NotFound("task: x"), ("not_found_error", None, "not_found")),
        (errors.IdempotencyKeyReused(), (INVALID, None, "idempotency_key_reused")),
        (
            errors.RateLimited("Rate limit exceeded: 20/s"),
            ("rate_limit_error", None, "rate_limit_exceeded"),
        ),
        (errors.ContentBlocked(), (INVALID, None, "moderation_blocked")),
        (errors.InternalError(), ("api_error", None, "internal_error")),
        (errors.UpstreamUnavailable(), ("api_error", None, "upstream_unavailable")),
    ],
)
def test_openai_error_types_params_and_codes(
    error: errors.VidgateError, expected: tuple[str, str | None, str]
) -> None:
    body = openai_error_payload(error)["error"]
    assert isinstance(body, dict)
    assert (body["type"], body["param"], body["code"]) == expected
    assert body["message"] == error.message


# -- reference images in the store --------------------------------------------------------


def test_an_image_is_keyed_by_its_content_and_checked_by_its_bytes() -> None:
    image = red_png()
    key = inputs.input_key(image)
    assert key == inputs.input_key(image)
    assert key.startswith("input_")
    assert key.endswith(".png")
    assert inputs.input_key(red_png((10, 10))) != key
    for not_an_image in (b"", b"GIF89a" + b"\x00" * 40, b"<svg></svg>"):
        with pytest.raises(errors.InvalidRequest, match="input_reference: "):
            inputs.input_key(not_an_image)


def test_data_urls_must_be_base64() -> None:
    assert decode_data_url("data:image/png;base64,aGk=") == b"hi"
    for bad in ("data:image/png,hi", "data:image/png;base64,@@@", "data:nothing"):
        with pytest.raises(errors.InvalidRequest, match=r"input_reference\.image_url: "):
            decode_data_url(bad)


def test_the_worker_copies_a_stored_upload_and_refuses_a_missing_one(tmp_path: Path) -> None:
    store = LocalFileStore(
        tmp_path / "files", secret=b"s", public_url="http://gw.example", url_ttl_s=60
    )
    image = red_png()
    key = inputs.input_key(image)
    asyncio.run(inputs.store_input(store, key, image))
    asyncio.run(inputs.store_input(store, key, image))  # a retry finds it there

    work_dir = tmp_path / "work"
    (copy,) = asyncio.run(copy_stored_inputs(store, [key], work_dir=work_dir))
    assert copy.parent == work_dir
    assert copy.read_bytes() == image
    copy.unlink()
    assert store.path_of(key) is not None  # the stored upload stays for other tasks

    with pytest.raises(InputRejected) as missing:
        asyncio.run(copy_stored_inputs(store, ["input_gone.png"], work_dir=work_dir))
    assert missing.value.code == "input_fetch_failed"
    assert list(work_dir.iterdir()) == []
