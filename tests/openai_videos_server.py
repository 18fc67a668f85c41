"""A real /v1/videos upstream on loopback (API-CONTRACT.md §3), enough for the openai SDK.

uvicorn serves it from a background thread. A job moves queued -> in_progress -> completed over
`polls_to_finish` GETs, and its content is a real (tiny) MP4. Prompt markers decide a job's end:
`[fail]` or `[fail: message]` fails it, `[blocked]` fails it with code moderation_blocked;
`[cut]` drops the download mid-body, `[not-video]` serves HTML as its content.
Switches on the instance: `answer` (an Answer: every matching request gets that error status),
`delay_s` (every request waits first), `random_delay_s` (and a random time more). `creates`
records each accepted create: its headers, its fields and the uploaded image, for the tests to
inspect.
"""

from __future__ import annotations

import asyncio
import email.parser
import email.policy
import functools
import itertools
import random
import re
import socket
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from support import free_port
from vidgate.providers.sample_render import RenderSpec, render_sample_video

Handler = Callable[[Request], Awaitable[Response]]
_FAIL = re.compile(r"\[fail(?::\s*([^\]]*))?\]", re.IGNORECASE)


@dataclass
class Answer:
    status: int
    message: str = "the fake upstream was told to refuse"
    code: str | None = None
    retry_after: str | None = None
    method: str | None = None  # only requests of this HTTP method; None: all


@dataclass
class RecordedCreate:
    headers: dict[str, str]
    fields: dict[str, str]  # prompt, model, size, seconds as sent
    reference: bytes | None = None
    reference_type: str | None = None
    as_json: bool = False


@dataclass
class FakeVideo:
    id: str
    fields: dict[str, str]
    created_at: int
    polls: int = 0
    failure: tuple[str, str] | None = None  # (code, message) at its end

    def body(self, status: str, progress: int) -> dict[str, Any]:
        done = status in ("completed", "failed")
        error = None
        if status == "failed" and self.failure is not None:
            error = {"code": self.failure[0], "message": self.failure[1]}
        return {
            "id": self.id, "object": "video", "model": self.fields.get("model", "sora-2"),
            "status": status, "progress": progress, "created_at": self.created_at,
            "completed_at": int(time.time()) if done else None, "expires_at": None,
            "prompt": self.fields.get("prompt"), "size": self.fields.get("size", "720x1280"),
            "seconds": self.fields.get("seconds", "4"), "remixed_from_video_id": None,
            "error": error,
        }  # fmt: skip


@functools.cache
def tiny_mp4() -> bytes:
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "clip.mp4"
        spec = RenderSpec(prompt="fake upstream", width=64, height=48, seconds=0.5, fps=8)
        render_sample_video(spec, path)
        return path.read_bytes()


def _error(status: int, message: str, code: str | None = None) -> JSONResponse:
    body = {"error": {"message": message, "type": "invalid_request_error", "param": None,
                      "code": code}}  # fmt: skip
    return JSONResponse(body, status_code=status)


def _parse_multipart(content_type: str, body: bytes) -> tuple[dict[str, str], Any]:
    """Form fields and the input_reference part (stdlib only: no python-multipart here)."""
    header = f"Content-Type: {content_type}\r\n\r\n".encode()
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(header + body)
    fields: dict[str, str] = {}
    reference = None
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if name == "input_reference":
            reference = part
        elif isinstance(name, str):
            fields[name] = part.get_content().strip()
    return fields, reference


