"""Large request bodies are parsed and validated in a separate process, never on the event loop.

JSON parsing and pydantic validation hold the GIL for the whole call (pydantic-core does not release it while it
builds Python objects), so moving them to a thread frees nothing: measured on a 2-core machine, validating a
25 MB create body with 2 million blocked coordinates took 2.7 s, and with the call on a thread the event loop
still stalled for 2.5 s. :class:`BodyParser` sends a body over ``CATALYTIC_PARSE_OFFLOAD_BYTES`` to a parse
process instead, which validates it against the request model and then packs the bulky parts of each inline
lattice (:func:`pack_arrays`): a coordinate list becomes the packed mask (or one int64 array), a nested weights
list one float64 array, base64 text the bytes it encodes. What comes back pickles as a few buffers, so the
server process never holds millions of small objects; the decoders of :mod:`catalytic.service.compute` take the
packed forms as they take the JSON ones. Small bodies, the common case, are validated on the loop, where a round
trip to another process would cost more than the parse.

A validation error comes back as the same :class:`pydantic.ValidationError`, with the inputs dropped (an input
can be the whole body) and at most :data:`MAX_ERRORS` entries. A parse process that dies (say, killed for
memory) is replaced, and the request answers 503.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import math
import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any, TypeVar

import numpy as np
from pydantic import BaseModel, ValidationError

from catalytic.service.compute import decode_blocked
from catalytic.service.errors import Unavailable
from catalytic.service.lifeline import die_with_parent
from catalytic.service.schemas import LatticeCreate

__all__ = ["MAX_ERRORS", "BodyParser", "pack_arrays", "parse_body"]

log = logging.getLogger("catalytic.service")

M = TypeVar("M", bound=BaseModel)

MAX_ERRORS = 1000
"""Validation errors a parse process sends back for one body (a body of bad coordinates can hold millions)."""


def _decoded_base64(value: str) -> bytes | str:
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return value  # left as sent: the decoder names the field


def _packed_blocked(value: Any, shape: tuple[int, ...], max_vertices: int) -> Any:
    if isinstance(value, str):
        return _decoded_base64(value)
    if not (isinstance(value, list) and value):
        return value
    try:
        coords = np.asarray(value, dtype=np.int64)
    except (ValueError, OverflowError):
        return value
    vertices = math.prod(shape)
    if vertices <= max_vertices and vertices < 64 * coords.size:
        # The packed mask is the smaller form: 1 bit a vertex against 64 bits a coordinate. A coordinate
        # outside the lattice raises the decoder's own error here.
        mask = decode_blocked(coords, shape)
        assert mask is not None
        return np.packbits(mask.ravel(), bitorder="little").tobytes()
    return coords


def _packed_weights(value: Any) -> Any:
    if isinstance(value, str):
        return _decoded_base64(value)
    if isinstance(value, list) and value:
        try:
            return np.asarray(value, dtype=np.float64)
        except (ValueError, TypeError):
            return value
    return value


def pack_arrays(body: BaseModel, max_vertices: int) -> BaseModel:
    """Pack the arrays of ``body``'s inline lattices in place, into forms the decoders of ``compute`` take.

    Base64 text becomes the bytes it encodes. A coordinate list becomes the packed mask (bytes, as the base64
    form decodes to) when the lattice is within ``max_vertices`` and the mask is the smaller, else an int64
    array; nested weights become a float64 array. A value that does not pack (ragged lists, bad base64) is left
    as sent, for the decoders to refuse with the field's name.

    Raises
    ------
    catalytic.errors.MaskError
        A blocked coordinate outside the lattice.

    Examples
    --------
    >>> body = pack_arrays(LatticeCreate(shape=[4, 4], blocked=[[0, 1], [2, 2]]), max_vertices=100)
    >>> body.blocked
    b'\\x02\\x04'
    """
    candidates = [body, *(getattr(body, name) for name in type(body).model_fields)]
    for lattice in candidates:
        if isinstance(lattice, LatticeCreate):
            shape = tuple(lattice.shape)
            # Set through __dict__: the packed forms are what the decoders take, not what the schema describes.
            lattice.__dict__["blocked"] = _packed_blocked(lattice.blocked, shape, max_vertices)
            lattice.__dict__["weights"] = _packed_weights(lattice.weights)
    return body


def parse_body(model: type[M], raw: bytes, max_vertices: int) -> M:
    """Validate ``raw`` against ``model`` and pack its arrays (the work of a parse process).

    Raises
    ------
    pydantic.ValidationError
        The body does not match the model; without inputs, and at most :data:`MAX_ERRORS` entries.
    catalytic.errors.MaskError
        A blocked coordinate outside its lattice.
    """
    try:
        body = model.model_validate_json(raw)
    except ValidationError as exc:
        details: list[Any] = []
        for error in exc.errors(include_url=False)[:MAX_ERRORS]:
            detail: dict[str, Any] = {"type": error["type"], "loc": error["loc"], "input": None}
            if "ctx" in error:
                detail["ctx"] = error["ctx"]
            details.append(detail)
        raise ValidationError.from_exception_data(exc.title, details) from None
    pack_arrays(body, max_vertices)
    return body


class BodyParser:
    """Validates request bodies: small ones on the event loop, larger ones in parse processes.

    Parameters
    ----------
    processes : int
        Most parse processes (started on demand).
    offload_bytes : int
        Bodies longer than this go to a parse process.
    max_vertices : int
        The per-request vertex budget: larger lattices' coordinates are not turned into masks.
    parse : callable
        ``parse(model, raw, max_vertices) -> model instance``, run in the parse process; a module-level function.
    """

    def __init__(self, processes: int, offload_bytes: int, max_vertices: int, parse: Any = parse_body) -> None:
        self.processes = processes
        self.offload_bytes = offload_bytes
        self.max_vertices = max_vertices
        self._parse = parse
        self._executor: ProcessPoolExecutor | None = None
        self.offloaded = 0

    def _pool(self) -> ProcessPoolExecutor:
        if self._executor is None:
            self._executor = ProcessPoolExecutor(
                self.processes, mp_context=multiprocessing.get_context("spawn"), initializer=die_with_parent
            )
        return self._executor

    async def parse(self, model: type[M], raw: bytes) -> M:
        """``raw`` validated against ``model``; in a parse process when longer than ``offload_bytes``.

        Raises
        ------
        pydantic.ValidationError
            The body does not match the model.
        Unavailable
            The parse process died under this body (503).
        """
        if len(raw) <= self.offload_bytes:
            return model.model_validate_json(raw)
        self.offloaded += 1
        pool = self._pool()
        try:
            body: M = await asyncio.get_running_loop().run_in_executor(pool, self._parse, model, raw, self.max_vertices)
        except BrokenProcessPool:
            log.warning("a parse process ended while parsing a request body; starting another")
            if self._executor is pool:
                self._executor = None
                pool.shutdown(wait=False, cancel_futures=True)
            raise Unavailable("the request body could not be parsed: its parse process ended", 1) from None
        return body

    def pids(self) -> list[int]:
        """The process ids of the live parse processes."""
        executor = self._executor
        processes = getattr(executor, "_processes", None) or {}
        return [process.pid for process in processes.values() if process.is_alive()]

    def close(self) -> None:
        """Stop the parse processes (a parse in flight finishes first, in the background)."""
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None
