"""Which result URLs the worker fetches without the public-address check: only those on the
provider's own (operator-configured) host. The runner here has no allow-list at all, so every
loopback fetch that is not trusted is refused."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest

import test_worker
from support import static_http_server
from test_worker import Harness
from vidgate.net.fetch import FetchPolicy
from vidgate.providers.base import JobState, JobStatus
from vidgate.worker.runner import TaskRunner

harness = test_worker.harness  # the same fixture: a runner over two in-memory providers
MP4 = b"\x00\x00\x00\x18ftypisom" + b"\x00" * 200
NO_ALLOW_LIST = FetchPolicy(max_bytes=1 << 20, timeout_s=5)


@pytest.fixture
def result_url() -> Iterator[str]:
    with static_http_server({"/result.mp4": ("video/mp4", MP4)}) as base_url:
        yield f"{base_url}/result.mp4"


def strict_runner(harness: Harness) -> TaskRunner:
    runner = harness.runner()
    runner.result_policy = NO_ALLOW_LIST
    runner.input_policy = NO_ALLOW_LIST
    return runner


async def run_to_result(harness: Harness, url: str) -> str:
    task_id = await harness.create()
    await harness.step(task_id)  # submitted to primary
    harness.primary.poll_script.append(
        JobStatus(state=JobState.SUCCEEDED, progress=100, result_urls=(url,))
    )
    await harness.make_due(task_id)
    assert task_id in await harness.claim()
    await strict_runner(harness).run(task_id)
    return task_id


async def test_a_result_on_the_providers_own_host_is_fetched_even_if_private(
    harness: Harness, result_url: str
) -> None:
    harness.primary.trusted_hosts = frozenset({urlsplit(result_url).netloc})
    task_id = await run_to_result(harness, result_url)
    task = await harness.task(task_id)
    assert task.status == "completed"
    stored = harness.store.path_of(f"{task_id}.mp4")
    assert stored is not None
    assert stored.read_bytes() == MP4


async def test_a_result_on_any_other_private_host_is_refused(
    harness: Harness, result_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    harness.primary.trusted_hosts = frozenset({"upstream.internal:443"})
    with caplog.at_level(logging.WARNING, logger="vidgate.worker"):
        task_id = await run_to_result(harness, result_url)
    assert "could not download the result" in caplog.text
    assert "not a public address" in caplog.text
    task = await harness.task(task_id)
    assert task.status == "processing"
    assert task.file_key is None
    assert task.attempts == 1  # a technical error: retried later, never stored
    assert harness.store.path_of(f"{task_id}.mp4") is None


def test_trust_does_not_leak_into_the_shared_policy() -> None:
    # The runner copies its result policy per provider; the gateway's stays as configured.
    trusted = dataclasses.replace(NO_ALLOW_LIST, trusted_hosts=frozenset({"a:1"}))
    assert NO_ALLOW_LIST.trusted_hosts == frozenset()
    assert trusted.trusted_hosts == frozenset({"a:1"})
