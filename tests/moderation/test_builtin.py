"""The built-in policy: whole words after Unicode normalisation (so simple evasions do not get
through), the operator's regexes, per-model lists, and a 451 that does not echo the list."""

from __future__ import annotations

from pathlib import Path

import pytest

from vidgate.errors import ContentBlocked
from vidgate.moderation.builtin import BLOCKED_BY_POLICY, BuiltinPolicy, normalise
from vidgate.moderation.policy_file import read_policy

FILE = """
words = ["gore", "real person", "straße", "c++"]
patterns = ['\\bkill(ed|ing)?\\s+(him|her)\\b', 'ünïcode']

[models.sora2]
words = ["celebrity"]
patterns = ['\\d{3}-\\d{4}']
"""


def fullwidth(text: str) -> str:
    """ASCII letters as their fullwidth forms (U+FF01..), which NFKC folds back."""
    return "".join(chr(ord(char) + 0xFEE0) if "!" <= char <= "~" else char for char in text)


@pytest.fixture(scope="module")
def policy(tmp_path_factory: pytest.TempPathFactory) -> BuiltinPolicy:
    path = tmp_path_factory.mktemp("builtin") / "moderation.toml"
    path.write_text(FILE)
    return BuiltinPolicy(read_policy(path))


@pytest.mark.parametrize(
    ("prompt", "rule"),
    [
        ("a scene full of gore", "words"),
        ("GORE at dawn", "words"),
        ("Gore, then silence.", "words"),
        (f"{fullwidth('gore')} in fullwidth letters", "words"),  # NFKC
        ("go\u200bre with a zero-width space", "words"),
        ("go\u00adre with a soft hyphen", "words"),
        ("g\u200do\u2060re with joiners", "words"),
        ("a REAL\n\t  PERSON walks", "words"),  # a phrase across any whitespace
        ("the STRASSE at night", "words"),  # casefolding: ß is ss
        ("Straße in the rain", "words"),
        ("written in C++ today", "words"),  # words need not end in a letter
        ("he KILLED  HER slowly", "patterns[0]"),
        ("they are killing him", "patterns[0]"),
        (fullwidth("kill him"), "patterns[0]"),  # patterns see the normalised prompt too
        ("ÜNÏCODE letters", "patterns[1]"),  # and the prompt as written
    ],
)
def test_blocked_prompts_and_the_rule_that_matched(
    policy: BuiltinPolicy, prompt: str, rule: str
) -> None:
    assert policy.first_match(model="sample", prompt=prompt) == rule


@pytest.mark.parametrize(
    "prompt",
    [
        "a gorenest of birds",  # only whole words
        "a Goretex jacket",
        "a real, person-shaped cloud",  # the phrase's words must follow each other
        "skill him up",  # the operator's \b holds
        "c+ grade",
        "a quiet street",
        "",
    ],
)
def test_innocent_prompts_pass(policy: BuiltinPolicy, prompt: str) -> None:
    assert policy.first_match(model="sample", prompt=prompt) is None


def test_a_model_adds_its_own_lists_to_the_shared_ones(policy: BuiltinPolicy) -> None:
    assert policy.first_match(model="sora2", prompt="a CELEBRITY dancing") == "models.sora2.words"
    assert policy.first_match(model="sora2", prompt="call 555-1234") == "models.sora2.patterns[0]"
    assert policy.first_match(model="sora2", prompt="gore") == "words"
    # Other models do not get sora2's lists.
    assert policy.first_match(model="sample", prompt="a celebrity dancing") is None
    assert policy.first_match(model="sample", prompt="call 555-1234") is None


async def test_the_451_names_the_policy_not_the_word(policy: BuiltinPolicy) -> None:
    with pytest.raises(ContentBlocked) as caught:
        await policy.check(model="sample", prompt="a scene full of gore")
    error = caught.value
    assert (error.status_code, error.code) == (451, "content_blocked")
    assert error.message == BLOCKED_BY_POLICY
    assert "gore" not in error.message
    assert error.headers == {"Cache-Control": "no-store"}
    await policy.check(model="sample", prompt="a quiet street")  # passes: no exception


def test_normalise_folds_what_a_reader_sees_as_the_same_word() -> None:
    assert normalise("HeLLo") == "hello"
    assert normalise(fullwidth("HELLO")) == "hello"
    assert normalise("\ufb01ght") == "fight"  # the fi ligature
    assert normalise("he\u200bllo\u00ad") == "hello"
    assert normalise("Maße") == "masse"
    assert normalise("ǅ") == "dž"  # titlecase digraph: NFKC then casefold


def test_a_policy_without_lists_has_no_rules(tmp_path: Path) -> None:
    path = tmp_path / "m.toml"
    path.write_text('[external]\nbase_url = "https://m.example/v1"\napi_key_env = "K"\n')
    assert not BuiltinPolicy(read_policy(path, environ={"K": "k"})).has_rules
