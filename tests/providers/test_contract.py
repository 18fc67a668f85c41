"""The provider contract: one set of tests every provider passes (sample, memory, apimall,
openai). Each rig builds a real provider against what it talks to (a local renderer, a script,
a second vidgate process, a loopback /v1/videos server) and says how to make a job fail.

What the worker relies on, and so what is checked here:
- it declares what it is (name, local or remote, cap, trusted hosts, poll interval);
- submit returns an id, and each submit of a new task is a new job;
- a job is polled to SUCCEEDED with a result the worker can store: a file, or a URL whose
  bytes are a video; progress stays within 0-100 and does not go back;
- a job that fails upstream is reported as FAILED with the upstream's reason, not raised;
- a job the provider never issued is JobLost;
- check() reports a healthy provider as reachable and not unauthenticated.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import httpx
import pytest

from openai_videos_server import FakeVideosUpstream
from support import GatewayProcess
from vidgate.net.fetch import sniff_kind
from vidgate.providers.apimall import ApiMallProvider
from vidgate.providers.base import (
    GenerationRequest,
    JobLost,
    JobState,
    JobStatus,
    Provider,
)
from vidgate.providers.config import ProviderConfig
from vidgate.providers.memory import InMemoryProvider
from vidgate.providers.openai_videos import OpenAIVideosProvider
from vidgate.providers.sample import SampleProvider

# The SDK marks its video methods deprecated (OpenAI's Sora API closes); the protocol lives on.
pytestmark = pytest.mark.filterwarnings("ignore:The Sora API:DeprecationWarning")

FAILURE = "the contract asks this job to fail"
MP4_HEAD = b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 64


@dataclass
class Rig:
    provider: Provider
    request: GenerationRequest
    # Prepare the provider's counterpart for the next job's outcome ("succeed" or "fail") and
    # return the prompt that asks for it.
    prepare: Callable[[str], str]
    closers: list[Callable[[], None]] = field(default_factory=list)

    def new_request(self, outcome: str) -> GenerationRequest:
        prompt = self.prepare(outcome)
        return replace(self.request, task_id=f"vid_contract_{uuid.uuid4().hex}", prompt=prompt)


def marker_prompt(outcome: str) -> str:
    # The sample renderer (with failure injection), a vidgate upstream and the fake /v1/videos
    # server all read the same marker.
    return f"a contract clip [fail: {FAILURE}]" if outcome == "fail" else "a contract clip"


BASE_REQUEST = GenerationRequest(
    task_id="vid_contract",
    model="sample",
    upstream_model="sample",
    type="text-to-video",
    prompt="",
    options={"duration": "1", "resolution": "240p"},
    seconds=1,
    width=426,
    height=240,
)


@pytest.fixture(scope="module")
def vidgate_upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    server = GatewayProcess(tmp_path_factory.mktemp("contract") / "upstream").start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def videos_upstream() -> Iterator[FakeVideosUpstream]:
    with FakeVideosUpstream(polls_to_finish=2) as server:
        yield server


def sample_rig(tmp_path: Path, **_: object) -> Rig:
    provider = SampleProvider(work_dir=tmp_path / "sample", failure_injection=True)
    return Rig(provider, BASE_REQUEST, marker_prompt)


def memory_rig(tmp_path: Path, **_: object) -> Rig:
    provider = InMemoryProvider(name="memory")
    result = tmp_path / "memory-result.mp4"
    result.write_bytes(MP4_HEAD)

    def prepare(outcome: str) -> str:
        provider.poll_script.clear()
        provider.poll_script.append(JobStatus(state=JobState.RUNNING, progress=30))
        provider.poll_script.append(
            JobStatus(state=JobState.FAILED, error=FAILURE)
            if outcome == "fail"
            else JobStatus(state=JobState.SUCCEEDED, progress=100, result_file=result)
        )
        return "a scripted clip"

    return Rig(provider, BASE_REQUEST, prepare)


def apimall_rig(tmp_path: Path, *, vidgate_upstream: GatewayProcess, **_: object) -> Rig:
    provider = ApiMallProvider(
        name="apimall",
        base_url=vidgate_upstream.base_url,
        api_key=vidgate_upstream.api_key,
        poll_interval_s=0.2,
        max_poll_interval_s=0.5,
    )
    return Rig(provider, BASE_REQUEST, marker_prompt)


def openai_rig(tmp_path: Path, *, videos_upstream: FakeVideosUpstream, **_: object) -> Rig:
    config = ProviderConfig(
        name="openai",
        kind="openai",
        base_url=videos_upstream.base_url,
        api_key=videos_upstream.api_key,
        poll_interval_s=0.1,
    )
    provider = OpenAIVideosProvider.from_config(config, work_dir=tmp_path / "openai")
    request = replace(BASE_REQUEST, upstream_model="sora-2", width=1280, height=720)
    return Rig(provider, request, marker_prompt)


RIGS = {"sample": sample_rig, "memory": memory_rig, "apimall": apimall_rig, "openai": openai_rig}


@pytest.fixture(params=sorted(RIGS))
async def rig(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Rig]:
    counterparts: dict[str, object] = {}
    if request.param == "apimall":
        counterparts["vidgate_upstream"] = request.getfixturevalue("vidgate_upstream")
    if request.param == "openai":
        counterparts["videos_upstream"] = request.getfixturevalue("videos_upstream")
    built = RIGS[request.param](tmp_path, **counterparts)
    yield built
    await built.provider.close()


async def run_to_end(provider: Provider, upstream_id: str, timeout_s: float = 60) -> JobStatus:
    deadline = time.monotonic() + timeout_s
    last_progress = 0
    while time.monotonic() < deadline:
        status = await provider.poll(upstream_id)
        assert 0 <= status.progress <= 100
        if status.state is not JobState.RUNNING:
            return status
        assert status.progress >= last_progress, "progress went back"
        last_progress = status.progress
        await asyncio.sleep(0.1)
    raise AssertionError(f"{provider.name}: job {upstream_id} still running after {timeout_s}s")


async def test_it_declares_what_it_is(rig: Rig) -> None:
    provider = rig.provider
    assert provider.name
    assert isinstance(provider.runs_locally, bool)
    assert isinstance(provider.trusted_hosts, frozenset)
    assert provider.max_concurrent is None or provider.max_concurrent >= 1
    assert provider.poll_interval_s is None or provider.poll_interval_s > 0
    if provider.max_poll_interval_s is not None:
        assert provider.max_poll_interval_s >= (provider.poll_interval_s or 0)


async def test_a_job_runs_to_a_result_the_worker_can_store(rig: Rig) -> None:
    submission = await rig.provider.submit(rig.new_request("succeed"))
    assert submission.upstream_id
    status = await run_to_end(rig.provider, submission.upstream_id)
    assert status.state is JobState.SUCCEEDED, status.error
    if status.result_file is not None:
        head = status.result_file.read_bytes()[:64]
    else:
        assert status.result_urls, "a success needs a file or a URL"
        async with httpx.AsyncClient(timeout=30) as http:
            head = (await http.get(status.result_urls[0])).content[:64]
    assert sniff_kind(head) == "video/mp4"


async def test_each_new_task_is_a_new_job(rig: Rig) -> None:
    first = await rig.provider.submit(rig.new_request("succeed"))
    second = await rig.provider.submit(rig.new_request("succeed"))
    assert first.upstream_id != second.upstream_id
    await run_to_end(rig.provider, first.upstream_id)
    await run_to_end(rig.provider, second.upstream_id)


async def test_an_upstream_failure_is_reported_with_its_reason_not_raised(rig: Rig) -> None:
    submission = await rig.provider.submit(rig.new_request("fail"))
    status = await run_to_end(rig.provider, submission.upstream_id)
    assert status.state is JobState.FAILED
    assert status.error is not None
    assert FAILURE in status.error


async def test_a_job_it_never_issued_is_lost(rig: Rig) -> None:
    with pytest.raises(JobLost):
        await rig.provider.poll(f"vid_never_issued_{uuid.uuid4().hex[:8]}")


async def test_a_healthy_provider_checks_out(rig: Rig) -> None:
    check = await rig.provider.check()
    assert check.reachable, check.detail
    assert check.authenticated is not False, check.detail
