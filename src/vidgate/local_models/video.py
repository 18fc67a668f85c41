"""What a served pipeline is asked for and what comes out: frame sizes and counts the model
accepts, and its frames normalised and encoded to H.264 yuv420p with PyAV (no torch here)."""

from __future__ import annotations

import contextlib
import math
import os
import secrets
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
import numpy.typing as npt

from vidgate.providers.sample_render import X264_CRF, X264_PRESET

U8 = npt.NDArray[np.uint8]


@dataclass(frozen=True, kw_only=True)
class Family:
    """What a pipeline family accepts: frame sides in multiples of `side_multiple`, frame
    counts of `frame_multiple` * k + 1, and the frame rate it was trained at."""

    side_multiple: int
    frame_multiple: int
    fps: int


# Wan 2.x: VAE 8x spatial, 4x temporal, 2x2 patches; 16 fps. LTX-Video: 32x spatial, 8x temporal;
# 24 fps (its examples export at 24).
FAMILIES = {"wan": Family(side_multiple=16, frame_multiple=4, fps=16)}
FAMILIES["ltx"] = Family(side_multiple=32, frame_multiple=8, fps=24)


def family_of(pipeline: str) -> Family:
    return FAMILIES[pipeline.split("-", 1)[0]]


def model_side(pixels: int, multiple: int) -> int:
    """The nearest side the model accepts (at least one multiple)."""
    return max(multiple, round(pixels / multiple) * multiple)


def model_frames(seconds: float, *, fps: int, multiple: int) -> int:
    """The fewest frames of the form multiple * k + 1 that last at least `seconds`."""
    return max(1, math.ceil(seconds * fps / multiple)) * multiple + 1


def as_uint8_frames(frames: Any) -> U8:
    """One video's frames as a (T, H, W, 3) uint8 array, from what a pipeline returns: a numpy
    array or torch tensor (T, H, W, C) or (T, C, H, W) of floats in [0, 1] or uint8, or a list
    of PIL images."""
    if isinstance(frames, list | tuple):
        array = np.stack([np.asarray(frame) for frame in frames])
    elif hasattr(frames, "detach"):  # a torch tensor, without importing torch here
        array = frames.detach().float().cpu().numpy()
    else:
        array = np.asarray(frames)
    if array.ndim != 4:
        raise ValueError(f"expected frames of 4 dimensions, got shape {array.shape}")
    if array.shape[-1] not in (1, 3, 4) and array.shape[1] in (1, 3, 4):  # channels first
        array = array.transpose(0, 2, 3, 1)
    if array.dtype != np.uint8:
        array = (np.clip(array.astype(np.float32), 0.0, 1.0) * 255.0).round().astype(np.uint8)
    if array.shape[-1] == 1:
        array = np.repeat(array, 3, axis=-1)
    return np.ascontiguousarray(array[..., :3])


def encode_mp4(frames: U8, out_path: Path, *, fps: int) -> None:
    """Write (T, H, W, 3) uint8 frames as an H.264 yuv420p MP4; the file appears complete or
    not at all (written beside it, then renamed). Odd sides are cropped by one pixel (4:2:0)."""
    height, width = frames.shape[1] // 2 * 2, frames.shape[2] // 2 * 2
    tmp_path = out_path.with_name(f".{out_path.name}.{secrets.token_hex(6)}.part")
    container = None
    try:
        container = av.open(
            str(tmp_path), mode="w", format="mp4", options={"movflags": "+faststart"}
        )
        stream = container.add_stream(
            "libx264", rate=fps, options={"preset": X264_PRESET, "crf": X264_CRF}
        )
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        time_base = Fraction(1, fps)
        stream.codec_context.time_base = time_base
        for index, pixels in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(
                np.ascontiguousarray(pixels[:height, :width]), format="rgb24"
            )
            frame.pts, frame.time_base = index, time_base
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
        container.close()
        container = None
        os.replace(tmp_path, out_path)
    except BaseException:
        if container is not None:
            with contextlib.suppress(Exception):  # already failing: keep the first error
                container.close()
        tmp_path.unlink(missing_ok=True)
        raise
