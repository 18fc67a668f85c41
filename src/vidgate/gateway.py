"""The assembled gateway: settings plus the long-lived components built from them."""

from __future__ import annotations

import ipaddress
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta

from vidgate.api.apimall import presenters
from vidgate.api.render_cache import RenderCache
from vidgate.db.backend import WEBHOOKS_CHANNEL, queue_channel
from vidgate.db.engine import Database, open_database
from vidgate.db.listen import Listener
from vidgate.errors import UpstreamUnavailable
from vidgate.keys.invalidation import SharedPrincipalCache, build_invalidator
from vidgate.keys.service import Principal
from vidgate.moderation.base import AllowAll, Moderator
from vidgate.moderation.factory import build_moderator
from vidgate.net.fetch import FetchPolicy, IPNetwork
from vidgate.providers.base import Provider
from vidgate.providers.catalogue import Catalogue, ModelSpec
from vidgate.providers.factory import build_providers
from vidgate.providers.registry import ProviderRegistry
from vidgate.ratelimit.gcra import RateLimiter, build_rate_limiter
from vidgate.settings import Settings
from vidgate.storage.base import FileStore
from vidgate.storage.factory import build_file_store
from vidgate.tasks import service
from vidgate.tasks.commands import CreateTask
from vidgate.tasks.repository import TaskRecord
from vidgate.tasks.service import CreateOutcome
from vidgate.webhooks.delivery import DeliveryWorker
from vidgate.webhooks.sender import WebhookSender
from vidgate.worker.claim import SqlClaimer
from vidgate.worker.loop import Worker, new_worker_id
from vidgate.worker.reaper import Reaper
from vidgate.worker.runner import TaskRunner

logger = logging.getLogger("vidgate")

RESULT_MAX_BYTES = 2 * 1024 * 1024 * 1024
RESULT_TIMEOUT_S = 600.0


