"""Builds the configured providers from settings (the providers file of upstreams comes next)."""

from __future__ import annotations

import os

from vidgate.providers.base import Provider
from vidgate.providers.sample import SampleProvider
from vidgate.settings import Settings


def build_providers(settings: Settings) -> dict[str, Provider]:
    sample = SampleProvider(
        work_dir=settings.data_dir / "work" / "sample",
        failure_injection=settings.sample_failure_injection,
        max_parallel_renders=max(1, (os.cpu_count() or 2) // 2),
    )
    return {sample.name: sample}
