"""JSON Schema patterns that state, in the OpenAPI document, the text rules the services check
with Python's `str.strip()`, `str.isspace()` and `str.isprintable()`.

They document and do not validate: the services' own checks and messages stay the only ones.
The character sets are spelled out because `\\s` reads differently in each engine: ECMA-262 and
Rust leave \\x1c-\\x1f out of it, Python's `re` with `re.ASCII` (schemathesis draws values so)
leaves out everything past ASCII, and `str.isspace()` counts both.
"""

from __future__ import annotations

# Every character for which `str.isspace()` holds, what strip() drops (a test keeps it so).
_SPACE = "\\t-\\r\\x1c-\\x20\\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000"

# Search pattern: a character strip() keeps, so the text is not blank.
NOT_BLANK = f"[^{_SPACE}]"

# Header values reach the application as latin-1 text, so these sets stop at \xff.
_LATIN1_SPACE = "\\t-\\r\\x1c-\\x20\\x85\\xa0"
_LATIN1_PRINTABLE = "\\x20-\\x7e\\xa1-\\xac\\xae-\\xff"  # str.isprintable(): space included
_LATIN1_VISIBLE = "\\x21-\\x7e\\xa1-\\xac\\xae-\\xff"  # printable and not space


def stripped_printable(max_length: int) -> str:
    """Anchored pattern of a latin-1 value that, once stripped, is 1 to `max_length` printable
    characters; the surrounding whitespace may be any."""
    inner = f"[{_LATIN1_PRINTABLE}]{{0,{max_length - 2}}}"
    return (
        f"^[{_LATIN1_SPACE}]*[{_LATIN1_VISIBLE}](?:{inner}[{_LATIN1_VISIBLE}])?[{_LATIN1_SPACE}]*$"
    )
