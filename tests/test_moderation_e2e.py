"""Content moderation end to end: a real `vidgate serve` with a moderation file (words, a
pattern, a model's own list, an external endpoint on loopback reached through the openai SDK).
A blocked prompt is a 451 `content_blocked` that is not cached and changes nothing (balance,
task list, Idempotency-Key); an allowed one is charged and completes; an endpoint that cannot
answer is a 503; a broken moderation file stops serve with one line."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from moderation.fake_endpoint import FakeModerationEndpoint, moderation_endpoint
from support import GatewayProcess, free_port, wait_for_task

pytestmark = pytest.mark.e2e

GENERATE = "/api/v1/videos/generate"
ENDPOINT_KEY = "sk-e2e-moderation-key-42"
# The smallest clip each model renders (the sample provider runs them all).
SHAPES = {"sample": {"duration": "1", "resolution": "240p"}, "sora2": {"n_frames": "10"}}


def moderation_file(directory: Path, base_url: str) -> Path:
    (directory / "moderation.key").write_text(ENDPOINT_KEY + "\n")
    path = directory / "moderation.toml"
    path.write_text(
        f"""
words = ["gore"]
patterns = ['\\bkill(ed)?\\s+him\\b']

[models.sample]
words = ["celebrity"]

[external]
base_url = "{base_url}"
api_key_file = "moderation.key"
timeout_s = 2
max_retries = 0
"""
    )
    return path


@pytest.fixture(scope="module")
def endpoint() -> Iterator[FakeModerationEndpoint]:
    with moderation_endpoint() as running:
        yield running


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, endpoint: FakeModerationEndpoint
) -> Iterator[GatewayProcess]:
    root = tmp_path_factory.mktemp("moderation_e2e")
    env = {"VIDGATE_MODERATION_PATH": str(moderation_file(root, endpoint.base_url))}
    gateway = GatewayProcess(root / "gateway", env=env).start()
    yield gateway
    gateway.stop()


@pytest.fixture(autouse=True)
def fresh_endpoint(endpoint: FakeModerationEndpoint) -> Iterator[None]:
    endpoint.requests.clear()
    yield
    endpoint.mode = "ok"


def create(
    server: GatewayProcess, prompt: str, *, model: str = "sample", key: str | None = None
) -> httpx.Response:
    headers = dict(server.headers)
    if key is not None:
        headers["Idempotency-Key"] = key
    body = {"model": model, "prompt": prompt, **SHAPES[model]}
    return httpx.post(f"{server.base_url}{GENERATE}", json=body, headers=headers, timeout=10)


def account_state(server: GatewayProcess) -> tuple[int, list[tuple[str, int]]]:
    """The balance and the task list (ids and prices; an earlier test's task may still be
    moving on), as the user sees them."""
    balance = httpx.get(
        f"{server.base_url}/api/v1/account/balances", headers=server.headers, timeout=5
    )
    history = httpx.get(
        f"{server.base_url}/api/v1/videos/history", headers=server.headers, timeout=5
    )
    assert balance.status_code == history.status_code == 200
    items: list[dict[str, Any]] = history.json()["data"]["items"]
    return balance.json()["data"]["credits"], [(t["task_id"], t["credits_used"]) for t in items]


BLOCKED = {
    "word": ("a scene full of GORE", "sample", False),
    "evaded_word": ("a scene full of \uff47\uff4f\u200b\uff52\uff45", "sample", False),  # fullwidth
    "pattern": ("then he killed  him", "sample", False),
    "model_word": ("a celebrity dancing", "sample", False),
    "external": ("a duel flag:violence", "sora2", True),
}


@pytest.mark.parametrize("case", BLOCKED)
def test_a_blocked_prompt_is_an_uncached_451_that_changes_nothing(
    server: GatewayProcess, endpoint: FakeModerationEndpoint, case: str
) -> None:
    prompt, model, judged_by_endpoint = BLOCKED[case]
    before = account_state(server)
    response = create(server, prompt, model=model)
    assert response.status_code == 451, response.text
    assert response.headers["Cache-Control"] == "no-store"
    body = response.json()
    assert body["success"] is False
    assert body["error"]["code"] == "content_blocked"
    assert body["request_id"] == response.headers["X-Request-Id"]
    assert "gore" not in body["error"]["message"].lower()  # the list is not echoed
    assert account_state(server) == before
    # The lists run first: the endpoint only sees prompts they let through.
    assert len(endpoint.requests) == (1 if judged_by_endpoint else 0)


def test_a_model_without_its_own_list_is_not_held_to_another_models(
    server: GatewayProcess,
) -> None:
    response = create(server, "a celebrity dancing", model="sora2")
    assert response.status_code == 200, response.text


def test_an_allowed_prompt_is_charged_and_completes(
    server: GatewayProcess, endpoint: FakeModerationEndpoint
) -> None:
    credits, _history = account_state(server)
    response = create(server, "a quiet lake at dawn")
    assert response.status_code == 200, response.text
    created = response.json()["data"]
    assert [seen.body["input"] for seen in endpoint.requests] == ["a quiet lake at dawn"]
    assert endpoint.requests[0].authorization == f"Bearer {ENDPOINT_KEY}"
    task = wait_for_task(server, created["task_id"])
    assert task["status"] == "completed", task
    assert account_state(server)[0] == credits - created["credits_used"]


def test_a_blocked_request_leaves_no_idempotency_key_behind(server: GatewayProcess) -> None:
    key = f"moderation-{uuid.uuid4()}"
    for _attempt in range(2):  # a retry is judged again, never replayed
        blocked = create(server, "gore at dawn", key=key)
        assert blocked.status_code == 451
        assert "Idempotent-Replayed" not in blocked.headers
    # The key is still free: a fixed prompt under it is a new task, not a 409 for another body.
    first = create(server, "a calm dawn", key=key)
    assert first.status_code == 200, first.text
    assert "Idempotent-Replayed" not in first.headers
    again = create(server, "a calm dawn", key=key)
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json()["data"]["task_id"] == first.json()["data"]["task_id"]
    rows = server.query("SELECT task_id FROM idempotency_keys WHERE key = %s", key)
    assert rows == [(first.json()["data"]["task_id"],)]


def test_an_endpoint_that_cannot_answer_is_a_503_not_a_451(
    server: GatewayProcess, endpoint: FakeModerationEndpoint
) -> None:
    before = account_state(server)
    endpoint.mode, endpoint.status = "status", 502
    response = create(server, "a quiet lake")
    assert response.status_code == 503, response.text
    assert response.json()["error"]["code"] == "upstream_unavailable"
    assert response.headers["Retry-After"] == "5"
    assert account_state(server) == before
    assert ENDPOINT_KEY not in server.log()


# -- a broken moderation file stops serve -------------------------------------------------

SECRET = "sk-never-shown-0000"
BROKEN = {
    "regex": ('[models.sample]\npatterns = ["ok", "(x"]\n', "models.sample.patterns[1]"),
    "unknown_key": ('words = ["a"]\nwordz = ["b"]\n', "wordz"),
    "unknown_model": ('[models.sora9]\nwords = ["a"]\n', "models.sora9"),
    "inline_key": (
        f'[external]\nbase_url = "https://m.example/v1"\napi_key = "{SECRET}"\n',
        "external.api_key",
    ),
    "unset_env": (
        '[external]\nbase_url = "https://m.example/v1"\napi_key_env = "VIDGATE_TEST_UNSET"\n',
        "external.api_key_env",
    ),
}


@pytest.mark.parametrize("kind", BROKEN)
def test_a_broken_moderation_file_stops_serve_with_one_line(tmp_path: Path, kind: str) -> None:
    text, field = BROKEN[kind]
    path = tmp_path / f"broken-{kind}.toml"
    path.write_text(text)
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIDGATE_")}
    env |= {"VIDGATE_DATA_DIR": str(tmp_path / "data"), "VIDGATE_MODERATION_PATH": str(path)}
    done = subprocess.run(
        [sys.executable, "-m", "vidgate", "serve", "--port", str(free_port())],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith(f"error: moderation {path}: {field}: ")
    assert "Traceback" not in done.stderr + done.stdout
    assert SECRET not in done.stderr + done.stdout
    assert "sk-" not in done.stdout  # stopped before making the first key
