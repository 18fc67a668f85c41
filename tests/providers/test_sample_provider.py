"""The sample provider as the worker sees it: submit, poll, lost jobs, failure injection."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from vidgate.providers.base import GenerationRequest, JobLost, JobState, TechnicalError
from vidgate.providers.sample import DEFAULT_FAILURE, SampleProvider, parse_injection


def request(prompt: str, task_id: str = "vid_1") -> GenerationRequest:
    return GenerationRequest(
        task_id=task_id,
        model="sample",
        upstream_model=None,
        type="text-to-video",
        prompt=prompt,
        options={},
        seconds=1,
        width=64,
        height=64,
    )


async def finish(provider: SampleProvider, upstream_id: str) -> JobState:
    for _ in range(200):
        status = await provider.poll(upstream_id)
        if status.state != JobState.RUNNING:
            return status.state
        await asyncio.sleep(0.05)
    raise AssertionError("sample job did not finish")


@pytest.mark.parametrize(
    ("prompt", "clean", "fail", "slow", "flaky"),
    [
        ("a cat", "a cat", None, 0.0, 0),
        ("a cat [fail]", "a cat", DEFAULT_FAILURE, 0.0, 0),
        ("[FAIL: gpu on fire] a cat", "a cat", "gpu on fire", 0.0, 0),
        ("a [slow:1.5] cat [flaky:2]", "a cat", None, 1.5, 2),
    ],
)
def test_parse_injection(
    prompt: str, clean: str, fail: str | None, slow: float, flaky: int
) -> None:
    text, injection = parse_injection(prompt)
    assert text == clean
    assert (injection.fail, injection.slow_seconds, injection.flaky_submits) == (fail, slow, flaky)


async def test_renders_and_reports_the_file(tmp_path: Path) -> None:
    provider = SampleProvider(work_dir=tmp_path)
    submission = await provider.submit(request("a cat"))
    assert await finish(provider, submission.upstream_id) == JobState.SUCCEEDED
    # Asked again (e.g. after the store step failed), it still reports the finished file.
    status = await provider.poll(submission.upstream_id)
    assert status.result_file == tmp_path / f"{submission.upstream_id}.mp4"
    assert status.result_file.stat().st_size > 0


async def test_markers_are_ignored_unless_injection_is_on(tmp_path: Path) -> None:
    provider = SampleProvider(work_dir=tmp_path)
    submission = await provider.submit(request("a cat [fail: no]"))
    assert await finish(provider, submission.upstream_id) == JobState.SUCCEEDED


async def test_injected_failure_and_flakiness(tmp_path: Path) -> None:
    provider = SampleProvider(work_dir=tmp_path, failure_injection=True)
    failing = await provider.submit(request("x [fail: boom]", task_id="vid_f"))
    assert await finish(provider, failing.upstream_id) == JobState.FAILED

    for _ in range(2):
        with pytest.raises(TechnicalError, match="flaky on purpose"):
            await provider.submit(request("x [flaky:2]", task_id="vid_flaky"))
    accepted = await provider.submit(request("x [flaky:2]", task_id="vid_flaky"))
    assert await finish(provider, accepted.upstream_id) == JobState.SUCCEEDED


async def test_unknown_job_is_lost(tmp_path: Path) -> None:
    """What a restarted process sees for a job that was rendering before the crash."""
    provider = SampleProvider(work_dir=tmp_path)
    with pytest.raises(JobLost):
        await provider.poll("sample_vid_from_before_the_crash")
    assert provider.runs_locally is True


async def test_image_input_is_the_background_even_once_the_caller_deleted_it(
    tmp_path: Path,
) -> None:
    fetched = tmp_path / "fetched.png"
    Image.new("RGB", (64, 48), (220, 20, 20)).save(fetched)
    work_dir = tmp_path / "work"
    provider = SampleProvider(work_dir=work_dir)
    image_request = dataclasses.replace(
        request("a red wall"), type="image-to-video", width=320, height=180, images=(fetched,)
    )

    submission = await provider.submit(image_request)
    fetched.unlink()  # the worker cleans up its fetched inputs right after submit
    assert await finish(provider, submission.upstream_id) == JobState.SUCCEEDED

    status = await provider.poll(submission.upstream_id)
    assert status.result_file is not None
    with av.open(str(status.result_file)) as container:
        frame = next(container.decode(video=0)).to_ndarray(format="rgb24")
    # Between the banner and the prompt box the input image shows through.
    r, g, b = np.asarray(frame)[54:81, 40:-40].reshape(-1, 3).mean(axis=0)
    assert r > 180 > 60 > max(g, b)
    # The provider's own copy of the input is gone with the job.
    assert sorted(p.name for p in work_dir.iterdir()) == [status.result_file.name]
