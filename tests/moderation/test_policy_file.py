"""The moderation file reader: a good file becomes a policy; every broken one is one line naming
the file and the field, and never shows the external endpoint's key."""

from __future__ import annotations

from pathlib import Path

import pytest

import vidgate.moderation
from vidgate.moderation.policy_file import ModerationFileError, read_policy

SECRET = "sk-moderation-secret-0123456789"
KNOWN_MODELS = ("sora2", "sample", "wan2.1")
# An [external] table that reads, to which a test adds the key it checks.
EXTERNAL = '[external]\nbase_url = "https://m.example/v1"\napi_key_env = "MOD_KEY"\n'


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "moderation.toml"
    path.write_text(text)
    return path


def refusal(tmp_path: Path, text: str) -> ModerationFileError:
    path = write(tmp_path, text)
    with pytest.raises(ModerationFileError) as caught:
        read_policy(path, known_models=KNOWN_MODELS, environ={"MOD_KEY": SECRET})
    return caught.value


def test_a_full_file_becomes_a_policy(tmp_path: Path) -> None:
    (tmp_path / "key.txt").write_text(f"  {SECRET}\n")
    path = write(
        tmp_path,
        """
words = ["Gore", "  REAL   Person "]
patterns = ['\\bkill\\s+him\\b']

[models.sora2]
words = ["\\uff26\\uff35\\uff2c\\uff2c"]  # fullwidth FULL, as TOML escapes

[models."wan2.1"]
patterns = ["^x+$"]

[external]
base_url = "http://127.0.0.1:9/v1/"
api_key_file = "key.txt"
timeout_s = 2
max_retries = 0
on_error = "allow"
categories = ["violence", "sexual/minors", "violence"]
""",
    )
    policy = read_policy(path, known_models=KNOWN_MODELS)
    # Words are kept normalised: casefolded, NFKC, inner whitespace collapsed.
    assert policy.everywhere.words == ("gore", "real person")
    assert policy.everywhere.patterns[0].search("KILL  HIM now")
    assert policy.per_model["sora2"].words == ("full",)
    assert policy.per_model["wan2.1"].patterns[0].pattern == "^x+$"
    external = policy.external
    assert external is not None
    assert external.base_url == "http://127.0.0.1:9/v1"
    assert external.api_key == SECRET
    assert (external.timeout_s, external.max_retries, external.on_error) == (2.0, 0, "allow")
    assert external.model == "omni-moderation-latest"
    assert external.categories == ("violence", "sexual/minors")
    assert SECRET not in repr(policy)


def test_the_key_comes_from_the_named_environment_variable(tmp_path: Path) -> None:
    path = write(tmp_path, '[external]\nbase_url = "https://mod.example/v1"\napi_key_env = "K"\n')
    policy = read_policy(path, environ={"K": SECRET})
    assert policy.external is not None
    assert policy.external.api_key == SECRET
    assert policy.external.on_error == "block"
    assert policy.per_model == {}


def test_the_shipped_example_file_is_valid(tmp_path: Path) -> None:
    example = Path(vidgate.moderation.__file__).parent / "moderation.example.toml"
    policy = read_policy(example, known_models=KNOWN_MODELS, environ={"OPENAI_API_KEY": "sk-x"})
    assert policy.everywhere.words
    assert policy.external is not None
    assert policy.external.categories


