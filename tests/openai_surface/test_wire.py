"""/v1/videos on the wire, against a real `vidgate serve`: the JSON and multipart spellings of
a create, reference images by URL and data URL, Idempotency-Key, the poll hint, the error
shape, failures and refunds, and one set of tasks seen from both surfaces."""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from openai_surface.helpers import balance, mean_rgb, new_account_key, red_png, sdk
from support import GatewayProcess, decode_mp4, static_http_server, wait_for_task

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.filterwarnings("ignore:The Sora API:DeprecationWarning"),
]


@pytest.fixture(scope="module")
def image_server() -> Iterator[str]:
    """A loopback server with a red PNG at /red.png (the gateway allows 127.0.0.0/8 in tests)."""
    with static_http_server({"/red.png": ("image/png", red_png())}) as base_url:
        yield base_url


def post(server: GatewayProcess, path: str, **kwargs: Any) -> httpx.Response:
    headers = {**server.headers, **kwargs.pop("headers", {})}
    return httpx.post(f"{server.base_url}{path}", headers=headers, timeout=10, **kwargs)


def get(server: GatewayProcess, path: str, **kwargs: Any) -> httpx.Response:
    headers = {**server.headers, **kwargs.pop("headers", {})}
    return httpx.get(f"{server.base_url}{path}", headers=headers, timeout=10, **kwargs)


