"""Loading a served pipeline from its folder (once per process) and running one generation.

This is the only module that imports torch and diffusers; it runs in worker threads, never on
the event loop. Between denoising steps `should_stop` is asked, so a cancel or a time limit
ends a generation within one step.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from vidgate.local_models.video import U8, as_uint8_frames

logger = logging.getLogger("vidgate.local_models")

# The diffusers class that serves each pipeline kind (model_index.json names it).
PIPELINE_CLASSES = {
    "wan-t2v": "WanPipeline",
    "wan-i2v": "WanImageToVideoPipeline",
    "ltx-t2v": "LTXPipeline",
    "ltx-i2v": "LTXImageToVideoPipeline",
}
DTYPES = ("float32", "bfloat16", "float16")


class ModelUnavailable(Exception):
    """The weights folder cannot be loaded as the configured pipeline."""


class OutOfMemory(Exception):
    """The device ran out of memory during a generation."""


class Stopped(Exception):
    """The generation was stopped between steps (cancelled, timed out, shutting down)."""


@dataclass(frozen=True, kw_only=True)
class ServedModel:
    pipeline: str  # a PIPELINE_CLASSES key
    path: Path
    device: str = "cpu"
    dtype: str = "float32"


@dataclass(frozen=True, kw_only=True)
class Generation:
    prompt: str
    negative_prompt: str
    width: int
    height: int
    num_frames: int
    fps: int
    num_inference_steps: int
    guidance_scale: float
    seed: int
    image: Image.Image | None = None
    max_sequence_length: int | None = None


@dataclass(frozen=True, kw_only=True)
class Generated:
    frames: U8  # (T, H, W, 3)
    peak_gpu_memory_bytes: int | None  # None on a CPU


_loaded: dict[ServedModel, Any] = {}
_loading = threading.Lock()


def check_folder(model: ServedModel) -> str:
    """The folder's pipeline class, if it is the configured one; ModelUnavailable otherwise."""
    index = model.path / "model_index.json"
    try:
        class_name = json.loads(index.read_text())["_class_name"]
    except FileNotFoundError:
        raise ModelUnavailable(
            f"no model_index.json in {model.path}: not a diffusers pipeline folder"
        ) from None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ModelUnavailable(f"{index} is unreadable: {exc}") from None
    expected = PIPELINE_CLASSES[model.pipeline]
    if class_name != expected:
        raise ModelUnavailable(
            f"{model.path} holds a {class_name}, not the {expected} of pipeline {model.pipeline}"
        )
    return expected


def is_loaded(model: ServedModel) -> bool:
    return model in _loaded


def load(model: ServedModel) -> Any:
    """The pipeline of `model`, loaded on first use and kept for the life of the process."""
    with _loading:
        if model in _loaded:
            return _loaded[model]
        class_name = check_folder(model)
        started = time.monotonic()
        try:
            import diffusers
            import torch

            cls = getattr(diffusers, class_name)
            pipeline = cls.from_pretrained(
                str(model.path), torch_dtype=getattr(torch, model.dtype), local_files_only=True
            )
            pipeline.to(model.device)
        except Exception as exc:  # diffusers raises many kinds for a broken folder
            detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ModelUnavailable(
                f"cannot load the {model.pipeline} pipeline from {model.path}: {detail}"
            ) from exc
        pipeline.set_progress_bar_config(disable=True)
        logger.info(
            "loaded %s from %s on %s (%s) in %.1f s",
            model.pipeline, model.path, model.device, model.dtype, time.monotonic() - started,
        )  # fmt: skip
        _loaded[model] = pipeline
        return pipeline


def is_out_of_memory(error: BaseException) -> bool:
    import torch

    if isinstance(error, torch.OutOfMemoryError):
        return True
    return isinstance(error, RuntimeError) and "out of memory" in str(error).lower()


def generate(
    model: ServedModel,
    request: Generation,
    *,
    on_step: Callable[[int, int], None],
    should_stop: Callable[[], bool],
) -> Generated:
    """Run one generation. Raises ModelUnavailable, OutOfMemory or Stopped."""
    import torch

    pipeline = load(model)
    steps = request.num_inference_steps

    def step_ended(_pipe: Any, step: int, _timestep: Any, tensors: dict[str, Any]) -> Any:
        on_step(step + 1, steps)
        if should_stop():
            raise Stopped()
        return tensors

    arguments: dict[str, Any] = {
        "prompt": request.prompt,
        "negative_prompt": request.negative_prompt,
        "width": request.width,
        "height": request.height,
        "num_frames": request.num_frames,
        "num_inference_steps": steps,
        "guidance_scale": request.guidance_scale,
        # A CPU generator: the same seed gives the same noise on any device.
        "generator": torch.Generator(device="cpu").manual_seed(request.seed),
        "output_type": "np",
        "callback_on_step_end": step_ended,
    }
    if model.pipeline.startswith("ltx"):
        arguments["frame_rate"] = request.fps
    if request.image is not None:
        arguments["image"] = request.image
    if request.max_sequence_length is not None:
        arguments["max_sequence_length"] = request.max_sequence_length
    on_gpu = model.device.startswith("cuda")
    if on_gpu:
        torch.cuda.reset_peak_memory_stats(model.device)
    started = time.monotonic()
    try:
        with torch.inference_mode():
            output = pipeline(**arguments)
    except Stopped:
        raise
    except Exception as exc:
        if is_out_of_memory(exc):
            if torch.cuda.is_available():
                torch.cuda.empty_cache()  # leave the worker able to take the next job
            raise OutOfMemory(
                f"{model.device} ran out of memory for {request.width}x{request.height}, "
                f"{request.num_frames} frames"
            ) from exc
        raise
    elapsed = time.monotonic() - started
    logger.info(
        "%s: %d steps, %d frames %dx%d in %.1f s (%.2f s per step incl. decode)",
        model.pipeline, steps, request.num_frames, request.width, request.height, elapsed,
        elapsed / steps,
    )  # fmt: skip
    peak = torch.cuda.max_memory_allocated(model.device) if on_gpu else None
    return Generated(frames=as_uint8_frames(output.frames[0]), peak_gpu_memory_bytes=peak)
