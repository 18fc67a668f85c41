"""Stored files over HTTP, with Range requests judged the way RFC 9110 (section 14) has it.

Starlette's FileResponse does the serving well (threads for I/O, ETag and Last-Modified,
If-Range, 206 bodies, HEAD without a body), but its Range parser disagrees with the RFC: it
answers 400 to headers the RFC says to ignore (an unknown unit, garbage, reversed bounds), it
refuses a multi-range request when any one part is unsatisfiable, it accepts numbers the grammar
does not ("+5", "1_0"), and its 416 is not our error envelope. So the headers are judged here,
and FileResponse only ever sees a Range this module wrote. HEAD answers as GET would, without
the body (RFC 9110 section 9.3.2), a requested range included.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import NamedTuple

from starlette.requests import Request
from starlette.responses import FileResponse
from starlette.types import Receive, Scope, Send

from vidgate import errors
from vidgate.storage.base import LocalFile

# int-range ("first-[last]") or suffix-range ("-length"), ASCII digits only (section 14.1.1).
_RANGE_SPEC = re.compile(r"([0-9]+)-([0-9]*)|-([0-9]+)")
# Python's int() refuses very long digit strings; any number this long is past every file's end.
_MAX_DIGITS = 18


class ByteRange(NamedTuple):
    first: int
    last: int  # inclusive, as in Content-Range


def parse_range(header: str, size: int) -> ByteRange | None:
    """The single range of a GET's Range header to serve, or None to serve the whole file.

    Headers that are not valid byte ranges are ignored (section 14.2 lets a server ignore
    Range), and so are requests for several ranges: the whole file answers them. Raises
    RangeNotSatisfiable, with the Content-Range a 416 carries, when the range starts past the
    end.
    """
    unit, equals, range_set = header.partition("=")
    if not equals or unit.strip().lower() != "bytes":
        return None
    specs = [spec.strip(" \t") for spec in range_set.split(",")]
    matches = [_RANGE_SPEC.fullmatch(spec) for spec in specs if spec]  # empty elements allowed
    if len(matches) != 1 or matches[0] is None:
        return None
    first_digits, last_digits, suffix_digits = matches[0].groups()
    if suffix_digits is not None:
        length = _number(suffix_digits)
        if length == 0:
            raise _unsatisfiable(size)
        # An empty file has no byte to name in a Content-Range: send it whole.
        return ByteRange(max(size - length, 0), size - 1) if size else None
    first = _number(first_digits)
    last = _number(last_digits) if last_digits else None
    if last is not None and last < first:
        return None  # invalid, so the header is ignored
    if first >= size:
        raise _unsatisfiable(size)
    return ByteRange(first, size - 1 if last is None else min(last, size - 1))


def file_response(
    request: Request,
    file: LocalFile,
    *,
    media_type: str,
    filename: str,
    headers: Mapping[str, str],
) -> FileResponse:
    response = _JudgedRangeFileResponse(
        file.path,
        stat_result=file.stat,
        media_type=media_type,
        filename=filename,
        content_disposition_type="inline",
        headers=headers,
    )
    header = request.headers.get("range")
    if header is not None and _if_range_holds(request, response):
        response.byte_range = parse_range(header, file.stat.st_size)
    return response


class _JudgedRangeFileResponse(FileResponse):
    byte_range: ByteRange | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # FileResponse reads Range and If-Range from the request: show it only our verdict.
        headers = [(n, v) for n, v in scope["headers"] if n not in (b"range", b"if-range")]
        if self.byte_range is not None:
            first, last = self.byte_range
            headers.append((b"range", f"bytes={first}-{last}".encode()))
        await super().__call__({**scope, "headers": headers}, receive, send)


def _if_range_holds(request: Request, response: FileResponse) -> bool:
    """If-Range (section 13.1.5): the range applies only to the version the client has, named
    by a strong ETag or by the exact Last-Modified date; otherwise the whole file is sent."""
    validator = request.headers.get("if-range")
    if validator is None:
        return True
    if validator.startswith("W/"):
        return False
    return validator in (response.headers["etag"], response.headers["last-modified"])


def _number(digits: str) -> int:
    return int(digits) if len(digits) <= _MAX_DIGITS else 10**_MAX_DIGITS


def _unsatisfiable(size: int) -> errors.RangeNotSatisfiable:
    return errors.RangeNotSatisfiable(
        f"the requested range starts past the end of the file ({size} bytes)",
        headers={"Content-Range": f"bytes */{size}"},
    )
