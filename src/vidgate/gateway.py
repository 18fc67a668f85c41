"""The assembled gateway: settings plus the long-lived components built from them."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field

from vidgate.db.engine import Database, open_database
from vidgate.providers.base import Provider
from vidgate.providers.catalogue import Catalogue
from vidgate.providers.registry import ProviderRegistry
from vidgate.providers.sample import SampleProvider
from vidgate.ratelimit.gcra import InMemoryRateLimiter, RateLimiter
from vidgate.settings import Settings
from vidgate.storage.local import LocalFileStore, UrlSigner
from vidgate.worker.claim import SqlClaimer
from vidgate.worker.loop import Worker, new_worker_id
from vidgate.worker.runner import TaskRunner

logger = logging.getLogger("vidgate")


@dataclass
class Gateway:
    settings: Settings
    db: Database
    catalogue: Catalogue
    registry: ProviderRegistry
    store: LocalFileStore
    signer: UrlSigner
    rate_limiter: RateLimiter
    sample: SampleProvider
    worker: Worker | None = field(default=None)

    @classmethod
    def build(cls, settings: Settings) -> Gateway:
        settings.ensure_data_dir()
        db = open_database(settings.resolved_database_url)
        catalogue = Catalogue.load(settings.catalogue_path)
        sample = SampleProvider(
            work_dir=settings.data_dir / "work" / "sample",
            failure_injection=settings.sample_failure_injection,
            max_parallel_renders=max(1, (os.cpu_count() or 2) // 2),
        )
        providers: dict[str, Provider] = {"sample": sample}
        return cls(
            settings=settings,
            db=db,
            catalogue=catalogue,
            registry=ProviderRegistry(catalogue, providers),
            store=LocalFileStore(settings.files_dir),
            signer=UrlSigner(
                secret=settings.resolved_secret_key().encode(),
                public_url=settings.resolved_public_url,
                ttl_s=settings.result_url_ttl_s,
            ),
            rate_limiter=InMemoryRateLimiter(),
            sample=sample,
        )

    async def start(self) -> None:
        """Start background work (the embedded worker) and say where models route."""
        self.registry.log_routing()
        if self.settings.sample_failure_injection:
            logger.warning("sample provider failure injection is ON ([fail], [slow:N], [flaky:N])")
        if self.settings.worker_enabled and self.worker is None:
            runner = TaskRunner(
                db=self.db,
                settings=self.settings,
                catalogue=self.catalogue,
                registry=self.registry,
                store=self.store,
                owner=new_worker_id(),
            )
            self.worker = Worker(
                db=self.db,
                claimer=SqlClaimer(self.db),
                runner=runner,
                concurrency=self.settings.worker_concurrency,
                poll_interval_s=self.settings.worker_poll_interval_s,
                lease_s=self.settings.worker_lease_s,
            )
            self.worker.start()

    def wake_worker(self) -> None:
        if self.worker is not None:
            self.worker.wake()

    async def stop_worker(self) -> None:
        if self.worker is not None:
            await self.worker.stop()
            self.worker = None

    async def close(self) -> None:
        await self.stop_worker()
        await self.sample.close()
        await self.db.dispose()