class FakeVideosUpstream:
    def __init__(self, *, api_key: str = "sk-upstream-test", polls_to_finish: int = 3) -> None:
        self.api_key = api_key
        self.polls_to_finish = polls_to_finish
        self.answer: Answer | None = None
        self.delay_s = 0.0
        # Each request also waits a random time in this range (seconds): a provider of random
        # latency, for the chaos test.
        self.random_delay_s: tuple[float, float] | None = None
        self.creates: list[RecordedCreate] = []
        self.videos: dict[str, FakeVideo] = {}
        self._by_key: dict[str, str] = {}  # Idempotency-Key -> video id
        self._ids = itertools.count(1)
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        gated = self._gated
        app = Starlette(routes=[
            Route("/v1/videos", gated(self._create), methods=["POST"]),
            Route("/v1/videos", gated(self._list), methods=["GET"]),
            Route("/v1/videos/{id}", gated(self._retrieve), methods=["GET"]),
            Route("/v1/videos/{id}", gated(self._delete), methods=["DELETE"]),
            Route("/v1/videos/{id}/content", gated(self._content), methods=["GET"]),
        ])  # fmt: skip
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)

    def __enter__(self) -> FakeVideosUpstream:
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("the fake /v1/videos upstream did not start")
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)

    def _gated(self, route: Handler) -> Handler:
        async def handle(request: Request) -> Response:
            return await self._gate(request) or await route(request)

        return handle

    async def _gate(self, request: Request) -> Response | None:
        """The delay, the key check and the `answer` switch, before any route."""
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        if self.random_delay_s is not None:
            await asyncio.sleep(random.uniform(*self.random_delay_s))
        presented = request.headers.get("authorization", "").removeprefix("Bearer ")
        if presented != self.api_key:  # quotes the key, as some upstreams do
            return _error(401, f"Incorrect API key provided: {presented}", "invalid_api_key")
        answer = self.answer
        if answer is None or answer.method not in (None, request.method):
            return None
        response = _error(answer.status, answer.message, answer.code)
        if answer.retry_after is not None:
            response.headers["Retry-After"] = answer.retry_after
        return response

    async def _create(self, request: Request) -> Response:
        content_type = request.headers.get("content-type", "")
        recorded = RecordedCreate(headers=dict(request.headers), fields={})
        if content_type.startswith("multipart/form-data"):
            recorded.fields, part = _parse_multipart(content_type, await request.body())
            if part is not None:
                recorded.reference = part.get_payload(decode=True)
                recorded.reference_type = part.get_content_type()
        else:
            recorded.fields = {key: str(value) for key, value in (await request.json()).items()}
            recorded.as_json = True
        if not recorded.fields.get("prompt"):
            return _error(400, "prompt is required", "missing_prompt")
        self.creates.append(recorded)
        key = request.headers.get("idempotency-key")
        known = self.videos.get(self._by_key.get(key or "", ""))
        if known is not None:  # the same job again, as an upstream honouring the key does
            return JSONResponse(known.body("queued", 0))
        video = FakeVideo(f"video_{next(self._ids):06d}", recorded.fields, int(time.time()))
        prompt = recorded.fields["prompt"]
        if (failed := _FAIL.search(prompt)) is not None:
            video.failure = ("generation_failed", failed.group(1) or "the fake upstream failed")
        elif "[blocked]" in prompt:
            video.failure = ("moderation_blocked", "the prompt was blocked by moderation")
        self.videos[video.id] = video
        if key is not None:
            self._by_key[key] = video.id
        return JSONResponse(video.body("queued", 0))

    def _state(self, video: FakeVideo) -> tuple[str, int]:
        if video.polls >= self.polls_to_finish:
            return ("failed", 100) if video.failure else ("completed", 100)
        if video.polls <= 1:
            return "queued", 0
        return "in_progress", 100 * (video.polls - 1) // (self.polls_to_finish - 1)

    async def _retrieve(self, request: Request) -> Response:
        video = self.videos.get(request.path_params["id"])
        if video is None:
            return _error(404, "no such video", "not_found")
        video.polls += 1
        return JSONResponse(video.body(*self._state(video)))

    async def _content(self, request: Request) -> Response:
        video = self.videos.get(request.path_params["id"])
        if video is None or self._state(video)[0] != "completed":
            return _error(404, "no content for this video", "not_found")
        if request.query_params.get("variant", "video") != "video":
            return _error(400, "only the video variant here", "invalid_variant")
        prompt = video.fields["prompt"]
        data = (
            b"<html>not a video</html>"
            if "[not-video]" in prompt
            else await asyncio.to_thread(tiny_mp4)
        )

        async def chunks() -> AsyncIterator[bytes]:
            for start in range(0, len(data), 4096):
                yield data[start : start + 4096]
                if "[cut]" in prompt:  # the connection drops mid-body
                    raise ConnectionResetError("the fake upstream cut the download short")

        return StreamingResponse(chunks(), media_type="video/mp4")

    async def _delete(self, request: Request) -> Response:
        video_id = request.path_params["id"]
        if self.videos.pop(video_id, None) is None:
            return _error(404, "no such video", "not_found")
        return JSONResponse({"id": video_id, "object": "video.deleted", "deleted": True})

    async def _list(self, request: Request) -> Response:
        after = request.query_params.get("after", "\uffff")
        newest_first = sorted(
            (v for v in self.videos.values() if v.id < after), key=lambda v: v.id
        )[::-1]
        limit = int(request.query_params.get("limit", "20"))
        page = [video.body(*self._state(video)) for video in newest_first[:limit]]
        return JSONResponse({
            "object": "list", "data": page, "has_more": len(newest_first) > limit,
            "first_id": page[0]["id"] if page else None,
            "last_id": page[-1]["id"] if page else None,
        })  # fmt: skip


@contextmanager
def dropping_server() -> Iterator[str]:
    """A loopback port that accepts a connection, reads the request and hangs up unanswered:
    the request reached the upstream but its answer was lost. Yields a base URL."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                connection, _ = listener.accept()
            except TimeoutError:
                continue
            with connection:
                connection.settimeout(2)
                with suppress(OSError):
                    connection.recv(65536)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}/v1"
    finally:
        stop.set()
        thread.join(timeout=5)
        listener.close()