BROKEN = {
    "unknown_top_key": ('word = ["x"]\n', "word", "unknown key (allowed: words, patterns"),
    "words_not_a_list": ('words = "gore"\n', "words", 'must be a list of strings (got "gore")'),
    "word_not_a_string": ('words = ["a", 3]\n', "words[1]", "must be a string (got 3)"),
    "empty_word": ('words = ["a", "  "]\n', "words[1]", "a word cannot be empty"),
    "bad_regex": (
        '[models.sora2]\npatterns = ["ok", "(unclosed"]\n',
        "models.sora2.patterns[1]",
        "invalid regex: missing ), unterminated subpattern at position 0",
    ),
    "regex_matching_everything": (
        'patterns = ["a*"]\n',
        "patterns[0]",
        "matches the empty string, so it would block every prompt",
    ),
    "unknown_model": (
        '[models.sora3]\nwords = ["x"]\n',
        "models.sora3",
        "not a model of the catalogue (models: sample, sora2, wan2.1)",
    ),
    "model_key": ('[models.sora2]\nwords = ["x"]\nlist = []\n', "models.sora2.list", "unknown"),
    "model_without_rules": ("[models.sora2]\n", "models.sora2", "give this model words"),
    "nothing_at_all": ("", "", "nothing to moderate with"),
    "toml_syntax": ('words = ["a"] x\n', "line 1, column 15", "invalid TOML"),
    "external_not_a_table": ('external = "x"\n', "external", "must be a table"),
    "external_without_url": (
        '[external]\napi_key_env = "MOD_KEY"\n',
        "external.base_url",
        "missing",
    ),
    "external_unknown_key": (
        EXTERNAL + "retries = 2\n",
        "external.retries",
        "unknown key",
    ),
    "external_bad_scheme": (
        '[external]\nbase_url = "ftp://m.example/v1"\napi_key_env = "MOD_KEY"\n',
        "external.base_url",
        'must be an http:// or https:// URL with a host (got "ftp://m.example/v1")',
    ),
    "on_error": (
        EXTERNAL + 'on_error = "503"\n',
        "external.on_error",
        'must be "block" or "allow" (got "503")',
    ),
    "timeout": (
        EXTERNAL + "timeout_s = 0\n",
        "external.timeout_s",
        "must be from 0.1 to 120 seconds (got 0)",
    ),
    "retries": (
        EXTERNAL + "max_retries = true\n",
        "external.max_retries",
        "must be an integer from 0 to 5 (got true)",
    ),
    "empty_categories": (
        EXTERNAL + "categories = []\n",
        "external.categories",
        "list at least one category",
    ),
    "category_name": (
        EXTERNAL + 'categories = ["violence", "no spaces"]\n',
        "external.categories[1]",
        "is not a category name",
    ),
    "no_key_source": (
        '[external]\nbase_url = "https://m.example/v1"\n',
        "external.api_key_env",
        "missing: name the environment variable holding the key",
    ),
    "both_key_sources": (
        EXTERNAL + 'api_key_file = "k"\n',
        "external.api_key_file",
        "not both",
    ),
    "unset_variable": (
        '[external]\nbase_url = "https://m.example/v1"\napi_key_env = "NOT_SET_ANYWHERE"\n',
        "external.api_key_env",
        "environment variable NOT_SET_ANYWHERE is not set",
    ),
    "missing_key_file": (
        '[external]\nbase_url = "https://m.example/v1"\napi_key_file = "absent.key"\n',
        "external.api_key_file",
        "No such file or directory",
    ),
}


@pytest.mark.parametrize("kind", BROKEN)
def test_a_broken_file_is_one_line_naming_the_field(tmp_path: Path, kind: str) -> None:
    text, where, problem = BROKEN[kind]
    error = refusal(tmp_path, text)
    path = tmp_path / "moderation.toml"
    prefix = f"moderation {path}: {where}: " if where else f"moderation {path}: "
    message = str(error)
    assert message.startswith(prefix), message
    assert problem in message
    assert "\n" not in message
    assert SECRET not in message


def test_a_missing_file_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(ModerationFileError) as caught:
        read_policy(tmp_path / "nowhere.toml")
    assert str(caught.value) == (
        f"moderation {tmp_path / 'nowhere.toml'}: cannot read the file: No such file or directory"
    )


def test_a_key_written_in_the_file_is_refused_without_showing_it(tmp_path: Path) -> None:
    error = refusal(
        tmp_path, f'[external]\nbase_url = "https://m.example/v1"\napi_key = "{SECRET}"\n'
    )
    assert error.where == "external.api_key"
    assert "secrets never go in the file" in str(error)
    assert SECRET not in str(error)


def test_credentials_in_the_url_are_refused_without_showing_them(tmp_path: Path) -> None:
    error = refusal(
        tmp_path,
        f'[external]\nbase_url = "https://user:{SECRET}@m.example/v1"\napi_key_env = "MOD_KEY"\n',
    )
    assert error.where == "external.base_url"
    assert SECRET not in str(error)


def test_a_key_with_inner_whitespace_is_refused_without_showing_it(tmp_path: Path) -> None:
    (tmp_path / "key.txt").write_text(f"{SECRET}\nsecond line\n")
    error = refusal(
        tmp_path, '[external]\nbase_url = "https://m.example/v1"\napi_key_file = "key.txt"\n'
    )
    assert error.where == "external.api_key_file"
    assert "must hold the key alone, on one line" in str(error)
    assert SECRET not in str(error)
    assert "second line" not in str(error)


def test_without_a_catalogue_any_model_id_is_accepted(tmp_path: Path) -> None:
    path = write(tmp_path, '[models.anything]\nwords = ["x"]\n')
    assert read_policy(path).per_model["anything"].words == ("x",)
