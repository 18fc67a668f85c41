"""The gateway's moderator, built from the settings: allow-all without a moderation file, else
the file's built-in words and patterns first (no network), then its external endpoint."""

from __future__ import annotations

import logging
from collections.abc import Collection

from vidgate.moderation.base import AllowAll, ModerationChain, Moderator
from vidgate.moderation.builtin import BuiltinPolicy
from vidgate.moderation.external import ExternalPolicy
from vidgate.moderation.policy import ModerationPolicy
from vidgate.moderation.policy_file import read_policy
from vidgate.settings import Settings

logger = logging.getLogger("vidgate.moderation")


def moderator_for(policy: ModerationPolicy) -> Moderator:
    policies: list[Moderator] = []
    builtin = BuiltinPolicy(policy)
    if builtin.has_rules:
        policies.append(builtin)
    if policy.external is not None:
        policies.append(ExternalPolicy(policy.external))
    if len(policies) == 1:
        return policies[0]
    return ModerationChain(policies)


def build_moderator(settings: Settings, *, models: Collection[str] | None = None) -> Moderator:
    """`models`: the catalogue's ids, to refuse a moderation file naming another. Raises
    ModerationFileError (one line naming the file and field) for an unusable file."""
    if settings.moderation_path is None:
        return AllowAll()
    policy = read_policy(settings.moderation_path, known_models=models)
    external = policy.external
    logger.info(
        "content moderation from %s: for every model words %d, patterns %d; own lists for "
        "%s; external endpoint: %s",
        policy.source,
        len(policy.everywhere.words),
        len(policy.everywhere.patterns),
        ", ".join(sorted(policy.per_model)) or "no model",
        f"{external.base_url} (on_error = {external.on_error})" if external else "none",
    )
    return moderator_for(policy)
