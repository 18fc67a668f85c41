"""Which providers are configured, and which channel serves each model."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from vidgate.providers.base import Provider
from vidgate.providers.catalogue import Catalogue, ChannelSpec, ModelSpec

logger = logging.getLogger("vidgate.providers")


@dataclass(frozen=True)
class Route:
    channel: ChannelSpec
    provider: Provider


class ProviderRegistry:
    def __init__(self, catalogue: Catalogue, providers: dict[str, Provider]) -> None:
        self.catalogue = catalogue
        self.providers = providers
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
