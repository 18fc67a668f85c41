"""The sample renderer writes real, playable, clearly marked H.264 clips."""

import io
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
import numpy.typing as npt
import pytest
from PIL import Image

from vidgate.providers.sample_render import RenderCancelled, RenderSpec, render_sample_video

Frame = npt.NDArray[np.uint8]


@dataclass
class Decoded:
    codec: str
    pix_fmt: str | None
    width: int
    height: int
    fps: float
    duration_s: float
    frames: list[Frame]


def decode(path: Path) -> Decoded:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        assert stream.average_rate is not None
        assert container.duration is not None
        frames = [
            np.asarray(f.to_ndarray(format="rgb24"), dtype=np.uint8)
            for f in container.decode(stream)
        ]
        return Decoded(
            codec=stream.codec_context.name,
            pix_fmt=stream.codec_context.pix_fmt,
            width=stream.codec_context.width,
            height=stream.codec_context.height,
            fps=float(stream.average_rate),
            duration_s=container.duration / 1_000_000,
            frames=frames,
        )


def render(tmp_path: Path, name: str = "out.mp4", **fields: object) -> Decoded:
    spec_fields: dict[str, object] = {
        "prompt": "a red fox running through snow",
        "width": 320,
        "height": 180,
        "seconds": 2.0,
    }
    spec_fields.update(fields)
    out = tmp_path / name
    render_sample_video(RenderSpec(**spec_fields), out)  # type: ignore[arg-type]
    return decode(out)


def band(frame: Frame, top: float, bottom: float) -> Frame:
    h = frame.shape[0]
    return frame[int(h * top) : int(h * bottom)]


def mean_abs_diff(a: Frame, b: Frame) -> float:
    return float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean())


def image_file(tmp_path: Path, data: bytes, name: str = "input.img") -> Path:
    """An input image as the worker hands it over: a fetched file."""
    inputs = tmp_path / "inputs"
    inputs.mkdir(exist_ok=True)
    path = inputs / name
    path.write_bytes(data)
    return path


def png_bytes(color: tuple[int, int, int], size: tuple[int, int] = (64, 48)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, "PNG")
    return buf.getvalue()


def test_output_is_h264_with_requested_shape_and_timing(tmp_path: Path) -> None:
    video = render(tmp_path, seconds=1.5, fps=24)

    assert video.codec == "h264"
    assert video.pix_fmt == "yuv420p"
    assert (video.width, video.height) == (320, 180)
    assert video.fps == 24
    assert len(video.frames) == 36
    assert abs(video.duration_s - 1.5) <= 1 / 24
    assert video.frames[0].shape == (180, 320, 3)


def test_other_fps_and_fractional_length(tmp_path: Path) -> None:
    video = render(tmp_path, seconds=1.3, fps=30)

    assert len(video.frames) == 39
    assert video.fps == 30
    assert abs(video.duration_s - 1.3) <= 1 / 30


def test_video_visibly_moves(tmp_path: Path) -> None:
    video = render(tmp_path)

    assert mean_abs_diff(video.frames[0], video.frames[-1]) > 5


def test_banner_shows_the_label(tmp_path: Path) -> None:
    one = render(tmp_path, "a.mp4", label="SAMPLE - vidgate").frames[0]
    other = render(tmp_path, "b.mp4", label="PLACEHOLDER CLIP").frames[0]

    # Only the top banner depends on the label; the open middle of the frame does not.
    assert mean_abs_diff(band(one, 0.0, 0.1), band(other, 0.0, 0.1)) > 3
    assert mean_abs_diff(band(one, 0.3, 0.45), band(other, 0.3, 0.45)) < 1
    # The banner is a dark band over the brighter background.
    assert band(one, 0.0, 0.1).mean() < band(one, 0.3, 0.45).mean()


def test_prompt_is_drawn_near_the_bottom(tmp_path: Path) -> None:
    one = render(tmp_path, "a.mp4", prompt="a red fox running through snow").frames[0]
    other = render(tmp_path, "b.mp4", prompt="city skyline at night, neon rain").frames[0]

    assert mean_abs_diff(band(one, 0.6, 0.9), band(other, 0.6, 0.9)) > 2
    assert mean_abs_diff(band(one, 0.0, 0.1), band(other, 0.0, 0.1)) < 1


def test_image_to_video_uses_the_image_as_background(tmp_path: Path) -> None:
    video = render(tmp_path, image=image_file(tmp_path, png_bytes((220, 20, 20))))

    for frame in (video.frames[0], video.frames[-1]):
        # Away from the banner and prompt box the input image shows through.
        r, g, b = band(frame, 0.3, 0.45)[:, 40:-40].reshape(-1, 3).mean(axis=0)
        assert r > 180
        assert g < 60
        assert b < 60


def test_image_exif_orientation_is_applied(tmp_path: Path) -> None:
    # Stored sideways: red left half, blue right half; EXIF orientation 6 = rotate 90 deg CW,
    # so upright the image is red on top and blue at the bottom.
    stored = Image.new("RGB", (80, 40), (0, 0, 230))
    stored.paste((230, 0, 0), (0, 0, 40, 40))
    exif = Image.Exif()
    exif[0x0112] = 6
    buf = io.BytesIO()
    stored.save(buf, "JPEG", exif=exif, quality=95)

    image = image_file(tmp_path, buf.getvalue())
    video = render(tmp_path, width=180, height=320, prompt="short", image=image)

    frame = video.frames[0]
    top = band(frame, 0.2, 0.35)[:, 30:-30].reshape(-1, 3).mean(axis=0)
    lower = band(frame, 0.6, 0.7)[:, 30:-30].reshape(-1, 3).mean(axis=0)
    assert top[0] > 150 > top[2]
    assert lower[2] > 150 > lower[0]


