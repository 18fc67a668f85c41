"""The `apimall` provider: API Mall's own protocol (the seed), so vidgate can sit in front of
API Mall or of another vidgate.

Submit is `POST /api/v1/videos/generate` with our task id as the Idempotency-Key, so asking
again after a lost answer returns the same upstream task instead of a second one (and a
second charge). Poll is `GET /api/v1/videos/{task_id}`. How each answer maps onto the
provider interface (providers/base.py):

  2xx                         accepted / the job's status
  400, 404, 422 (submit)      LogicalError: the upstream's reason, shown to the user
  451                         LogicalError(code=content_blocked)
  401, 403, 402               ChannelFault: our credentials or credit upstream; fail over
  429, 503                    TechnicalError with the upstream's Retry-After (s or a date)
  other 5xx (submit)          SubmitUncertain: a proxy's 502/504 may hide an accepted job
  no connection made          TechnicalError: nothing reached the upstream; fail over
  timeout, connection lost    SubmitUncertain while submitting: same channel, same key
  404 (poll)                  JobLost: the upstream no longer knows the job

Error texts name the channel and the upstream's words, never our key.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, NoReturn

import httpx

from vidgate.providers.base import (
    ChannelFault,
    GenerationRequest,
    JobLost,
    JobState,
    JobStatus,
    LogicalError,
    ProviderCheck,
    Submission,
    SubmitUncertain,
    TechnicalError,
)
from vidgate.providers.config import ProviderConfig
from vidgate.providers.http_hints import retry_after_s

GENERATE_PATH = "/api/v1/videos/generate"
TASK_PATH = "/api/v1/videos/{task_id}"
BALANCE_PATH = "/api/v1/account/balances"
USER_AGENT = "vidgate-apimall/1"
# The upstream's error codes that we pass on as our own task error codes.
KNOWN_FAILURE_CODES = frozenset({"content_blocked", "timeout", "invalid_input"})
UPSTREAM_MESSAGE_CHARS = 500


class ApiMallProvider:
    runs_locally = False

    def __init__(
        self,
        *,
        name: str,
        base_url: str,
        api_key: str | None,
        connect_timeout_s: float = 5.0,
        request_timeout_s: float = 30.0,
        poll_interval_s: float = 5.0,
        max_poll_interval_s: float | None = 30.0,
        max_concurrent: int | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.name = name
        self.poll_interval_s: float | None = poll_interval_s
        self.max_poll_interval_s = max_poll_interval_s
        self.max_concurrent = max_concurrent
        url = httpx.URL(base_url)
        self.trusted_hosts = frozenset({_host_key(url)})
        headers = {"User-Agent": USER_AGENT, "Accept": "application/json"}
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        self._client = httpx.AsyncClient(
            base_url=base_url,
            headers=headers,
            timeout=httpx.Timeout(request_timeout_s, connect=connect_timeout_s),
            transport=transport,
            trust_env=False,  # the operator's base URL is the address; no proxy rewrites it
            follow_redirects=False,
        )

    @classmethod
    def from_config(cls, config: ProviderConfig, *, work_dir: Path) -> ApiMallProvider:
        return cls(
            name=config.name,
            base_url=config.base_url,
            api_key=config.api_key,
            connect_timeout_s=config.connect_timeout_s,
            request_timeout_s=config.request_timeout_s,
            poll_interval_s=config.poll_interval_s,
            max_poll_interval_s=config.max_poll_interval_s,
            max_concurrent=config.max_concurrent,
        )

    # -- the provider interface ------------------------------------------------------------

    async def submit(self, request: GenerationRequest) -> Submission:
        body: dict[str, Any] = {
            "model": request.upstream_model or request.model,
            "type": request.type,
            **request.options,
        }
        if request.prompt:
            body["prompt"] = request.prompt
        if request.image_urls:
            body["image_urls"] = list(request.image_urls)
        try:
            response = await self._client.post(
                GENERATE_PATH, json=body, headers={"Idempotency-Key": request.task_id}
            )
        except (httpx.ConnectError, httpx.ConnectTimeout) as error:
            raise TechnicalError(f"{self.name}: cannot connect ({_reason(error)})") from None
        except httpx.TransportError as error:
            raise SubmitUncertain(
                f"{self.name}: the answer to our submit was lost ({_reason(error)}); "
                "asking again with the same Idempotency-Key"
            ) from None
        if response.status_code >= 500 and response.status_code != 503:
            raise SubmitUncertain(
                f"{self.name}: the upstream answered HTTP {response.status_code} to our submit"
            )
        data = self._data(response, submitting=True)
        task_id = data.get("task_id")
        if not isinstance(task_id, str) or not task_id:
            raise SubmitUncertain(f"{self.name}: the upstream's answer has no task_id")
        return Submission(upstream_id=task_id)

    async def poll(self, upstream_id: str) -> JobStatus:
        try:
            response = await self._client.get(TASK_PATH.format(task_id=upstream_id))
        except httpx.TransportError as error:
            raise TechnicalError(f"{self.name}: cannot poll ({_reason(error)})") from None
        if response.status_code == 404:
            raise JobLost(f"{self.name}: the upstream no longer knows task {upstream_id}")
        return self._status(self._data(response, submitting=False))

    async def cancel(self, upstream_id: str) -> None:
        return None  # API Mall's protocol has no cancel; the upstream finishes the job

    async def check(self) -> ProviderCheck:
        try:
            response = await self._client.get(BALANCE_PATH)
        except httpx.TransportError as error:
            return ProviderCheck(reachable=False, detail=f"cannot connect ({_reason(error)})")
        if response.status_code in (401, 403):
            message = _upstream_message(response)
            return ProviderCheck(reachable=True, authenticated=False, detail=message)
        if response.status_code != 200:
            detail = f"HTTP {response.status_code}: {_upstream_message(response)}"
            return ProviderCheck(reachable=True, detail=detail)
        credits = _envelope_data(response).get("credits")
        balance = credits if isinstance(credits, int) and not isinstance(credits, bool) else None
        return ProviderCheck(reachable=True, authenticated=True, balance=balance, detail="ok")

    async def close(self) -> None:
        await self._client.aclose()

    # -- answers ---------------------------------------------------------------------------

    def _data(self, response: httpx.Response, *, submitting: bool) -> dict[str, Any]:
        status = response.status_code
        if 200 <= status < 300:
            data = _envelope_data(response)
            if not data:
                raise TechnicalError(f"{self.name}: the upstream's answer is not API Mall's")
            return data
        message = _upstream_message(response)
        if status in (401, 403):
            raise ChannelFault(f"{self.name}: the upstream refused our API key: {message}")
        if status == 402:
            raise ChannelFault(f"{self.name}: out of credit upstream: {message}")
        if status == 451:
            raise LogicalError(f"upstream moderation: {message}", code="content_blocked")
        if status in (429, 503) or status >= 500:
            raise TechnicalError(
                f"{self.name}: the upstream is busy (HTTP {status}): {message}",
                retry_after_s=retry_after_s(response.headers),
            )
        if submitting and status in (400, 404, 409, 422):
            self._refuse(status, message, response)
        raise TechnicalError(f"{self.name}: unexpected HTTP {status}: {message}")

    def _refuse(self, status: int, message: str, response: httpx.Response) -> NoReturn:
        code = _error_code(response)
        if code == "idempotency_key_in_use":  # our first submit is still being answered
            raise SubmitUncertain(
                f"{self.name}: {message}", retry_after_s=retry_after_s(response.headers)
            )
        raise LogicalError(f"upstream refused the task: {message}")

    def _status(self, data: dict[str, Any]) -> JobStatus:
        state = data.get("status")
        progress = _integer(data.get("progress")) or 0
        if state in ("pending", "processing", "unknown", "queued"):
            return JobStatus(state=JobState.RUNNING, progress=progress)
        used, refunded = _integer(data.get("credits_used")), _integer(data.get("credits_refunded"))
        cost = None if used is None else used - (refunded or 0)
        if state == "completed":
            urls = [data.get("video_url"), *((data.get("output") or {}).get("resultUrls") or [])]
            found = tuple(url for url in urls if isinstance(url, str) and url)
            if not found:
                raise LogicalError(f"{self.name}: the upstream completed without a result URL")
            return JobStatus(
                state=JobState.SUCCEEDED, progress=100, result_urls=found, upstream_credits=cost
            )
        if state == "failed":
            code = data.get("error_code")
            reason = data.get("error_message") or data.get("failMsg") or "the upstream job failed"
            return JobStatus(
                state=JobState.FAILED,
                error=f"upstream: {str(reason)[:UPSTREAM_MESSAGE_CHARS]}",
                error_code=code if code in KNOWN_FAILURE_CODES else None,
                upstream_credits=cost,
            )
        raise TechnicalError(f"{self.name}: unknown upstream status {str(state)[:40]!r}")


def _host_key(url: httpx.URL) -> str:
    host = url.host.lower()
    return f"{host}:{url.port}" if url.port is not None else host


def _reason(error: httpx.HTTPError) -> str:
    return type(error).__name__


def _envelope(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _envelope_data(response: httpx.Response) -> dict[str, Any]:
    data = _envelope(response).get("data")
    return data if isinstance(data, dict) else {}


def _error_code(response: httpx.Response) -> str | None:
    error = _envelope(response).get("error")
    code = error.get("code") if isinstance(error, dict) else None
    return code if isinstance(code, str) else None


def _upstream_message(response: httpx.Response) -> str:
    error = _envelope(response).get("error")
    message = error.get("message") if isinstance(error, dict) else None
    if not isinstance(message, str) or not message:
        message = f"HTTP {response.status_code}"
    return message[:UPSTREAM_MESSAGE_CHARS]


def _integer(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None
