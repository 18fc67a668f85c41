"""Which providers are configured, which channels serve each model, in what order, and the
circuit breaker of each channel."""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from dataclasses import dataclass

from vidgate import metrics
from vidgate.providers.base import Provider
from vidgate.providers.breaker import BreakerState, CircuitBreaker
from vidgate.providers.catalogue import Catalogue, ChannelSpec, ModelSpec

logger = logging.getLogger("vidgate.providers")


@dataclass(frozen=True)
class Route:
    channel: ChannelSpec
    provider: Provider


class ProviderRegistry:
    def __init__(
        self,
        catalogue: Catalogue,
        providers: dict[str, Provider],
        *,
        new_breaker: Callable[[], CircuitBreaker] = CircuitBreaker,
        rng: random.Random | None = None,
    ) -> None:
        self.catalogue = catalogue
        self.providers = providers
        # One breaker per provider instance: models sharing an upstream share its health.
        self.breakers = {name: new_breaker() for name in providers}
        self._rng = rng or random.Random()
        self.routes: dict[str, tuple[Route, ...]] = {
            model.id: self._routes_for(model) for model in catalogue.models.values()
        }

    def _routes_for(self, model: ModelSpec) -> tuple[Route, ...]:
        configured = [c for c in model.channels if c.provider in self.providers]
        upstreams = [c for c in configured if not c.only_without_upstream]
        chosen = upstreams or [c for c in configured if c.only_without_upstream]
        return tuple(Route(channel, self.providers[channel.provider]) for channel in chosen)

    def routes_for(self, model_id: str) -> tuple[Route, ...]:
        return self.routes.get(model_id, ())

    def provider(self, name: str) -> Provider | None:
        return self.providers.get(name)

    def breaker(self, name: str) -> CircuitBreaker | None:
        return self.breakers.get(name)

    def record(self, channel: str, *, ok: bool = False, fault: bool = False) -> None:
        """What a step saw of the channel: a success, a failure, or a fault that opens its
        breaker at once."""
        if not ok:
            metrics.provider_error(channel, fault=fault)
        breaker = self.breakers.get(channel)
        if breaker is None:
            return
        if fault:
            breaker.trip()
        elif ok:
            breaker.record_success()
        else:
            breaker.record_failure()
        metrics.breaker_state(channel, tripped=breaker.state is not BreakerState.CLOSED)

    def in_order(self, model_id: str) -> list[Route]:
        """The model's routes in the order to try them this time: ascending priority, and
        within a priority a weighted random order (RFC 2782's selection)."""
        routes = sorted(self.routes_for(model_id), key=lambda r: r.channel.priority)
        ordered: list[Route] = []
        while routes:
            priority = routes[0].channel.priority
            group = [r for r in routes if r.channel.priority == priority]
            routes = routes[len(group) :]
            while group:
                pick = self._rng.choices(group, weights=[r.channel.weight for r in group])[0]
                group.remove(pick)
                ordered.append(pick)
        return ordered

    def unavailable_for(self, model_id: str) -> float | None:
        """Seconds until one of the model's channels may be tried again, when every one of
        them has its breaker open; None while any channel takes work."""
        waits: list[float] = []
        for route in self.routes_for(model_id):
            breaker = self.breakers.get(route.channel.provider)
            if breaker is None or breaker.would_allow():
                return None
            waits.append(breaker.retry_after_s())
        return min(waits) if waits else None

    def log_routing(self) -> None:
        """Say plainly, at startup, where each model's tasks will go."""
        for model in self.catalogue.models.values():
            routes = self.routes[model.id]
            if not routes:
                wanted = ", ".join(c.provider for c in model.channels)
                logger.warning(
                    "model %s has no configured provider (wants: %s); its tasks will fail",
                    model.id,
                    wanted,
                )
                continue
            first = routes[0].channel
            upstream_missing = [
                c.provider
                for c in model.channels
                if not c.only_without_upstream and c.provider not in self.providers
            ]
            if first.only_without_upstream:
                logger.warning(
                    "model %s: no upstream configured (%s); routing to the built-in %s provider, "
                    "which renders placeholder videos labelled SAMPLE",
                    model.id,
                    ", ".join(upstream_missing),
                    first.provider,
                )
            else:
                logger.info(
                    "model %s -> %s", model.id, ", ".join(r.channel.provider for r in routes)
                )