@dataclass
class Gateway:
    settings: Settings
    db: Database
    catalogue: Catalogue
    providers: dict[str, Provider]
    registry: ProviderRegistry
    store: FileStore
    rate_limiter: RateLimiter
    principals: SharedPrincipalCache
    rendered_tasks: RenderCache = field(default_factory=RenderCache)
    moderator: Moderator = field(default_factory=AllowAll)
    worker: Worker | None = field(default=None)
    deliveries: DeliveryWorker | None = field(default=None)
    reaper: Reaper | None = field(default=None)
    listener: Listener | None = field(default=None)  # wake-ups from other processes

    @classmethod
    def build(cls, settings: Settings) -> Gateway:
        settings.ensure_data_dir()
        catalogue = Catalogue.load(settings.catalogue_path)
        providers = build_providers(settings, catalogue)
        return cls(
            settings=settings,
            db=open_database(settings.resolved_database_url),
            catalogue=catalogue,
            providers=providers,
            registry=ProviderRegistry(catalogue, providers),
            store=build_file_store(settings),
            rate_limiter=build_rate_limiter(settings),
            principals=SharedPrincipalCache(
                invalidator=build_invalidator(settings), ttl_s=settings.principal_cache_ttl_s
            ),
            moderator=build_moderator(settings, models=catalogue.models),
        )

    def url_for(self, key: str) -> str:
        return self.store.url_for(key)

    # -- routing: which process runs which model -------------------------------------------

    def _runs_here(self, model: ModelSpec) -> bool:
        settings = self.settings
        return (
            settings.worker_enabled
            and (not settings.worker_queues or model.queue in settings.worker_queues)
            and (not settings.worker_models or model.id in settings.worker_models)
        )

    def check_routable(self, model: ModelSpec) -> None:
        """Refuse a create (503, nothing charged) that no channel could take now: the model has
        no configured provider here while its queue runs here, or every channel's breaker is
        open. A queue served by workers elsewhere (an API process of a scale-out deployment) is
        accepted."""
        if not self.registry.routes_for(model.id):
            if self._runs_here(model):
                raise UpstreamUnavailable(
                    f"no provider is configured for model {model.id}",
                    headers={"Retry-After": "60"},
                )
            return
        wait = self.registry.unavailable_for(model.id)
        if wait is not None:
            raise UpstreamUnavailable(
                f"every upstream channel of model {model.id} is failing; retry later",
                headers={"Retry-After": str(max(1, math.ceil(wait)))},
            )

    def servable_models(self) -> list[str]:
        return [
            model.id
            for model in self.catalogue.models.values()
            if self._runs_here(model) and self.registry.routes_for(model.id)
        ]

    # -- the embedded or standalone worker -------------------------------------------------

    @property
    def allowed_networks(self) -> tuple[IPNetwork, ...]:
        """The operator's allow-list of otherwise refused addresses for user-supplied URLs."""
        return tuple(
            ipaddress.ip_network(n, strict=False)
            for n in self.settings.fetch_allowed_private_networks
        )

    def _fetch_policies(self) -> tuple[FetchPolicy, FetchPolicy]:
        settings = self.settings
        networks = self.allowed_networks
        inputs = FetchPolicy(
            max_bytes=settings.fetch_max_bytes,
            timeout_s=settings.fetch_timeout_s,
            allowed_private_networks=networks,
        )
        results = FetchPolicy(
            max_bytes=RESULT_MAX_BYTES,
            timeout_s=RESULT_TIMEOUT_S,
            allowed_private_networks=networks,
        )
        return inputs, results

    def _build_worker(self) -> Worker:
        settings = self.settings
        input_policy, result_policy = self._fetch_policies()
        runner = TaskRunner(
            db=self.db,
            catalogue=self.catalogue,
            registry=self.registry,
            store=self.store,
            owner=new_worker_id(),
            lease_s=settings.worker_lease_s,
            default_poll_interval_s=settings.provider_poll_interval_s,
            input_policy=input_policy,
            result_policy=result_policy,
            work_dir=settings.data_dir / "work" / "fetch",
            suspended_tasks=settings.suspended_tasks,
        )
        claimer = SqlClaimer(
            self.db,
            queues=settings.worker_queues or None,
            models=self.servable_models(),
            channels=list(self.providers),
            skip_inactive_accounts=settings.suspended_tasks == "wait",
        )
        return Worker(
            db=self.db,
            claimer=claimer,
            runner=runner,
            concurrency=settings.worker_concurrency,
            poll_interval_s=settings.worker_poll_interval_s,
            lease_s=settings.worker_lease_s,
            on_task_ended=self.wake_deliveries,
        )

    def _webhook_body_of(self, task: TaskRecord) -> str:
        # A delivery's data is the task as GET /api/v1/videos/{id} shows it.
        return presenters.task_view(task, self.url_for).model_dump_json()

    def _build_deliveries(self) -> DeliveryWorker:
        return DeliveryWorker(
            db=self.db,
            sender=WebhookSender(allowed_networks=self.allowed_networks),
            render_task=self._webhook_body_of,
            retry_delays=self.settings.webhook_retry_delays,
            owner=new_worker_id(),
        )

    async def start(self) -> None:
        """Start background work (the embedded worker) and say where models route."""
        self.registry.log_routing()
        await self.principals.start()  # hear the other processes' revokes
        if self.settings.sample_failure_injection:
            logger.warning("sample provider failure injection is ON ([fail], [slow:N], [flaky:N])")
        if self.settings.worker_enabled and self.worker is None:
            self.worker = self._build_worker()
            queues = ", ".join(self.settings.worker_queues) or "all queues"
            logger.info(
                "worker serves %s: models %s", queues, ", ".join(self.servable_models()) or "none"
            )
            self.worker.start()
        if self.settings.worker_enabled and self.deliveries is None:
            # Webhook deliveries go wherever tasks are worked on.
            self.deliveries = self._build_deliveries()
            self.deliveries.start()
        if self.settings.worker_enabled and self.reaper is None:
            self.reaper = self._build_reaper()
            self.reaper.start()
        if self.settings.worker_enabled and self.listener is None:
            # No channels (VIDGATE_PG_NOTIFY=false): the listener opens no connection.
            wakes = self._wakes() if self.settings.pg_notify else {}
            self.listener = self.db.backend.listener(wakes)
            self.listener.start()

    def _build_reaper(self) -> Reaper:
        return Reaper(
            db=self.db,
            store=self.store,
            result_retention=self.settings.result_retention,
            on_expired=self.rendered_tasks.forget,
            interval_s=self.settings.reaper_interval_s,
        )

    def _wakes(self) -> dict[str, Callable[[], None]]:
        """The NOTIFY channels this process's loops listen on: its worker's queues, and the
        webhook deliveries."""
        queues = self.settings.worker_queues or self.catalogue.queues
        wakes: dict[str, Callable[[], None]] = {queue_channel(q): self.wake_worker for q in queues}
        wakes[WEBHOOKS_CHANNEL] = self.wake_deliveries
        return wakes

    def wake_worker(self) -> None:
        if self.worker is not None:
            self.worker.wake()

    async def create_task(
        self,
        *,
        principal: Principal,
        command: CreateTask,
        request_id: str,
        idempotency_key: str | None,
    ) -> CreateOutcome:
        """A create from any surface, under this gateway's catalogue, routing, limits, address
        allow-list and moderation; a new task wakes the embedded worker at once."""
        outcome = await service.create_task(
            self.db,
            principal=principal,
            command=command,
            request_id=request_id,
            idempotency_key=idempotency_key,
            catalogue=self.catalogue,
            routing=self,
            default_max_concurrent_jobs=self.settings.max_concurrent_jobs,
            allowed_networks=self.allowed_networks,
            moderator=self.moderator,
            idempotency_retention=timedelta(hours=self.settings.idempotency_retention_hours),
        )
        if not outcome.replayed:
            self.wake_worker()
        return outcome

    def wake_deliveries(self) -> None:
        if self.deliveries is not None:
            self.deliveries.wake()

    async def stop_worker(self) -> None:
        if self.listener is not None:
            await self.listener.stop()
            self.listener = None
        if self.reaper is not None:
            await self.reaper.stop()
            self.reaper = None
        if self.worker is not None:
            await self.worker.stop()
            self.worker = None
        if self.deliveries is not None:
            await self.deliveries.stop()
            self.deliveries = None

    async def close(self) -> None:
        await self.stop_worker()
        for provider in self.providers.values():
            await provider.close()
        await self.moderator.close()
        await self.principals.close()
        await self.rate_limiter.close()
        await self.db.dispose()
