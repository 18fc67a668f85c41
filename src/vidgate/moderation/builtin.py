"""The built-in policy: word lists and regular expressions from the moderation file, checked in
process before any network call.

Words match whole words only, after both the prompt and the word went through `normalise`, so
case, fullwidth or ligature letters and invisible characters slipped inside a word do not get a
prompt past the list. Patterns are the operator's own regular expressions (case-insensitive),
tried on the prompt as written and on its normalised form.
"""

from __future__ import annotations

import logging
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass

from vidgate.moderation.base import blocked
from vidgate.moderation.policy import ModerationPolicy, RuleLists

logger = logging.getLogger("vidgate.moderation")

BLOCKED_BY_POLICY = "the prompt was blocked by this gateway's content policy"


def normalise(text: str) -> str:
    """NFKC and casefold (then NFKC again, which casefolding can undo), without the invisible
    format characters (zero-width spaces and joiners, soft hyphens) that split a word."""
    if text.isascii():  # the common case: both steps reduce to lower()
        return text.lower()
    folded = unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", text).casefold())
    return "".join(char for char in folded if unicodedata.category(char) != "Cf")


def words_regex(words: Iterable[str]) -> re.Pattern[str]:
    """One expression for a list of normalised words and phrases, matching whole words: a
    phrase's words may be separated by any run of whitespace."""
    alternatives = {r"\s+".join(map(re.escape, word.split())) for word in words}
    # Longest first, so that of two listed words the longer one is the one reported.
    ordered = sorted(alternatives, key=lambda alternative: (-len(alternative), alternative))
    return re.compile(r"(?<!\w)(?:" + "|".join(ordered) + r")(?!\w)")


@dataclass(frozen=True)
class Rule:
    label: str  # where the rule comes from in the file, for the operator's log
    regex: re.Pattern[str]
    also_as_written: bool  # patterns are tried on the raw prompt too; words only on its normal form


def _rules(lists: RuleLists, prefix: str) -> tuple[Rule, ...]:
    rules: list[Rule] = []
    if lists.words:
        rules.append(Rule(f"{prefix}words", words_regex(lists.words), also_as_written=False))
    for index, pattern in enumerate(lists.patterns):
        rules.append(Rule(f"{prefix}patterns[{index}]", pattern, also_as_written=True))
    return tuple(rules)


class BuiltinPolicy:
    """The moderation file's words and patterns: those for every model, plus each model's own."""

    def __init__(self, policy: ModerationPolicy) -> None:
        self._everywhere = _rules(policy.everywhere, "")
        self._by_model = {
            model_id: self._everywhere + _rules(lists, f"models.{model_id}.")
            for model_id, lists in policy.per_model.items()
        }

    @property
    def has_rules(self) -> bool:
        return bool(self._everywhere) or any(self._by_model.values())

    def first_match(self, *, model: str, prompt: str) -> str | None:
        """The label of the first rule the prompt matches, or None when it passes."""
        rules = self._by_model.get(model, self._everywhere)
        if not rules or not prompt:
            return None
        normal = normalise(prompt)
        for rule in rules:
            if rule.regex.search(normal) or (rule.also_as_written and rule.regex.search(prompt)):
                return rule.label
        return None

    async def check(self, *, model: str, prompt: str) -> None:
        label = self.first_match(model=model, prompt=prompt)
        if label is not None:
            # The operator learns which rule matched; the user only that the policy refused it.
            logger.info("moderation: blocked a %s prompt (rule %s)", model, label)
            raise blocked(BLOCKED_BY_POLICY)

    async def close(self) -> None:
        return None  # nothing held: the lists live in memory
