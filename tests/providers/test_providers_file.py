"""The providers file (VIDGATE_PROVIDERS_PATH): what each table becomes, the one-line error of
every field, keys read from the environment or a key file and never shown, and the providers
the factory builds from it."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from vidgate.providers.apimall import ApiMallProvider
from vidgate.providers.catalogue import Catalogue
from vidgate.providers.config import ProviderConfig
from vidgate.providers.config_file import KINDS, ProvidersFileError, read_providers_file
from vidgate.providers.factory import (
    PROVIDER_CLASSES,
    build_providers,
    check_providers_file,
    unused_providers,
)
from vidgate.providers.openai_videos import OpenAIVideosProvider
from vidgate.providers.sample import SampleProvider
from vidgate.settings import Settings

# Distinctive, so finding it anywhere it should not be is unambiguous.
SECRET = "vg-fake-secret-7Q2xW9kP4mZ1"
ENV = {"UPSTREAM_KEY": SECRET}
MINIMAL = """
[providers.apimall]
kind = "apimall"
base_url = "https://api.example.com"
api_key_env = "UPSTREAM_KEY"
"""


def write(directory: Path, text: str) -> Path:
    path = directory / "providers.toml"
    path.write_text(text)
    return path


def read(directory: Path, text: str, environ: dict[str, str] | None = None) -> ProviderConfig:
    configs = read_providers_file(
        write(directory, text), environ=ENV if environ is None else environ
    )
    assert len(configs) == 1
    return next(iter(configs.values()))


def refused(directory: Path, text: str, environ: dict[str, str] | None = None) -> str:
    path = write(directory, text)
    with pytest.raises(ProvidersFileError) as caught:
        read_providers_file(path, environ=ENV if environ is None else environ)
    message = str(caught.value)
    assert message.startswith(f"providers {path}: "), message
    assert "\n" not in message
    assert SECRET not in message
    return message


# -- what a table becomes ---------------------------------------------------------------


def test_every_key_read(tmp_path: Path) -> None:
    config = read(
        tmp_path,
        """
        [providers.mall-eu]
        kind = "openai"
        base_url = "https://videos.example.com/v1/"
        api_key_env = "UPSTREAM_KEY"
        connect_timeout_s = 2
        request_timeout_s = 45.5
        poll_interval_s = 3
        max_poll_interval_s = 20
        max_concurrent = 4
        options = { sizes = ["1280x720"], seconds = [4, 8] }
        """,
    )
    assert config == ProviderConfig(
        name="mall-eu",
        kind="openai",
        base_url="https://videos.example.com/v1",
        api_key=SECRET,
        connect_timeout_s=2.0,
        request_timeout_s=45.5,
        poll_interval_s=3.0,
        max_poll_interval_s=20.0,
        max_concurrent=4,
        options={"sizes": ["1280x720"], "seconds": [4, 8]},
    )


def test_defaults_are_the_configs(tmp_path: Path) -> None:
    config = read(tmp_path, MINIMAL)
    defaults = ProviderConfig(name="apimall", kind="apimall", base_url="https://api.example.com")
    assert config == ProviderConfig(
        **{**defaults.__dict__, "api_key": SECRET}  # every other field as ProviderConfig has it
    )
    assert config.max_concurrent is None
    assert config.options == {}


def test_a_slow_first_poll_raises_the_default_ceiling(tmp_path: Path) -> None:
    config = read(tmp_path, MINIMAL + "poll_interval_s = 60\n")
    assert (config.poll_interval_s, config.max_poll_interval_s) == (60.0, 60.0)


def test_providers_keep_the_files_order(tmp_path: Path) -> None:
    text = "".join(
        f'[providers.{name}]\nkind = "apimall"\nbase_url = "http://10.0.0.{index}:8000"\n'
        'api_key_env = "UPSTREAM_KEY"\n'
        for index, name in enumerate(["zeta", "alpha", "mid"], start=1)
    )
    configs = read_providers_file(write(tmp_path, text), environ=ENV)
    assert list(configs) == ["zeta", "alpha", "mid"]
    assert configs["alpha"].base_url == "http://10.0.0.2:8000"


# -- the key: from the environment or a file, never shown --------------------------------


def test_key_from_a_file_next_to_the_providers_file(tmp_path: Path) -> None:
    (tmp_path / "keys").mkdir()
    (tmp_path / "keys" / "apimall.key").write_text(f"\n  {SECRET}\n")
    text = MINIMAL.replace('api_key_env = "UPSTREAM_KEY"', 'api_key_file = "keys/apimall.key"')
    assert read(tmp_path, text, environ={}).api_key == SECRET


def test_key_from_a_file_by_absolute_path(tmp_path: Path) -> None:
    key_file = tmp_path / "elsewhere.key"
    key_file.write_text(SECRET)
    (tmp_path / "conf").mkdir()
    text = MINIMAL.replace('api_key_env = "UPSTREAM_KEY"', f'api_key_file = "{key_file}"')
    assert read(tmp_path / "conf", text, environ={}).api_key == SECRET


def test_key_from_the_environment_is_stripped(tmp_path: Path) -> None:
    assert read(tmp_path, MINIMAL, environ={"UPSTREAM_KEY": f"{SECRET}\n"}).api_key == SECRET


def test_the_key_stays_out_of_str_and_repr(tmp_path: Path) -> None:
    config = read(tmp_path, MINIMAL)
    assert config.api_key == SECRET
    assert SECRET not in str(config)
    assert SECRET not in repr(config)
    assert SECRET not in repr(read_providers_file(write(tmp_path, MINIMAL), environ=ENV))


def test_a_later_error_does_not_show_the_key_read_before_it(tmp_path: Path) -> None:
    message = refused(tmp_path, MINIMAL + "max_concurrent = 0\n")
    assert message.endswith("providers.apimall.max_concurrent: must be at least 1 (got 0)")


@pytest.mark.parametrize(
    ("line", "field", "problem"),
    [
        (f'api_key = "{SECRET}"', "api_key", "secrets never go in the file"),
        (
            f'options = {{ api_key = "{SECRET}" }}',
            "options.api_key",
            "secrets never go in the file",
        ),
    ],
)
def test_a_literal_key_is_refused_without_showing_it(
    tmp_path: Path, line: str, field: str, problem: str
) -> None:
    message = refused(tmp_path, f"{MINIMAL}{line}\n")
    assert f"providers.apimall.{field}: {problem}" in message
    assert "api_key_env" in message
    assert "api_key_file" in message


@pytest.mark.parametrize(
    "url",
    [
        f"https://user:{SECRET}@api.example.com",
        f"https://{SECRET}@api.example.com",
        f"https://api.example.com/?key={SECRET}",
    ],
)
def test_a_key_inside_the_base_url_is_refused_without_showing_it(tmp_path: Path, url: str) -> None:
    message = refused(tmp_path, MINIMAL.replace("https://api.example.com", url))
    assert "providers.apimall.base_url: must not" in message


def test_a_key_pasted_as_the_variable_name_is_not_shown(tmp_path: Path) -> None:
    message = refused(tmp_path, MINIMAL.replace("UPSTREAM_KEY", SECRET))
    assert "providers.apimall.api_key_env: must be the name of an environment variable" in message


def test_a_key_file_holding_more_than_the_key_is_not_shown(tmp_path: Path) -> None:
    (tmp_path / "apimall.key").write_text(f"{SECRET}\nsecond line {SECRET}\n")
    text = MINIMAL.replace('api_key_env = "UPSTREAM_KEY"', 'api_key_file = "apimall.key"')
    message = refused(tmp_path, text, environ={})
    assert message.endswith(f"{tmp_path / 'apimall.key'} must hold the key alone, on one line")


@pytest.mark.parametrize(
    ("environ", "problem"),
    [
        ({}, "providers.apimall.api_key_env: environment variable UPSTREAM_KEY is not set"),
        ({"UPSTREAM_KEY": "  \n"}, "providers.apimall.api_key_env: environment variable "
         "UPSTREAM_KEY is empty"),
    ],
)  # fmt: skip
def test_a_missing_key_names_the_variable(
    tmp_path: Path, environ: dict[str, str], problem: str
) -> None:
    assert refused(tmp_path, MINIMAL, environ=environ).endswith(problem)


def test_a_missing_or_empty_key_file_is_named(tmp_path: Path) -> None:
    text = MINIMAL.replace('api_key_env = "UPSTREAM_KEY"', 'api_key_file = "apimall.key"')
    key_file = tmp_path / "apimall.key"
    message = refused(tmp_path, text, environ={})
    assert message.endswith(
        f"providers.apimall.api_key_file: cannot read {key_file}: No such file or directory"
    )
    key_file.write_text("\n")
    assert refused(tmp_path, text, environ={}).endswith(
        f"providers.apimall.api_key_file: {key_file} is empty"
    )


def test_one_source_of_the_key_exactly(tmp_path: Path) -> None:
    both = refused(tmp_path, MINIMAL + 'api_key_file = "k"\n')
    assert both.endswith("providers.apimall.api_key_file: give either api_key_env or "
                         "api_key_file, not both")  # fmt: skip
    neither = refused(tmp_path, MINIMAL.replace('api_key_env = "UPSTREAM_KEY"\n', ""))
    assert "providers.apimall.api_key_env: missing: name the environment variable" in neither


# -- every other field ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (
            'kind = "comfyui"',
            'kind: unknown kind "comfyui" (known: apimall, openai, diffusers)',
        ),
        ('kind = "diffusers"', "base_url: unknown key (allowed: kind, pipeline, path,"),
        ("base_url = 42", "base_url: must be a string (got 42)"),
        ('base_url = "ftp://api.example.com"', "base_url: must be an http:// or https:// URL"),
        ('base_url = "https://"', "base_url: must be an http:// or https:// URL with a host"),
        ('base_url = "https://api.example.com:port"', "base_url: is not a valid URL"),
        ('base_url = "https://api.example.com/#top"', "base_url: must not have a query or a"),
        ("connect_timeout_s = 0", "connect_timeout_s: must be at least 0.01 (got 0)"),
        ('request_timeout_s = "30"', 'request_timeout_s: must be a number (got "30")'),
        ("request_timeout_s = nan", "request_timeout_s: must be a finite number (got nan)"),
        ("poll_interval_s = -1", "poll_interval_s: must be at least 0.01 (got -1)"),
        (
            "poll_interval_s = 10\nmax_poll_interval_s = 5",
            "max_poll_interval_s: must be at least poll_interval_s (10) (got 5)",
        ),
        ("max_concurrent = 0", "max_concurrent: must be at least 1 (got 0)"),
        ("max_concurrent = 2.5", "max_concurrent: must be an integer (got 2.5)"),
        ("max_concurrent = true", "max_concurrent: must be an integer (got true)"),
        ('options = "fast"', 'options: must be a table (got "fast")'),
        ("timeout = 3", "timeout: unknown key (allowed: kind, base_url, api_key_env,"),
    ],
)
def test_each_field_is_checked(tmp_path: Path, extra: str, message: str) -> None:
    # TOML refuses a key given twice, so a replaced key is removed from the minimal table first.
    replaced = extra.split(" = ", 1)[0]
    lines = [line for line in MINIMAL.splitlines() if not line.startswith(f"{replaced} = ")]
    assert f"providers.apimall.{message}" in refused(tmp_path, "\n".join([*lines, extra]) + "\n")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "providers: missing: a providers file needs a [providers.<name>] table"),
        ("[providers]\n", "providers: at least one provider is required"),
        ("providers = 3\n", "providers: must be a table (got 3)"),
        ("[models.x]\n", "models: unknown key (allowed: providers)"),
        ("[providers.x\n", "line 1, column 13: invalid TOML: "),
        ("[providers.sample]\n", "providers.sample: sample is the name of a built-in provider"),
        ('[providers."two words"]\n', 'providers."two words": a provider name is 1-64 letters'),
        ("[providers.x]\n", "providers.x.kind: missing: the provider's kind (known: apimall, o"),
        (
            '[providers.x]\nkind = "apimall"\n',
            "providers.x.base_url: missing: the endpoint's URL",
        ),
    ],
)
def test_the_files_shape_is_checked(tmp_path: Path, text: str, message: str) -> None:
    assert message in refused(tmp_path, text)


def test_an_unreadable_file_is_one_line(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.toml"
    with pytest.raises(ProvidersFileError) as caught:
        read_providers_file(missing, environ=ENV)
    assert (
        str(caught.value) == f"providers {missing}: cannot read the file: No such file or directory"
    )


# -- the factory ----------------------------------------------------------------------------


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path / "data")


@pytest.fixture
def upstream_key(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("UPSTREAM_KEY", SECRET)
    return SECRET


def test_the_reader_and_the_factory_know_the_same_kinds() -> None:
    assert set(PROVIDER_CLASSES) == set(KINDS)


async def test_without_a_file_only_the_sample(settings: Settings) -> None:
    providers = build_providers(settings)
    assert list(providers) == ["sample"]
    assert isinstance(providers["sample"], SampleProvider)
    assert check_providers_file(settings) == {}
    await providers["sample"].close()


async def test_each_kind_builds_its_class(
    settings: Settings, tmp_path: Path, upstream_key: str
) -> None:
    path = write(
        tmp_path,
        MINIMAL
        + """
        max_concurrent = 3
        poll_interval_s = 2

        [providers.sora-direct]
        kind = "openai"
        base_url = "http://127.0.0.1:9/v1"
        api_key_env = "UPSTREAM_KEY"
        """,
    )
    settings = settings.model_copy(update={"providers_path": path})
    providers = build_providers(settings)
    try:
        assert list(providers) == ["sample", "apimall", "sora-direct"]
        assert isinstance(providers["apimall"], ApiMallProvider)
        assert isinstance(providers["sora-direct"], OpenAIVideosProvider)
        mall = providers["apimall"]
        assert (mall.name, mall.max_concurrent, mall.poll_interval_s) == ("apimall", 3, 2.0)
        assert mall.trusted_hosts == frozenset({"api.example.com"})
        assert providers["sora-direct"].name == "sora-direct"
    finally:
        for provider in providers.values():
            await provider.close()


def test_options_the_adapter_refuses_name_the_provider(
    settings: Settings, tmp_path: Path, upstream_key: str
) -> None:
    path = write(
        tmp_path,
        """
        [providers.sora-direct]
        kind = "openai"
        base_url = "http://127.0.0.1:9/v1"
        api_key_env = "UPSTREAM_KEY"
        options = { no_such_option = 1 }
        """,
    )
    settings = settings.model_copy(update={"providers_path": path})
    with pytest.raises(ProvidersFileError) as caught:
        check_providers_file(settings)
    assert str(caught.value).startswith(f"providers {path}: providers.sora-direct: ")
    assert "no_such_option" in str(caught.value)


def test_a_kind_missing_from_the_installation_is_one_line(
    settings: Settings, tmp_path: Path, upstream_key: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The table is data: pointing a kind at a module that is not there stands for an older
    # installation reading a newer file.
    monkeypatch.setitem(PROVIDER_CLASSES, "apimall", "vidgate.providers.not_there:Nothing")
    path = write(tmp_path, MINIMAL)
    settings = settings.model_copy(update={"providers_path": path})
    with pytest.raises(ProvidersFileError) as caught:
        check_providers_file(settings)
    assert str(caught.value) == (
        f"providers {path}: providers.apimall.kind: "
        "the apimall provider is not part of this version"
    )


async def test_a_provider_no_channel_names_is_a_warning(
    settings: Settings, tmp_path: Path, upstream_key: str
) -> None:
    path = write(tmp_path, MINIMAL + MINIMAL.replace("providers.apimall", "providers.spare"))
    settings = settings.model_copy(update={"providers_path": path})
    configs = read_providers_file(path)
    assert unused_providers(configs, Catalogue.load()) == ["spare"]

    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign]
    logger = logging.getLogger("vidgate.providers")
    logger.addHandler(handler)
    try:
        providers = build_providers(settings)
    finally:
        logger.removeHandler(handler)
    for provider in providers.values():
        await provider.close()
    assert "spare" in providers  # built all the same: a warning, not an error
    warnings = [r.getMessage() for r in records if r.levelno == logging.WARNING]
    assert warnings == [
        f"provider spare ({path}) is configured but no catalogue channel names it; "
        "no task will use it"
    ]
