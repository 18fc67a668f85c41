"""GET /api/v1/videos/{task_id}/events, the live status stream, read as a client reads it:
raw Server-Sent Events from real `vidgate serve` processes."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from support import GatewayProcess, create_key_with_cli

pytestmark = pytest.mark.e2e

# A render long enough to report progress a few times (~1 s here), short enough for CI.
RENDER = {"model": "sample", "duration": "5", "resolution": "480p"}


@dataclass(frozen=True)
class Event:
    id: int
    kind: str
    data: dict[str, Any]


def generate(server: GatewayProcess, prompt: str) -> str:
    response = httpx.post(
        f"{server.base_url}/api/v1/videos/generate",
        json={**RENDER, "prompt": prompt},
        headers=server.headers,
        timeout=10,
    )
    assert response.status_code == 200, response.text
    task_id: str = response.json()["data"]["task_id"]
    return task_id


def events_url(server: GatewayProcess, task_id: str) -> str:
    return f"{server.base_url}/api/v1/videos/{task_id}/events"


def parse(lines: Iterator[str]) -> Iterator[Event]:
    """Our own reading of the wire: `field: value` lines, a blank line ends an event, `:` a
    comment."""
    fields: dict[str, str] = {}
    for line in lines:
        if line.startswith(":"):
            continue
        if line:
            name, _, value = line.partition(": ")
            fields[name] = value
        elif fields:
            yield Event(id=int(fields["id"]), kind=fields["event"], data=json.loads(fields["data"]))
            fields = {}


def read_events(
    server: GatewayProcess,
    task_id: str,
    *,
    last_event_id: int | None = None,
    keep: int | None = None,
) -> list[Event]:
    """The events of one connection, until the server ends it, or the first `keep` of them
    (then the connection is dropped)."""
    headers = dict(server.headers)
    if last_event_id is not None:
        headers["Last-Event-ID"] = str(last_event_id)
    seen: list[Event] = []
    with httpx.stream("GET", events_url(server, task_id), headers=headers, timeout=30) as response:
        assert response.status_code == 200, response.read()
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["cache-control"] == "no-cache"
        for event in parse(response.iter_lines()):
            seen.append(event)
            if len(seen) == keep:
                break  # leaving the block drops the connection
    return seen


def status_view(server: GatewayProcess, task_id: str) -> dict[str, Any]:
    response = httpx.get(
        f"{server.base_url}/api/v1/videos/{task_id}", headers=server.headers, timeout=10
    )
    data: dict[str, Any] = response.json()["data"]
    return data


@pytest.fixture
def api_only(tmp_path: Path) -> Iterator[GatewayProcess]:
    """`serve --no-worker`: its tasks stay pending until cancelled."""
    server = GatewayProcess(tmp_path / "api", serve_args=("--no-worker",)).start()
    yield server
    server.stop()


def test_a_client_sees_every_event_in_order_until_the_end(live_gateway: GatewayProcess) -> None:
    task_id = generate(live_gateway, "a windmill at dawn")
    events = read_events(live_gateway, task_id)  # the server ends it after the last event

    kinds = [event.kind for event in events]
    assert kinds[:2] == ["created", "submitted"]
    assert kinds[-1] == "completed"
    assert set(kinds[2:-1]) <= {"progress"}
    assert [e.id for e in events] == sorted({e.id for e in events})  # increasing, no repeats
    statuses = [event.data["status"] for event in events]
    assert statuses == ["pending"] + ["processing"] * (len(events) - 2) + ["completed"]
    progress = [event.data["data"]["progress"] for event in events if event.kind == "progress"]
    assert progress == sorted(progress)
    assert all(0 < value < 100 for value in progress)
    # Which channel and which upstream job are the operator's business, as on the status poll.
    assert events[1].data["data"] == {}
    assert all(event.data["task"] is None for event in events[:-1])
    assert all(event.data["created_at"].endswith("Z") for event in events)

    ended = events[-1].data["task"]
    assert (ended["task_id"], ended["status"], ended["progress"]) == (task_id, "completed", 100)
    assert ended["video_url"]
    assert ended == status_view(live_gateway, task_id)
    # Read again after the end: the same events, then the end.
    assert read_events(live_gateway, task_id) == events


def test_a_reconnect_with_last_event_id_misses_none_and_repeats_none(
    live_gateway: GatewayProcess,
) -> None:
    task_id = generate(live_gateway, "a slow tide [slow:1]")
    first = read_events(live_gateway, task_id, keep=2)  # dropped mid-task
    assert [event.kind for event in first] == ["created", "submitted"]
    rest = read_events(live_gateway, task_id, last_event_id=first[-1].id)
    assert rest
    assert rest[-1].kind == "completed"
    everything = read_events(live_gateway, task_id)
    assert first + rest == everything

    # A client that saw the end already gets an empty stream, at once.
    started = time.monotonic()
    assert read_events(live_gateway, task_id, last_event_id=everything[-1].id) == []
    assert time.monotonic() - started < 2
    # From the middle: exactly what followed.
    middle = everything[len(everything) // 2]
    after = read_events(live_gateway, task_id, last_event_id=middle.id)
    assert after == everything[len(everything) // 2 + 1 :]
    # An id that is none of this task's events (another stream's) starts from the first.
    assert read_events(live_gateway, task_id, last_event_id=10**15) == everything
    assert read_events(live_gateway, task_id, last_event_id=0) == everything


def test_a_cancel_ends_the_stream_with_the_task_as_failed_and_cancelled(
    api_only: GatewayProcess,
) -> None:
    task_id = generate(api_only, "never rendered")
    with ThreadPoolExecutor(max_workers=1) as pool:
        reading = pool.submit(read_events, api_only, task_id)
        time.sleep(0.8)  # the stream is open and waiting for news
        assert not reading.done()
        cancelled = httpx.post(
            f"{api_only.base_url}/api/v1/videos/{task_id}/cancel",
            headers=api_only.headers,
            timeout=10,
        )
        assert cancelled.status_code == 200, cancelled.text
        events = reading.result(timeout=10)
    assert [event.kind for event in events] == ["created", "cancelled"]
    last = events[-1].data
    assert (last["status"], last["data"]) == ("failed", {"refunded": True})
    assert (last["task"]["status"], last["task"]["error_code"]) == ("failed", "cancelled")
    assert last["task"] == cancelled.json()["data"]


def test_keys_and_owners_are_checked_before_the_stream_starts(api_only: GatewayProcess) -> None:
    task_id = generate(api_only, "private")
    url = events_url(api_only, task_id)

    def refused(headers: dict[str, str]) -> tuple[int, str, str]:
        response = httpx.get(url, headers=headers, timeout=10)
        return (
            response.status_code,
            response.headers["content-type"],
            response.json()["error"]["code"],
        )

    assert refused({}) == (401, "application/json", "unauthorized")
    stranger = create_key_with_cli(api_only.env, title="stranger", credits=5)
    assert refused({"Authorization": f"Bearer {stranger}"}) == (
        404,
        "application/json",
        "not_found",
    )
    bad_id = {**api_only.headers, "Last-Event-ID": "yesterday"}
    assert refused(bad_id) == (400, "application/json", "invalid_request")
    assert httpx.get(events_url(api_only, "vid_nope"), headers=api_only.headers).status_code == 404
