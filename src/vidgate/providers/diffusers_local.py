"""The `diffusers` provider: open video models (Wan 2.x, LTX-Video) run by this process.

Like the sample renderer, its jobs live in this process (`runs_locally`): submit() starts one,
poll() reports its progress, a restart loses it and the worker submits it again. The pipeline is
loaded from its folder on the first job and kept; one generation runs at a time per provider,
in a thread, so the event loop (and the lease heartbeat) keeps going. torch is imported only
there, so building the provider at startup is instant.
"""

from __future__ import annotations

import asyncio
import importlib.util
import logging
import math
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image, ImageOps

from vidgate import metrics
from vidgate.local_models import PIPELINE_KINDS
from vidgate.local_models.pipelines import (
    DTYPES,
    Generation,
    ModelUnavailable,
    OutOfMemory,
    ServedModel,
    Stopped,
    check_folder,
)
from vidgate.local_models.video import encode_mp4, family_of, model_frames, model_side
from vidgate.providers.base import (
    GenerationRequest,
    JobLost,
    JobState,
    JobStatus,
    LogicalError,
    ProviderCheck,
    Submission,
)
from vidgate.providers.config import ProviderConfig

logger = logging.getLogger("vidgate.providers.diffusers")

OPTION_KEYS = ("pipeline", "path", "device", "dtype", "fps", "max_sequence_length")
DEFAULT_STEPS = {"wan": 50, "ltx": 50}
DEFAULT_GUIDANCE = {"wan": 5.0, "ltx": 3.0}
MAX_SEED = 2**32 - 1
# Share of the progress bar the denoising steps fill; decoding and encoding take the rest.
STEPS_SHARE = 0.9


@dataclass
class _Job:
    progress: float = 0.0
    error: str | None = None
    error_code: str | None = None
    done: bool = False
    stop: bool = False  # read by the generation thread between steps