def test_transparent_image_and_other_formats_are_accepted(tmp_path: Path) -> None:
    buf = io.BytesIO()
    Image.new("RGBA", (30, 30), (0, 255, 0, 0)).save(buf, "WEBP")

    video = render(tmp_path, image=image_file(tmp_path, buf.getvalue()), seconds=0.5)

    assert len(video.frames) == 12


def test_bad_image_bytes_are_rejected(tmp_path: Path) -> None:
    image = image_file(tmp_path, b"<html>not an image")
    out = tmp_path / "out"
    out.mkdir()
    spec = RenderSpec(prompt="x", width=320, height=180, seconds=1, image=image)

    with pytest.raises(ValueError, match="input image could not be decoded"):
        render_sample_video(spec, out / "out.mp4")
    assert list(out.iterdir()) == []


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"width": 321}, "width must be an even number"),
        ({"height": 181}, "height must be an even number"),
        ({"width": 0}, "width must be a positive integer"),
        ({"height": -180}, "height must be a positive integer"),
        ({"width": 8}, "width must be between 16 and 4096"),
        ({"height": 4098}, "height must be between 16 and 4096"),
        ({"seconds": 0}, "seconds must be a positive number"),
        ({"seconds": -2.0}, "seconds must be a positive number"),
        ({"seconds": float("nan")}, "seconds must be a positive number"),
        ({"seconds": 0.01}, "shorter than one frame"),
        ({"fps": 0}, "fps must be an integer"),
    ],
)
def test_invalid_spec_is_rejected(tmp_path: Path, fields: dict[str, object], message: str) -> None:
    spec_fields: dict[str, object] = {"prompt": "x", "width": 320, "height": 180, "seconds": 1.0}
    spec_fields.update(fields)

    with pytest.raises(ValueError, match=message):
        render_sample_video(RenderSpec(**spec_fields), tmp_path / "out.mp4")  # type: ignore[arg-type]
    assert list(tmp_path.iterdir()) == []


def test_should_stop_cancels_and_leaves_no_file(tmp_path: Path) -> None:
    out = tmp_path / "out.mp4"
    calls = 0

    def should_stop() -> bool:
        nonlocal calls
        calls += 1
        return calls > 10

    spec = RenderSpec(prompt="x", width=320, height=180, seconds=2)
    with pytest.raises(RenderCancelled):
        render_sample_video(spec, out, should_stop=should_stop)

    assert list(tmp_path.iterdir()) == []


def test_cancel_keeps_an_existing_file_untouched(tmp_path: Path) -> None:
    out = tmp_path / "out.mp4"
    out.write_bytes(b"previous")

    spec = RenderSpec(prompt="x", width=320, height=180, seconds=1)
    with pytest.raises(RenderCancelled):
        render_sample_video(spec, out, should_stop=lambda: True)

    assert out.read_bytes() == b"previous"
    assert [p.name for p in tmp_path.iterdir()] == ["out.mp4"]


def test_progress_is_reported_up_to_one(tmp_path: Path) -> None:
    seen: list[float] = []
    out = tmp_path / "out.mp4"

    render_sample_video(
        RenderSpec(prompt="x", width=320, height=180, seconds=2), out, on_progress=seen.append
    )

    assert len(seen) >= 10
    assert seen == sorted(seen)
    assert all(0.0 <= value <= 1.0 for value in seen)
    assert seen[-1] == 1.0
    assert out.exists()
    assert [p.name for p in tmp_path.iterdir()] == ["out.mp4"]


def test_existing_output_is_replaced(tmp_path: Path) -> None:
    out = tmp_path / "out.mp4"
    out.write_bytes(b"old")

    render_sample_video(RenderSpec(prompt="x", width=320, height=180, seconds=0.5), out)

    assert decode(out).codec == "h264"


def test_portrait_clip(tmp_path: Path) -> None:
    video = render(tmp_path, width=360, height=640, seconds=1.0)

    assert (video.width, video.height) == (360, 640)
    assert len(video.frames) == 24


@pytest.mark.parametrize(
    "prompt",
    [
        "",
        "word " * 5000,
        "https://example.com/" + "x" * 3000,
        "一只在雪地里奔跑的红狐狸 🦊\nwith\ttabs and newlines",
    ],
    ids=["empty", "very-long", "long-word", "unicode"],
)
def test_awkward_prompts_render(tmp_path: Path, prompt: str) -> None:
    video = render(tmp_path, prompt=prompt, seconds=0.25)

    assert len(video.frames) == 6


def test_realistic_size_clip(tmp_path: Path) -> None:
    video = render(tmp_path, width=1280, height=720, seconds=3.0)

    assert (video.width, video.height) == (1280, 720)
    assert len(video.frames) == 72
    assert abs(video.duration_s - 3.0) <= 1 / 24
