"""The delivery loop: claim due deliveries with a lease, POST each one signed, record the answer.

It runs wherever the task worker runs (`serve`, `vidgate worker`), any number of them on one
database: the claim is a conditional UPDATE (FOR UPDATE SKIP LOCKED on PostgreSQL), and every
later update is fenced by the lease. Steps, each one transaction:

1. claim: lease due rows; a row seen for the first time gets its first try scheduled (the
   first retry delay) and the body of its first try rendered and stored, so a crash between
   here and the answer resends the same bytes under the same webhook-id;
2. send (no transaction): the POST, under the safe fetcher's rules;
3. record: delivered, or the next try per the retry delays (jittered), or failed once they are
   used up; a 410 disables the endpoint and stops its other pending deliveries.

At least once: a loop that dies between 2 and 3 leaves its lease to expire, and the delivery
is sent again with the same webhook-id, which receivers deduplicate on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import Connection

from vidgate import metrics
from vidgate.db.engine import Database
from vidgate.db.types import utcnow
from vidgate.tasks import repository as task_repository
from vidgate.webhooks import payload, repository, schedule
from vidgate.webhooks.events import DeliveryStatus, EndpointStatus
from vidgate.webhooks.repository import NO_LEASE, ClaimedDelivery
from vidgate.webhooks.sender import SendResult, WebhookSender
from vidgate.webhooks.service import ensure_account_secret
from vidgate.webhooks.signing import signed_headers
from vidgate.worker.shutdown import drain_then_release

logger = logging.getLogger("vidgate.webhooks")

LEASE_S = 30.0  # longer than a try may take (the sender's 10 s limit)
POLL_INTERVAL_S = (0.5, 1.0)  # between looks when nothing wakes the loop; random within
CONCURRENCY = 16
GONE = 410


@dataclass(frozen=True, slots=True, kw_only=True)
class Outgoing:
    """A claimed delivery, ready to send."""

    id: int
    message_id: str
    endpoint_id: int | None  # None: a task's callBackUrl
    url: str
    body: str
    secret: str
    attempts: int  # tries before this one


@dataclass(slots=True)
class Claimed:
    outgoing: list[Outgoing] = field(default_factory=list)
    first_tries: list[datetime] = field(default_factory=list)  # deferred first tries


class DeliveryWorker:
    def __init__(
        self,
        *,
        db: Database,
        sender: WebhookSender,
        render_task: payload.TaskRenderer,
        retry_delays: Sequence[float],
        owner: str,
        concurrency: int = CONCURRENCY,
        lease_s: float = LEASE_S,
        rng: random.Random | None = None,
    ) -> None:
        self.db = db
        self.sender = sender
        self.render_task = render_task
        self.retry_delays = tuple(retry_delays)
        self.owner = owner
        self.concurrency = concurrency
        self.lease_s = lease_s
        self.rng = rng or random.Random()
        self._wake = asyncio.Event()
        self._stopping = False
        self._active: dict[int, asyncio.Task[None]] = {}
        self._loop_task: asyncio.Task[None] | None = None

    # -- the steps (also driven one by one by tests) -----------------------------------------

    async def claim(self, *, limit: int | None = None) -> Claimed:
        now = utcnow()
        limit = self.concurrency if limit is None else limit
        return await self.db.backend.run_write(lambda conn: self._claim(conn, now, limit))

    async def deliver(self, item: Outgoing) -> SendResult:
        """Send one claimed delivery and record the answer."""
        body = item.body.encode()
        headers = signed_headers(item.secret, message_id=item.message_id, payload=item.body)
        result = await self.sender.send(
            item.url, body=body, headers=headers, https_only=item.endpoint_id is not None
        )
        now = utcnow()
        retry_at = await self.db.backend.run_write(
            lambda conn: self._record(conn, item, result, now)
        )
        if result.delivered:
            logger.info("delivery %s to %s: delivered", item.message_id, item.url)
        else:
            logger.info(
                "delivery %s (try %d): %s; %s",
                item.message_id,
                item.attempts + 1,
                result.error,
                f"next try at {retry_at}" if retry_at else "no more tries",
            )
        metrics.webhook_try(delivered=result.delivered, retrying=retry_at is not None)
        if retry_at is not None:
            self._wake_at(retry_at)
        return result

    async def deliver_due(self) -> list[SendResult]:
        """Claim what is due and send it all, concurrently; the answers."""
        claimed = await self.claim()
        return list(await asyncio.gather(*(self.deliver(item) for item in claimed.outgoing)))

    def _claim(self, conn: Connection, now: datetime, limit: int) -> Claimed:
        claimed = Claimed()
        if limit <= 0:
            return claimed
        ids = repository.claim_due(
            conn, owner=self.owner, now=now, limit=limit, lease_s=self.lease_s
        )
        for row in repository.claimed(conn, ids) if ids else ():
            item = self._prepare(conn, row, now, claimed)
            if item is not None:
                claimed.outgoing.append(item)
        return claimed

    def _prepare(
        self, conn: Connection, row: ClaimedDelivery, now: datetime, claimed: Claimed
    ) -> Outgoing | None:
        delivery = row.delivery
        if delivery.endpoint_id is not None and row.endpoint_status != EndpointStatus.ACTIVE:
            # Deleted or disabled while this was being made or waited.
            self._update(
                conn,
                delivery.id,
                status=DeliveryStatus.FAILED.value,
                last_error=f"webhook {row.endpoint_status}",
                **NO_LEASE,
            )
            return None
        body = delivery.payload
        if body is None:
            never_seen = delivery.attempts == 0 and delivery.next_attempt_at <= delivery.created_at
            if never_seen:
                first = schedule.first_attempt_at(delivery.created_at, self.retry_delays, self.rng)
                if first > now:
                    self._update(conn, delivery.id, next_attempt_at=first, **NO_LEASE)
                    claimed.first_tries.append(first)
                    return None
            body = self._render(conn, delivery.task_id, delivery.event_type, delivery.created_at)
            self._update(conn, delivery.id, payload=body)
        secret = row.endpoint_secret or row.account_secret
        if secret is None:  # a callBackUrl, and the account's first use of its secret
            secret = ensure_account_secret(conn, account_id=delivery.account_id)
        return Outgoing(
            id=delivery.id,
            message_id=delivery.message_id,
            endpoint_id=delivery.endpoint_id,
            url=delivery.url,
            body=body,
            secret=secret,
            attempts=delivery.attempts,
        )

    def _render(self, conn: Connection, task_id: str, event_type: str, at: datetime) -> str:
        task = task_repository.get(conn, task_id)
        assert task is not None, "a delivery's task is a foreign key"
        return payload.render(event_type=event_type, at=at, task_json=self.render_task(task))

    def _record(
        self, conn: Connection, item: Outgoing, result: SendResult, now: datetime
    ) -> datetime | None:
        """The answer of one try, in one transaction; when the next try is due (None: none)."""
        attempts = item.attempts + 1
        values: dict[str, object] = {
            "attempts": attempts,
            "last_status_code": result.status_code,
            "last_error": result.error,
            **NO_LEASE,
        }
        retry_at = None
        if result.delivered:
            values.update(status=DeliveryStatus.DELIVERED.value, delivered_at=now)
        elif result.status_code == GONE:
            values["status"] = DeliveryStatus.FAILED.value
        else:
            retry_at = schedule.next_attempt_at(
                now, attempts=attempts, delays=self.retry_delays, rng=self.rng
            )
            if retry_at is None:
                values["status"] = DeliveryStatus.FAILED.value
            else:
                values["next_attempt_at"] = retry_at
        if not self._update(conn, item.id, **values):
            return None  # not ours any more (lease lost, or stopped meanwhile): change nothing
        if item.endpoint_id is not None:
            gone = result.status_code == GONE
            error = f"{result.error} (webhook disabled)" if gone else result.error
            repository.count_attempt(conn, endpoint_id=item.endpoint_id, at=now, error=error)
            if gone:
                self._disable(conn, item.endpoint_id, now)
        return retry_at

    def _disable(self, conn: Connection, endpoint_id: int, now: datetime) -> None:
        if repository.end_endpoint(
            conn,
            endpoint_id=endpoint_id,
            status=EndpointStatus.DISABLED,
            at=now,
            sources=(EndpointStatus.ACTIVE,),
        ):
            repository.stop_pending(
                conn, endpoint_id=endpoint_id, reason="webhook disabled: its URL answered 410"
            )
            logger.warning("webhook %d disabled: its URL answered 410 Gone", endpoint_id)

    def _update(self, conn: Connection, delivery_id: int, **values: object) -> bool:
        return repository.update_claimed(conn, delivery_id, owner=self.owner, values=values)

    # -- the loop ------------------------------------------------------------------------------

    def wake(self) -> None:
        """Something may be due now (a task ended here, a redelivery): look at once."""
        self._wake.set()

    def _wake_at(self, when: datetime) -> None:
        delay = (when - utcnow()).total_seconds()
        if delay < POLL_INTERVAL_S[1]:  # sooner than the next look anyway: be on time
            asyncio.get_running_loop().call_later(max(0.0, delay), self._wake.set)

    def start(self) -> None:
        self._loop_task = asyncio.create_task(self._run(), name="vidgate-webhooks")
        logger.info("webhook delivery loop %s started", self.owner)

    async def stop(self, timeout_s: float = 10.0) -> None:
        self._stopping = True
        self._wake.set()
        if self._loop_task is not None:
            await self._loop_task
        await drain_then_release(self._active, self._release, timeout_s=timeout_s)

    async def _release(self, delivery_id: int) -> bool:
        return await self.db.backend.run_write(
            lambda conn: self._update(conn, delivery_id, **NO_LEASE)
        )

    async def _run(self) -> None:
        while not self._stopping:
            claimed = Claimed()
            try:
                claimed = await self.claim(limit=self.concurrency - len(self._active))
                for item in claimed.outgoing:
                    self._active[item.id] = asyncio.create_task(self._deliver_one(item))
                for first in claimed.first_tries:
                    self._wake_at(first)
            except Exception:
                logger.exception("webhook delivery loop error; continuing")
            if claimed.outgoing and len(self._active) < self.concurrency:
                continue  # there may be more due
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    self._wake.wait(), timeout=self.rng.uniform(*POLL_INTERVAL_S)
                )
            self._wake.clear()

    async def _deliver_one(self, item: Outgoing) -> None:
        try:
            await self.deliver(item)
        except Exception:
            logger.exception("delivery %s: crashed", item.message_id)
        finally:
            self._active.pop(item.id, None)
            self._wake.set()  # a slot is free
