"""The runner's pure decisions: when to look at a task again, which retry policy holds, and
what request a channel is sent."""

from __future__ import annotations

import random
from pathlib import Path

from vidgate.providers.base import GenerationRequest
from vidgate.providers.catalogue import Catalogue
from vidgate.providers.registry import ProviderRegistry, Route
from vidgate.tasks.repository import TaskRecord
from vidgate.worker.retry import RetryPolicy

# A task that finds every channel full (or open) looks again after about this long.
WAIT_TURN_S = 1.0
# A remote job is polled at intervals of about this share of its age (between the provider's
# poll interval and its maximum), each jittered, so a thousand jobs submitted together do not
# poll the upstream in lockstep.
POLL_AGE_SHARE = 0.25
POLL_JITTER = 0.2


def poll_delay(*, base_s: float, max_s: float | None, age_s: float) -> float:
    if max_s is None:
        return base_s
    delay = min(max_s, max(base_s, age_s * POLL_AGE_SHARE))
    return delay * random.uniform(1 - POLL_JITTER, 1 + POLL_JITTER)


def retry_policy_for(
    task: TaskRecord, catalogue: Catalogue, registry: ProviderRegistry, default: RetryPolicy
) -> RetryPolicy:
    """The policy of the task's channel, or of its first channel before it is routed."""
    model = catalogue.models.get(task.model)
    if model is not None:
        for channel in model.channels:
            if channel.provider == task.channel and channel.retry is not None:
                return channel.retry
        if task.channel is None:
            routes = registry.routes_for(task.model)
            if routes and routes[0].channel.retry is not None:
                return routes[0].channel.retry
    return default


def provider_request(task: TaskRecord, route: Route, images: tuple[Path, ...]) -> GenerationRequest:
    params = task.params
    return GenerationRequest(
        task_id=task.id,
        model=task.model,
        upstream_model=route.channel.upstream_model,
        type=task.type,
        prompt=task.prompt or "",
        options=params.get("options", {}),
        seconds=int(params["seconds"]),
        width=int(params["width"]),
        height=int(params["height"]),
        images=images,
        # The URLs of the images fetched (only the first one is used for now).
        image_urls=tuple(params.get("image_urls", [])[: len(images)]),
    )
