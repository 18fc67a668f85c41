"""Builds the configured providers from settings: the built-in sample renderer, plus one upstream
instance per `[providers.NAME]` table of the providers file (VIDGATE_PROVIDERS_PATH)."""

from __future__ import annotations

import asyncio
import importlib
import logging
import os
from pathlib import Path
from typing import Protocol, cast

from vidgate.providers.base import Provider
from vidgate.providers.catalogue import Catalogue
from vidgate.providers.config import ProviderConfig
from vidgate.providers.config_file import ProvidersFileError, read_providers_file
from vidgate.providers.sample import SampleProvider
from vidgate.settings import Settings
from vidgate.toml_files import key

logger = logging.getLogger("vidgate.providers")

# Each kind's class, imported only when a file uses the kind: an installation that runs only
# the sample never imports an upstream's client library.
PROVIDER_CLASSES = {
    "apimall": "vidgate.providers.apimall:ApiMallProvider",
    "openai": "vidgate.providers.openai_videos:OpenAIVideosProvider",
    "diffusers": "vidgate.providers.diffusers_local:DiffusersProvider",
}


class ProviderClass(Protocol):
    def from_config(self, config: ProviderConfig, *, work_dir: Path) -> Provider: ...


def provider_class(kind: str, *, source: str, name: str) -> ProviderClass:
    """The class for a kind; a kind this installation lacks is a ProvidersFileError."""
    module_name, _, class_name = PROVIDER_CLASSES[kind].partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name != module_name:  # the module is there but something it needs is not
            raise
        raise ProvidersFileError(
            source,
            f"providers.{key(name)}.kind",
            f"the {kind} provider is not part of this version",
        ) from None
    return cast(ProviderClass, getattr(module, class_name))


def provider_configs(settings: Settings) -> dict[str, ProviderConfig]:
    """The providers file's entries, keys read; none when no file is configured."""
    if settings.providers_path is None:
        return {}
    return read_providers_file(settings.providers_path)


def check_providers_file(settings: Settings) -> dict[str, ProviderConfig]:
    """What `serve` and `worker` check before anything starts: the file reads, every key is
    there, and every provider builds (its kind installed, its options taken)."""
    configs = provider_configs(settings)

    async def build_and_close() -> None:
        for config in configs.values():
            await build_provider(config, settings).close()

    if configs:
        asyncio.run(build_and_close())
    return configs


def unused_providers(configs: dict[str, ProviderConfig], catalogue: Catalogue) -> list[str]:
    """Names in the file that no catalogue channel asks for (a typo, or one kept for later)."""
    wanted = {channel.provider for model in catalogue.models.values() for channel in model.channels}
    return [name for name in configs if name not in wanted]


def build_sample(settings: Settings) -> SampleProvider:
    return SampleProvider(
        work_dir=settings.data_dir / "work" / "sample",
        failure_injection=settings.sample_failure_injection,
        max_parallel_renders=max(1, (os.cpu_count() or 2) // 2),
    )


def build_provider(config: ProviderConfig, settings: Settings) -> Provider:
    """One upstream instance; options its kind refuses are a ProvidersFileError."""
    source = str(settings.providers_path)
    cls = provider_class(config.kind, source=source, name=config.name)
    try:
        return cls.from_config(config, work_dir=settings.data_dir / "work" / config.name)
    except ValueError as exc:  # the adapters' way of refusing what their options say
        problem = str(exc).removeprefix(f"provider {config.name}: ")
        raise ProvidersFileError(source, f"providers.{key(config.name)}", problem) from None


def build_providers(settings: Settings, catalogue: Catalogue | None = None) -> dict[str, Provider]:
    configs = provider_configs(settings)
    if configs:
        catalogue = catalogue or Catalogue.load(settings.catalogue_path)
        for name in unused_providers(configs, catalogue):
            logger.warning(
                "provider %s (%s) is configured but no catalogue channel names it; "
                "no task will use it",
                name,
                settings.providers_path,
            )
    providers: dict[str, Provider] = {"sample": build_sample(settings)}
    for name, config in configs.items():  # the file's order
        providers[name] = build_provider(config, settings)
    return providers