def wait_for_video(server: GatewayProcess, video_id: str, timeout_s: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        video: dict[str, Any] = get(server, f"/v1/videos/{video_id}").json()
        if video["status"] in ("completed", "failed"):
            return video
        time.sleep(0.2)
    raise AssertionError(f"video {video_id} did not end within {timeout_s} s")


def error_of(answer: httpx.Response) -> dict[str, Any]:
    body = answer.json()
    assert set(body) == {"error"}, body
    error: dict[str, Any] = body["error"]
    assert set(error) == {"message", "type", "param", "code"}, error
    return error


def download(server: GatewayProcess, video_id: str, path: Path) -> Path:
    answer = get(server, f"/v1/videos/{video_id}/content")
    assert answer.status_code == 200, answer.text
    path.write_bytes(answer.content)
    return path


def test_a_json_create_with_an_image_url(
    server: GatewayProcess, image_server: str, tmp_path: Path
) -> None:
    body = {
        "prompt": "bring it to life",
        "size": "1280x720",
        "seconds": 4,  # a number is taken as the protocol's "4"
        "input_reference": {"image_url": f"{image_server}/red.png"},
    }
    answer = post(server, "/v1/videos", json=body)
    assert answer.status_code == 200, answer.text
    created = answer.json()
    assert (created["status"], created["progress"], created["seconds"]) == ("queued", 0, "4")
    video = wait_for_video(server, created["id"])
    assert video["status"] == "completed", video
    frames = decode_mp4(download(server, video["id"], tmp_path / "url.mp4"))["frames"]
    red, green, blue = mean_rgb(frames[len(frames) // 2])
    assert red > 150, (red, green, blue)
    assert max(green, blue) < 90, (red, green, blue)


def test_data_urls_and_multipart_image_urls_are_references_too(
    server: GatewayProcess, image_server: str
) -> None:
    data_url = "data:image/png;base64," + base64.b64encode(red_png((64, 48))).decode()
    as_data = post(
        server, "/v1/videos", json={"prompt": "p", "input_reference": {"image_url": data_url}}
    )
    assert as_data.status_code == 200, as_data.text
    form = {"prompt": (None, "p"), "input_reference[image_url]": (None, f"{image_server}/red.png")}
    as_form = post(server, "/v1/videos", files=form)  # multipart/form-data, no file in it
    assert as_form.status_code == 200, as_form.text
    for created in (as_data.json(), as_form.json()):
        assert wait_for_video(server, created["id"])["status"] == "completed"
        mall = get(server, f"/api/v1/videos/{created['id']}").json()["data"]
        assert mall["type"] == "image-to-video"


def test_idempotency_key_replays_the_first_answer_without_a_second_charge(
    server: GatewayProcess, client: openai.OpenAI
) -> None:
    before = balance(server)
    key = {"Idempotency-Key": "openai-surface-replay"}
    upload = ("red.png", red_png(), "image/png")
    first = client.videos.with_raw_response.create(
        prompt="once only", input_reference=upload, seconds="8", extra_headers=key
    )
    client.videos.poll(first.parse().id)
    again = client.videos.with_raw_response.create(
        prompt="once only", input_reference=upload, seconds="8", extra_headers=key
    )
    assert again.headers["idempotent-replayed"] == "true"
    assert again.http_response.content == first.http_response.content
    assert balance(server) == before - 24

    with pytest.raises(openai.ConflictError) as reused:
        client.videos.create(prompt="another request", seconds="8", extra_headers=key)
    assert reused.value.code == "idempotency_key_reused"


def test_the_poll_hint_is_sent_while_a_video_is_in_flight(server: GatewayProcess) -> None:
    created = post(server, "/v1/videos", json={"prompt": "wait for me [slow:1]"})
    assert created.headers["openai-poll-after-ms"] == "2000"
    in_flight = get(server, f"/v1/videos/{created.json()['id']}")
    assert in_flight.json()["status"] in ("queued", "in_progress")
    assert in_flight.headers["openai-poll-after-ms"] == "2000"
    assert "ratelimit" in in_flight.headers
    wait_for_video(server, created.json()["id"])
    done = get(server, f"/v1/videos/{created.json()['id']}")
    assert "openai-poll-after-ms" not in done.headers


def test_a_failed_video_says_why_and_is_refunded(server: GatewayProcess) -> None:
    before = balance(server)
    created = post(server, "/v1/videos", json={"prompt": "a storm [fail: the render broke]"})
    video = wait_for_video(server, created.json()["id"])
    assert video["status"] == "failed"
    assert video["error"] == {"code": "generation_failed", "message": "the render broke"}
    # Charged at create, refunded at the failure (a fast worker may do both before a balance
    # read in between could see the charge): the task's own figures say both happened.
    task = get(server, f"/api/v1/videos/{video['id']}").json()["data"]
    assert (task["credits_used"], task["credits_refunded"]) == (12, 12)
    assert balance(server) == before
    not_ready = get(server, f"/v1/videos/{video['id']}/content")
    assert not_ready.status_code == 404
    assert error_of(not_ready)["code"] == "video_not_ready"


def test_one_set_of_tasks_seen_from_both_surfaces(server: GatewayProcess, tmp_path: Path) -> None:
    ours = post(server, "/v1/videos", json={"prompt": "made on v1", "size": "1280x720"}).json()
    mall = get(server, f"/api/v1/videos/{ours['id']}").json()["data"]
    assert (mall["task_id"], mall["model"], mall["credits_used"]) == (ours["id"], "sora-2", 12)
    history = get(server, "/api/v1/videos/history").json()["data"]["items"]
    assert ours["id"] in [item["task_id"] for item in history]

    body = {"model": "sora2", "prompt": "made on api mall", "aspect_ratio": "portrait"}
    theirs = post(server, "/api/v1/videos/generate", json=body).json()["data"]["task_id"]
    wait_for_task(server, theirs)
    video = get(server, f"/v1/videos/{theirs}").json()
    assert (video["model"], video["size"], video["seconds"]) == ("sora2", "720x1280", "10")
    assert video["status"] == "completed"
    decoded = decode_mp4(download(server, theirs, tmp_path / "mall.mp4"))
    assert (decoded["width"], decoded["height"]) == (720, 1280)
    assert theirs in [item["id"] for item in get(server, "/v1/videos?limit=100").json()["data"]]


def test_content_answers_range_requests(server: GatewayProcess) -> None:
    created = post(server, "/v1/videos", json={"prompt": "seek in me"}).json()
    wait_for_video(server, created["id"])
    path = f"/v1/videos/{created['id']}/content"
    whole = get(server, path)
    part = get(server, path, headers={"Range": "bytes=100-199"})
    assert part.status_code == 206
    assert part.headers["content-range"] == f"bytes 100-199/{len(whole.content)}"
    assert part.content == whole.content[100:200]
    past_the_end = get(server, path, headers={"Range": f"bytes={len(whole.content)}-"})
    assert past_the_end.status_code == 416
    assert error_of(past_the_end)["type"] == "invalid_request_error"


@pytest.mark.parametrize(
    ("request_kwargs", "param", "words"),
    [
        ({"json": {"size": "1280x720"}}, "prompt", "field required"),
        ({"json": {"prompt": "p", "colour": "red"}}, "colour", "not permitted"),
        ({"json": {"prompt": "p", "seconds": "5"}}, "seconds", '"4", "8", "12"'),
        ({"json": {"prompt": "p", "model": "sora-2", "size": "1792x1024"}}, "size", "1280x720"),
        ({"json": {"prompt": "p", "model": "sample", "size": "1280x720"}}, "size", "not an option"),
        ({"content": b"{not json", "headers": {"Content-Type": "application/json"}}, None, "JSON"),
        (
            {"json": {"prompt": "p", "input_reference": {"file_id": "file_1"}}},
            "input_reference.file_id",
            "no Files API",
        ),
        (
            {"json": {"prompt": "p", "input_reference": {"image_url": "ftp://x/a.png"}}},
            "input_reference.image_url",
            "http(s)",
        ),
        (
            {"json": {"prompt": "p", "input_reference": {"image_url": "http://169.254.169.254/"}}},
            "input_reference.image_url",
            "169.254.169.254",
        ),
        (
            {
                "files": {"input_reference": ("a.png", b"not an image", "image/png")},
                "data": {"prompt": "p"},
            },
            "input_reference",
            "PNG, JPEG or WebP",
        ),
    ],
)
def test_bad_creates_name_their_field_and_cost_nothing(
    server: GatewayProcess, request_kwargs: dict[str, Any], param: str | None, words: str
) -> None:
    before = balance(server)
    answer = post(server, "/v1/videos", **request_kwargs)
    assert answer.status_code == 400, answer.text
    error = error_of(answer)
    assert (error["type"], error["param"]) == ("invalid_request_error", param)
    assert words in error["message"]
    assert balance(server) == before


def test_other_refusals_in_the_openai_shape(server: GatewayProcess) -> None:
    unsupported = post(
        server, "/v1/videos", content=b"prompt", headers={"Content-Type": "text/plain"}
    )
    assert unsupported.status_code == 415
    assert error_of(unsupported)["code"] == "unsupported_media_type"

    no_key = httpx.get(f"{server.base_url}/v1/videos", timeout=10)
    assert no_key.status_code == 401
    assert error_of(no_key)["type"] == "authentication_error"

    no_route = get(server, "/v1/nothing-here")
    assert no_route.status_code == 404
    assert error_of(no_route)["type"] == "not_found_error"

    for query, param in (("limit=0", "limit"), ("order=sideways", "order")):
        listed = get(server, f"/v1/videos?{query}")
        assert listed.status_code == 400, listed.text
        assert error_of(listed)["param"] == param
    unknown_cursor = get(server, "/v1/videos?after=vid_x")
    assert unknown_cursor.status_code == 404
    assert error_of(unknown_cursor)["message"].startswith("after: ")

    # The API Mall surface keeps its own envelope.
    mall = get(server, "/api/v1/videos/vid_unknown")
    assert mall.status_code == 404
    assert mall.json()["success"] is False
    assert mall.json()["error"]["code"] == "not_found"


def test_a_create_past_the_balance_is_refused_in_the_openai_shape(server: GatewayProcess) -> None:
    poor = new_account_key(server, credits=5, title="poor")
    with sdk(server, api_key=poor) as client, pytest.raises(openai.APIStatusError) as refused:
        client.videos.create(prompt="too dear", seconds="4")
    assert refused.value.status_code == 402
    assert refused.value.type == "insufficient_quota"
    assert refused.value.code == "insufficient_quota"
    assert balance(server, api_key=poor) == 5
