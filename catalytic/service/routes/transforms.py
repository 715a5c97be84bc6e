"""Reversible transforms of array bytes over HTTP: ``/api/lattice/transform`` and ``/api/lattice/inverse``."""

from __future__ import annotations

import base64
import binascii
import json
import math

import numpy as np
from starlette.requests import Request
from starlette.responses import Response

from catalytic.errors import InvalidTypeError
from catalytic.service.metrics import LATTICE_OPERATIONS
from catalytic.service.schemas import TransformRequest
from catalytic.service.state import read_model, service

__all__ = ["inverse", "transform"]

_KINDS = "biufc"


def _array(body: TransformRequest) -> np.ndarray:
    allowed = "a numpy dtype of booleans, integers, floats or complex numbers, e.g. float64 or <u4"
    try:
        dtype = np.dtype(body.dtype)
    except (TypeError, ValueError, SyntaxError):  # NumPy's dtype parser raises each of these for bad text
        raise InvalidTypeError("dtype", f"{body.dtype!r} is not a dtype", allowed) from None
    if dtype.kind not in _KINDS:
        raise InvalidTypeError("dtype", f"{body.dtype!r} is not a numeric dtype", allowed)
    try:
        raw = base64.b64decode(body.data, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidTypeError("data", "is not valid base64", "base64 of the array's C-order bytes") from None
    expected = math.prod(body.shape) * dtype.itemsize
    if len(raw) != expected:
        raise InvalidTypeError(
            "data", f"{len(raw)} bytes decoded", f"{expected} bytes for shape {body.shape} of {dtype}"
        )
    return np.frombuffer(raw, dtype=dtype).reshape(body.shape).copy()


def _run(body: TransformRequest, forward: bool) -> bytes:
    """Decode, transform and encode the answer's JSON, all on a compute thread: a body of tens of MiB takes tens
    of milliseconds to decode or render, which the event loop must not spend."""
    from catalytic.transforms import inverse as undo
    from catalytic.transforms import transform as apply

    data = _array(body)
    result = (apply if forward else undo)(data, body.op, body.seed)
    answer = {
        "data": base64.b64encode(np.ascontiguousarray(result).tobytes()).decode(),
        "dtype": result.dtype.str,
        "shape": list(result.shape),
        "op": body.op,
        "seed": body.seed,
    }
    return json.dumps(answer, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode()


async def _respond(request: Request, forward: bool) -> Response:
    st = service(request)
    body = await read_model(request, TransformRequest)
    answer = await st.compute(_run, body, forward)
    LATTICE_OPERATIONS.labels("transform" if forward else "inverse", "numba").inc()
    return Response(answer, media_type="application/json")


async def transform(request: Request) -> Response:
    """POST /api/lattice/transform: scramble an array's bytes reversibly (xor, add, rotate, permute)."""
    return await _respond(request, forward=True)


async def inverse(request: Request) -> Response:
    """POST /api/lattice/inverse: undo a transform with the same ``op`` and ``seed``, bit for bit."""
    return await _respond(request, forward=False)
