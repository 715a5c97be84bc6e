"""HTTP range requests (RFC 9110 §14) for downloads, so a client can resume a large one where it stopped.

One range per request: ``bytes=a-b``, ``bytes=a-`` or ``bytes=-n`` answers 206 with ``Content-Range``; a range
that starts past the end (or a suffix of 0 bytes) answers 416 with ``Content-Range: bytes */SIZE`` in the
common error shape. A header that is not one byte range (a syntax error, another unit, several ranges) is
ignored as the RFC allows, and the whole body answers 200. Every full answer says ``Accept-Ranges: bytes``.
``If-Range`` with an ETag other than the current one also gets the whole body, so a resumed download never
splices two versions of a file.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable, Iterator
from typing import Any

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from catalytic.service.errors import ServiceError

__all__ = ["RangeNotSatisfiable", "byte_range", "ranged_response"]

_RANGE = re.compile(r"^\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*$", re.IGNORECASE)


class RangeNotSatisfiable(ServiceError):
    """A range that selects no byte of the body (416, with ``Content-Range: bytes */SIZE``)."""

    status = 416
    code = "range_not_satisfiable"


def byte_range(header: str | None, size: int) -> tuple[int, int] | None:
    """The ``[start, stop)`` a ``Range`` header selects from a body of ``size`` bytes; None: the whole body.

    Raises
    ------
    RangeNotSatisfiable
        The range starts at or past the end, or is a suffix of 0 bytes.

    Examples
    --------
    >>> byte_range("bytes=0-99", 1000), byte_range("bytes=900-", 1000), byte_range("bytes=-10", 1000)
    ((0, 100), (900, 1000), (990, 1000))
    >>> byte_range("bytes=0-1,5-6", 1000) is None
    True
    """
    if header is None:
        return None
    match = _RANGE.match(header)
    if match is None or not any(match.groups()) or any(len(g) > 18 for g in match.groups()):
        return None
    first, last = match.groups()
    if not first:
        suffix = int(last)
        if suffix == 0 or size == 0:
            raise _unsatisfiable(header, size)
        return max(0, size - suffix), size
    start = int(first)
    stop = size if not last else min(int(last) + 1, size)
    if last and int(last) < start:
        return None  # an invalid range: ignored
    if start >= size:
        raise _unsatisfiable(header, size)
    return start, stop


def _unsatisfiable(header: str, size: int) -> RangeNotSatisfiable:
    return RangeNotSatisfiable(
        f"the range {header[:64]!r} selects no byte of a body of {size} bytes",
        fields=[
            {"field": "Range", "message": header[:64], "allowed": f"bytes=a-b with a < {size}, or bytes=-n, n > 0"}
        ],
        headers={"Content-Range": f"bytes */{size}"},
    )


async def ranged_response(
    request: Request,
    size: int,
    open_range: Callable[[int, int], Iterator[bytes]],
    *,
    media_type: str,
    etag: str | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    """The whole body (200) or the part the request's ``Range`` selects (206), streamed from ``open_range``.

    Parameters
    ----------
    request : Request
        Its ``Range`` and ``If-Range`` headers are read.
    size : int
        Bytes of the whole body.
    open_range : callable
        ``open_range(start, stop)``: the bytes ``[start, stop)`` in pieces. Its first piece is read (on a
        thread) before the answer starts, so a missing file raises here instead of cutting the stream.
    media_type : str
    etag : str, optional
        The body's strong ETag (quoted); sent, and compared with ``If-Range``.
    headers : dict, optional
        Further headers of the answer.

    Raises
    ------
    RangeNotSatisfiable
        A range past the end (416).
    """
    out: dict[str, Any] = {"Accept-Ranges": "bytes", **(headers or {})}
    if etag is not None:
        out["ETag"] = etag
    selected = byte_range(request.headers.get("range"), size)
    condition = request.headers.get("if-range")
    if selected is not None and condition is not None and condition.strip() != etag:
        selected = None
    status = 200
    start, stop = 0, size
    if selected is not None:
        status = 206
        start, stop = selected
        out["Content-Range"] = f"bytes {start}-{stop - 1}/{size}"
    out["Content-Length"] = str(stop - start)
    pieces = open_range(start, stop)
    first = await asyncio.to_thread(next, pieces, b"")

    def stream() -> Iterator[bytes]:
        yield first
        yield from pieces

    return StreamingResponse(stream(), status_code=status, media_type=media_type, headers=out)
