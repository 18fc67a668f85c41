"""`vidgate providers check`: builds every provider as `serve` would and asks each one whether
its upstream answers, takes its key, and what balance it holds there."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from vidgate.cli.admin import DataDirOption, fail, load_settings
from vidgate.providers.base import Provider, ProviderCheck, ProviderError
from vidgate.providers.config import ProviderConfig
from vidgate.settings import Settings

# A check that outlives its own timeouts by this much is reported as hung, not waited for.
_CHECK_GRACE_S = 5.0
_SAMPLE_CHECK_S = 30.0
# soft_wrap: a captured (non-TTY) message stays on one line.
out = Console(highlight=False, soft_wrap=True)


@dataclass(frozen=True)
class Checked:
    name: str
    kind: str
    base_url: str
    result: ProviderCheck

    @property
    def passed(self) -> bool:
        return self.result.reachable and self.result.authenticated is not False


def register(app: typer.Typer) -> None:
    group = typer.Typer(help="Inspect the configured upstream providers.", no_args_is_help=True)
    group.command("check")(check)
    app.add_typer(group, name="providers")


def check(data_dir: DataDirOption = None) -> None:
    """Ask every provider whether it is reachable and authenticated, and for its balance;
    exit 1 when one is unreachable or refuses its key."""
    # Here, not at the top: every `vidgate` command would pay for importing the providers.
    from vidgate.providers.catalogue import Catalogue, CatalogueError
    from vidgate.providers.config_file import ProvidersFileError
    from vidgate.providers.factory import provider_configs, unused_providers

    settings = load_settings(data_dir)
    try:
        configs = provider_configs(settings)
        catalogue = Catalogue.load(settings.catalogue_path)
    except (ProvidersFileError, CatalogueError) as exc:
        raise fail(str(exc), code=2) from None
    if settings.providers_path is None:
        out.print(
            "no providers file (VIDGATE_PROVIDERS_PATH is not set): "
            "only the built-in sample provider"
        )
    else:
        out.print(f"providers file {settings.providers_path}: {len(configs)} upstream(s)")
    try:
        checked = asyncio.run(_check_all(settings, configs))
    except ProvidersFileError as exc:  # a kind not installed, options the adapter refuses
        raise fail(str(exc), code=2) from None
    unused = set(unused_providers(configs, catalogue))
    out.print(_table(checked, unused))
    failed = [row.name for row in checked if not row.passed]
    if failed:
        out.print(f"failed: {', '.join(failed)}")
        raise typer.Exit(1)
    out.print("every provider is reachable and takes its key")


async def _check_all(settings: Settings, configs: dict[str, ProviderConfig]) -> list[Checked]:
    from vidgate.providers.factory import build_provider, build_sample

    providers: dict[str, Provider] = {}
    try:  # built one by one, so a provider that fails to build leaves none unclosed
        providers["sample"] = build_sample(settings)
        for name, config in configs.items():
            providers[name] = build_provider(config, settings)
        names = list(providers)
        results = await asyncio.gather(
            *(_check_one(providers[name], configs.get(name)) for name in names)
        )
    finally:
        for provider in providers.values():
            await provider.close()
    rows = []
    for name, result in zip(names, results, strict=True):
        entry = configs.get(name)
        kind, base_url = (entry.kind, entry.base_url) if entry else (name, "built-in")
        rows.append(Checked(name=name, kind=kind, base_url=base_url, result=result))
    return rows


async def _check_one(provider: Provider, config: ProviderConfig | None) -> ProviderCheck:
    limit = (
        config.connect_timeout_s + config.request_timeout_s + _CHECK_GRACE_S
        if config
        else _SAMPLE_CHECK_S
    )
    try:
        result = await asyncio.wait_for(provider.check(), timeout=limit)
    except TimeoutError:
        result = ProviderCheck(reachable=False, detail=f"no answer within {limit:g} s")
    except ProviderError as exc:
        result = ProviderCheck(reachable=False, detail=exc.message)
    except Exception as exc:  # a broken adapter: report it in its row, check the others
        result = ProviderCheck(reachable=False, detail=f"check raised {type(exc).__name__}: {exc}")
    if config and config.api_key and config.api_key in result.detail:
        # An upstream that echoes the key it refused must not get it onto the screen.
        result = ProviderCheck(
            reachable=result.reachable,
            authenticated=result.authenticated,
            balance=result.balance,
            detail=result.detail.replace(config.api_key, "***"),
        )
    return result


def _table(checked: list[Checked], unused: set[str]) -> Table:
    table = Table("name", "kind")
    # Folded, not cut short: a URL or an upstream's reason is no use with its end missing.
    table.add_column("base URL", overflow="fold")
    for heading in ("reachable", "auth", "balance"):
        table.add_column(heading)
    table.add_column("detail", overflow="fold")
    for row in checked:
        result = row.result
        auth = {True: "yes", False: "FAILED", None: "-"}[result.authenticated]
        detail = result.detail
        if row.name in unused:
            detail = "; ".join(part for part in (detail, "no catalogue channel names it") if part)
        table.add_row(
            row.name,
            row.kind,
            Text(row.base_url),
            "yes" if result.reachable else "NO",
            auth,
            "-" if result.balance is None else str(result.balance),
            Text(detail),  # Text: an upstream's words are not rich markup
        )
    return table