class DiffusersProvider:
    runs_locally = True
    poll_interval_s: float | None = 0.25  # a local poll is a dict lookup
    max_poll_interval_s: float | None = None
    trusted_hosts: frozenset[str] = frozenset()  # its results are local files

    def __init__(
        self,
        *,
        name: str,
        model: ServedModel,
        work_dir: Path,
        fps: int | None = None,
        max_sequence_length: int | None = None,
        max_concurrent: int | None = None,
    ) -> None:
        self.name = name
        self.model = model
        self.family = family_of(model.pipeline)
        self.fps = fps or self.family.fps
        self.max_sequence_length = max_sequence_length
        self.max_concurrent = max_concurrent
        self.work_dir = work_dir
        self._jobs: dict[str, _Job] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._one_at_a_time = asyncio.Semaphore(1)  # one pipeline, one generation at a time

    @classmethod
    def from_config(cls, config: ProviderConfig, *, work_dir: Path) -> DiffusersProvider:
        options = config.options
        where = f"provider {config.name}"
        unknown = sorted(set(options) - set(OPTION_KEYS))
        if unknown:
            raise ValueError(
                f"{where}: unknown option {unknown[0]} (known: {', '.join(OPTION_KEYS)})"
            )
        pipeline = options.get("pipeline")
        if pipeline not in PIPELINE_KINDS:
            raise ValueError(f"{where}: pipeline must be one of {', '.join(PIPELINE_KINDS)}")
        if not isinstance(options.get("path"), str) or not options["path"]:
            raise ValueError(f"{where}: path (the pipeline's folder) is missing")
        device = options.get("device", "cpu")
        if not isinstance(device, str) or not (
            device in ("cpu", "cuda", "mps") or device.startswith("cuda:")
        ):
            raise ValueError(f"{where}: device must be cpu, cuda, cuda:N or mps")
        dtype = options.get("dtype", "float32" if device == "cpu" else "bfloat16")
        if dtype not in DTYPES:
            raise ValueError(f"{where}: dtype must be one of {', '.join(DTYPES)}")
        for number in ("fps", "max_sequence_length"):
            value = options.get(number)
            if value is not None and (
                not isinstance(value, int) or isinstance(value, bool) or value < 1
            ):
                raise ValueError(f"{where}: {number} must be a positive integer")
        if (
            importlib.util.find_spec("diffusers") is None
            or importlib.util.find_spec("torch") is None
        ):
            raise ValueError(f"{where}: needs torch and diffusers: pip install 'vidgate[local]'")
        return cls(
            name=config.name,
            model=ServedModel(
                pipeline=pipeline, path=Path(options["path"]), device=device, dtype=dtype
            ),
            work_dir=work_dir,
            fps=options.get("fps"),
            max_sequence_length=options.get("max_sequence_length"),
            max_concurrent=config.max_concurrent,
        )

    def output_path(self, upstream_id: str) -> Path:
        return self.work_dir / f"{upstream_id}.mp4"

    # -- the Provider protocol -------------------------------------------------------------

    async def submit(self, request: GenerationRequest) -> Submission:
        generation = await self._generation(request)
        upstream_id = f"{self.name}_{request.task_id}_{secrets.token_hex(4)}"
        job = _Job()
        self._jobs[upstream_id] = job
        task = asyncio.create_task(self._run(job, generation, self.output_path(upstream_id)))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return Submission(upstream_id=upstream_id)

    async def poll(self, upstream_id: str) -> JobStatus:
        job = self._jobs.get(upstream_id)
        if job is None:
            output = self.output_path(upstream_id)
            if output.exists():  # finished before a restart, not yet stored
                return JobStatus(state=JobState.SUCCEEDED, progress=100, result_file=output)
            raise JobLost(f"{self.name} job {upstream_id} is not running in this process")
        if not job.done:
            return JobStatus(state=JobState.RUNNING, progress=int(job.progress * 100))
        del self._jobs[upstream_id]
        if job.error is not None:
            return JobStatus(state=JobState.FAILED, error=job.error, error_code=job.error_code)
        return JobStatus(
            state=JobState.SUCCEEDED, progress=100, result_file=self.output_path(upstream_id)
        )

    async def cancel(self, upstream_id: str) -> None:
        job = self._jobs.get(upstream_id)
        if job is not None:
            job.stop = True

    async def close(self) -> None:
        for job in self._jobs.values():
            job.stop = True
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def check(self) -> ProviderCheck:
        try:
            await asyncio.to_thread(check_folder, self.model)
        except ModelUnavailable as problem:
            return ProviderCheck(reachable=False, detail=str(problem))
        return ProviderCheck(
            reachable=True,
            detail=f"{self.model.pipeline} from {self.model.path} on {self.model.device} "
            f"({self.model.dtype})",
        )

    # -- a job -----------------------------------------------------------------------------

    async def _generation(self, request: GenerationRequest) -> Generation:
        """What the pipeline is asked for; LogicalError for options it cannot take."""
        options, side = request.options, self.family.side_multiple
        prefix = self.model.pipeline.split("-", 1)[0]
        image = None
        if self.model.pipeline.endswith("i2v"):
            if not request.images:
                raise LogicalError(f"{request.model} makes videos from an image: send image_urls")
            image = await asyncio.to_thread(
                _load_image,
                request.images[0],
                (model_side(request.width, side), model_side(request.height, side)),
            )
        return Generation(
            prompt=request.prompt,
            negative_prompt=str(options.get("negative_prompt", "")),
            width=model_side(request.width, side),
            height=model_side(request.height, side),
            num_frames=model_frames(
                request.seconds, fps=self.fps, multiple=self.family.frame_multiple
            ),
            fps=self.fps,
            num_inference_steps=_integer(
                options, "num_inference_steps", DEFAULT_STEPS[prefix], minimum=1
            ),
            guidance_scale=_guidance(options, DEFAULT_GUIDANCE[prefix]),
            seed=_integer(options, "seed", secrets.randbelow(MAX_SEED + 1)),
            image=image,
            max_sequence_length=self.max_sequence_length,
        )

    async def _run(self, job: _Job, generation: Generation, output: Path) -> None:
        try:
            async with self._one_at_a_time:
                if job.stop:
                    raise Stopped()
                await asyncio.to_thread(self._generate, job, generation, output)
        except Stopped:
            job.error, job.error_code = "cancelled", "cancelled"
        except ModelUnavailable as problem:
            logger.error("provider %s: %s", self.name, problem)
            job.error, job.error_code = str(problem), "model_unavailable"
        except OutOfMemory as problem:
            logger.error("provider %s: %s", self.name, problem)
            job.error, job.error_code = str(problem), "out_of_memory"
        except Exception as exc:
            logger.exception("provider %s: generation failed", self.name)
            job.error, job.error_code = f"generation failed: {exc}", "generation_failed"
        finally:
            job.done = True

    def _generate(self, job: _Job, generation: Generation, output: Path) -> None:
        # Imports torch: in this thread, not at startup.
        from vidgate.local_models.pipelines import generate, is_loaded, load

        if not is_loaded(self.model):
            started = time.monotonic()
            load(self.model)
            metrics.local_model_loaded(self.name, time.monotonic() - started)
        last_step = time.monotonic()

        def on_step(done: int, total: int) -> None:
            nonlocal last_step
            now = time.monotonic()
            metrics.local_step(self.name, now - last_step)  # the first includes the prompt's
            last_step = now
            job.progress = STEPS_SHARE * done / total

        generated = generate(self.model, generation, on_step=on_step, should_stop=lambda: job.stop)
        if job.stop:
            raise Stopped()
        output.parent.mkdir(parents=True, exist_ok=True)
        encode_mp4(generated.frames, output, fps=generation.fps)
        metrics.local_video(self.name, peak_gpu_memory_bytes=generated.peak_gpu_memory_bytes)


def _integer(options: dict[str, Any], name: str, default: int, *, minimum: int = 0) -> int:
    value = options.get(name)
    if value is None:
        return default
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise LogicalError(f"{name}: must be an integer (got {value!r})") from None
    if not minimum <= number <= MAX_SEED:
        raise LogicalError(f"{name}: must be between {minimum} and {MAX_SEED} (got {number})")
    return number


def _guidance(options: dict[str, Any], default: float) -> float:
    value = options.get("guidance_scale")
    if value is None:
        return default
    try:
        scale = float(value)
    except (TypeError, ValueError):
        raise LogicalError(f"guidance_scale: must be a number (got {value!r})") from None
    if not math.isfinite(scale) or not 0.0 <= scale <= 30.0:
        raise LogicalError(f"guidance_scale: must be between 0 and 30 (got {value!r})")
    return scale


def _load_image(path: Path, size: tuple[int, int]) -> Image.Image:
    """The input image, upright, RGB, cropped to cover the frame."""
    try:
        with Image.open(path) as opened:
            image = ImageOps.exif_transpose(opened).convert("RGB")
    except Exception as exc:  # Pillow raises many kinds for a bad file
        raise LogicalError(f"input image could not be decoded: {exc}") from exc
    return ImageOps.fit(image, size, Image.Resampling.LANCZOS)
