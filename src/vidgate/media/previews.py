"""Preview images of a stored MP4, made with PyAV and Pillow: a thumbnail (WebP, one frame from
the middle at the video's own size) and a spritesheet (JPEG, a grid of frames evenly spread over
the clip). Blocking: call them in a thread.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import av
from PIL import Image

THUMBNAIL_TYPE = "image/webp"
SPRITESHEET_TYPE = "image/jpeg"
SPRITE_COLUMNS = 4
SPRITE_TILES = 16
SPRITE_TILE_WIDTH = 256


class PreviewError(Exception):
    """The video could not be decoded into preview frames."""


def write_thumbnail(video: Path, target: Path) -> None:
    (frame,) = frames_at(video, [0.5])
    frame.save(target, format="WEBP", quality=85)


def write_spritesheet(video: Path, target: Path) -> None:
    frames = frames_at(video, [(index + 0.5) / SPRITE_TILES for index in range(SPRITE_TILES)])
    width = min(SPRITE_TILE_WIDTH, frames[0].width)
    height = max(2, round(frames[0].height * width / frames[0].width))
    rows = math.ceil(len(frames) / SPRITE_COLUMNS)
    sheet = Image.new("RGB", (width * SPRITE_COLUMNS, height * rows))
    for index, frame in enumerate(frames):
        tile = frame.resize((width, height), Image.Resampling.BILINEAR)
        row, column = divmod(index, SPRITE_COLUMNS)
        sheet.paste(tile, (column * width, row * height))
    sheet.save(target, format="JPEG", quality=80)


def frames_at(video: Path, fractions: Sequence[float]) -> list[Image.Image]:
    """The frames shown at each fraction (0-1, ascending) of the clip's length, decoded in
    one pass; a fraction past the last frame gets the last frame."""
    try:
        with av.open(str(video)) as container:
            stream = container.streams.video[0]
            seconds = (container.duration or 0) / av.time_base
            targets = [fraction * seconds for fraction in fractions]
            picked: list[Image.Image] = []
            last_frame: av.VideoFrame | None = None
            for frame in container.decode(stream):
                last_frame = frame
                time = frame.time or 0.0
                if time >= targets[len(picked)]:
                    image = _image(frame)
                    while len(picked) < len(targets) and time >= targets[len(picked)]:
                        picked.append(image)
                if len(picked) == len(targets):
                    break
            if len(picked) < len(targets):
                if last_frame is None:
                    raise PreviewError(f"{video.name} has no video frames")
                picked += [_image(last_frame)] * (len(targets) - len(picked))
            return picked
    except (av.error.FFmpegError, IndexError) as error:
        raise PreviewError(f"{video.name} could not be decoded: {error}") from error


def _image(frame: av.VideoFrame) -> Image.Image:
    # Through numpy: PyAV's to_image() carries no type annotations.
    return Image.fromarray(frame.to_ndarray(format="rgb24"))
