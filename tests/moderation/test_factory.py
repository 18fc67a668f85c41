"""build_moderator: no file, no moderation; a file's lists run first and a prompt they block
never reaches the external endpoint; the endpoint judges what they let through."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from moderation.fake_endpoint import FakeModerationEndpoint, moderation_endpoint
from vidgate.errors import ContentBlocked
from vidgate.moderation.base import AllowAll, ModerationChain
from vidgate.moderation.builtin import BLOCKED_BY_POLICY, BuiltinPolicy
from vidgate.moderation.external import BLOCKED_BY_SERVICE, ExternalPolicy
from vidgate.moderation.factory import build_moderator
from vidgate.moderation.policy_file import ModerationFileError
from vidgate.settings import Settings


@pytest.fixture
def endpoint() -> Iterator[FakeModerationEndpoint]:
    with moderation_endpoint() as running:
        yield running


def settings_with(tmp_path: Path, text: str) -> Settings:
    path = tmp_path / "moderation.toml"
    path.write_text(text)
    return Settings(data_dir=tmp_path / "data", moderation_path=path)


def test_without_a_file_every_prompt_passes(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, moderation_path=None)
    assert isinstance(build_moderator(settings), AllowAll)


def test_lists_alone_need_no_endpoint(tmp_path: Path) -> None:
    moderator = build_moderator(settings_with(tmp_path, 'words = ["gore"]\n'))
    assert isinstance(moderator, BuiltinPolicy)


async def test_lists_first_then_the_endpoint(
    tmp_path: Path, endpoint: FakeModerationEndpoint
) -> None:
    (tmp_path / "key").write_text("sk-chain\n")
    text = f"""
words = ["gore"]

[external]
base_url = "{endpoint.base_url}"
api_key_file = "key"
max_retries = 0
"""
    moderator = build_moderator(settings_with(tmp_path, text))
    assert isinstance(moderator, ModerationChain)
    assert [type(policy) for policy in moderator.policies] == [BuiltinPolicy, ExternalPolicy]

    with pytest.raises(ContentBlocked) as by_list:
        await moderator.check(model="sora2", prompt="gore flag:violence")
    assert by_list.value.message == BLOCKED_BY_POLICY
    assert endpoint.requests == []  # blocked without a network call

    with pytest.raises(ContentBlocked) as by_endpoint:
        await moderator.check(model="sora2", prompt="a duel flag:violence")
    assert by_endpoint.value.message.startswith(BLOCKED_BY_SERVICE)

    await moderator.check(model="sora2", prompt="a quiet lake")
    assert [seen.body["input"] for seen in endpoint.requests] == [
        "a duel flag:violence",
        "a quiet lake",
    ]
    external = moderator.policies[1]
    assert isinstance(external, ExternalPolicy)
    await external.close()


def test_a_broken_file_raises_the_one_line_error(tmp_path: Path) -> None:
    settings = settings_with(tmp_path, '[models.sora3]\nwords = ["x"]\n')
    with pytest.raises(ModerationFileError) as caught:
        build_moderator(settings, models=["sora2", "sample"])
    assert caught.value.where == "models.sora3"
    # Without the catalogue's ids, the same file is accepted.
    assert isinstance(build_moderator(settings), BuiltinPolicy)
