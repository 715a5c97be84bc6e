"""Reversible transforms of raw array bytes, and their exact inverses.

``transform(data, op, seed)`` scrambles an array and ``inverse(data, op, seed)`` gives back the same bytes,
whatever the dtype: bool, integers, floats with NaN payloads, complex and structured types all go through an
unsigned view of their raw bytes, so nothing is normalised on the way.

Operations
----------
Each element is split into *lanes*: unsigned integers of the widest width among 8, 4, 2 and 1 bytes that
divides the item size (a complex128 has two 8-byte lanes, a 3-byte structured item three 1-byte lanes).

The key stream is byte ``b`` of the array's raw bytes: ``(splitmix64(seed, b // 8) >> 8 · (b % 8)) & 0xFF``
(SplitMix64 as in :mod:`catalytic.lattice`), so a lane's key is its bytes of the stream read little-endian.

``xor``
    Every byte XOR its key byte. Its own inverse.
``add``
    Every lane plus its key, modulo 2^(lane bits). The inverse subtracts.
``rotate``
    Every lane rotated left by ``key mod lane bits``. The inverse rotates right.
``permute``
    Element ``i`` of the result is element ``P(i)`` of the input, where ``P`` is a keyed bijection of
    ``[0, n)`` built from four-round Feistel networks (cycle-walked into range where the count is not a power
    of four): it permutes whole blocks of 4096 elements, then the elements inside each block with keys drawn
    from the block, and the final partial block on its own. It scrambles order, it is not a cipher. No
    permutation table is stored; the inverse gathers through ``P⁻¹``. Permuting in place needs an n-element
    temporary (it can come from a :func:`catalytic.borrow` scratch), and a gather is slower than the other
    operations.

A list of operations is applied in order, the ``k``-th with the sub-seed ``seed`` for ``k = 0`` and
``splitmix64(seed, 2^63 + k)`` after; the inverse applies the inverses in reverse order.

Byte and element positions count in the memory order of the array written (``out``, or a new array laid
out like ``data``: C order, or F order for an F-ordered input), so transform and inverse must see the same
layout. Kernels are numba-compiled, release the GIL and run on slices across a thread pool. Each operation
finishes every slice even when interrupted, and an in-place call interrupted between the operations of a
list undoes the ones it finished before the interrupt propagates, so an in-place transform happens all at once
or not at all. The byte stream is defined little-endian, as are the machines this runs on.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from typing import Any

import numba
import numpy as np

from catalytic.errors import InvalidInputError, InvalidTypeError, MethodError, ShapeError

__all__ = ["OPS", "in_place", "inverse", "transform"]

OPS = ("xor", "add", "rotate", "permute")
_UINT64_MAX = 2**64 - 1
_SUBSEED_BASE = 2**63
_BLOCK_BITS = 12
_XOR, _ADD, _SUB, _ROTL, _ROTR = 0, 1, 2, 3, 4
_LANE_TYPES = {8: np.uint64, 4: np.uint32, 2: np.uint16, 1: np.uint8}

_PARALLEL_BYTES = 1 << 21
"""Arrays at least this large are split across threads; smaller ones are not worth a thread hand-off."""

_GAMMA = np.uint64(0x9E3779B97F4A7C15)
_MUL1 = np.uint64(0xBF58476D1CE4E5B9)
_MUL2 = np.uint64(0x94D049BB133111EB)


@numba.njit(cache=True, nogil=True, inline="always")
def _mix(z: np.uint64) -> np.uint64:  # pragma: no cover - compiled
    z = (z ^ (z >> np.uint64(30))) * _MUL1
    z = (z ^ (z >> np.uint64(27))) * _MUL2
    return z ^ (z >> np.uint64(31))


@numba.njit(cache=True, nogil=True, inline="always")
def _splitmix(seed: np.uint64, index: np.uint64) -> np.uint64:  # pragma: no cover - compiled
    return _mix(seed + (index + np.uint64(1)) * _GAMMA)


@numba.njit(cache=True, nogil=True, inline="always")
def _lane_op(
    x: np.uint64, key: np.uint64, code: int, bits: np.uint64, mask: np.uint64
) -> np.uint64:  # pragma: no cover - compiled
    if code == _XOR:
        return x ^ key
    if code == _ADD:
        return (x + key) & mask
    if code == _SUB:
        return (x - key) & mask
    low = bits - np.uint64(1)
    r = key & low
    if code == _ROTR:
        r = (bits - r) & low
    # (bits - r) & low keeps every shift below the lane width, so r == 0 needs no branch.
    return ((x << r) | (x >> ((bits - r) & low))) & mask


@numba.njit(cache=True, nogil=True)
def _lanes_kernel(lanes: np.ndarray, seed: np.uint64, code: int, first_word: int) -> None:  # pragma: no cover
    """Lane by lane; ``lanes`` starts at stream word ``first_word``."""
    width = lanes.itemsize
    per_word = 8 // width
    bits = np.uint64(8 * width)
    mask = np.uint64(0xFFFFFFFFFFFFFFFF) >> np.uint64(64 - 8 * width)
    n = lanes.size
    start = np.uint64(first_word)
    for j in range((n + per_word - 1) // per_word):
        k = _splitmix(seed, start + np.uint64(j))
        base = j * per_word
        for t in range(per_word):
            i = base + t
            if i < n:
                key = (k >> np.uint64(8 * width * t)) & mask
                lanes[i] = _lane_op(np.uint64(lanes[i]), key, code, bits, mask)


@numba.njit(cache=True, nogil=True, inline="always")
def _rotate_word(x: np.uint64, k: np.uint64, bits: int, ones: np.uint64, left: bool) -> np.uint64:  # pragma: no cover
    """Rotate every lane of a word by its key's low bits.

    Wide lanes (32 or 64 bits) rotate one by one; narrow ones all at once, by one conditional rotation per bit
    of the amount (by 1, 2, 4, ...), which costs fewer operations than 4 or 8 separate lanes.
    """
    lane_max = np.uint64(0xFFFFFFFFFFFFFFFF) >> np.uint64(64 - bits)
    if bits >= 32:
        low_bits = np.uint64(bits - 1)
        width = np.uint64(bits)
        out = np.uint64(0)
        for t in range(64 // bits):
            shift = np.uint64(t * bits)
            lane = (x >> shift) & lane_max
            r = (k >> shift) & low_bits
            if not left:
                r = (width - r) & low_bits
            out |= (((lane << r) | (lane >> ((width - r) & low_bits))) & lane_max) << shift
        return out
    step = 1
    stage = 0
    while step < bits:
        chosen = ((k >> np.uint64(stage)) & ones) * lane_max
        low = ones * ((np.uint64(1) << np.uint64(step)) - np.uint64(1))
        if left:
            moved = ((x << np.uint64(step)) & ~low) | ((x >> np.uint64(bits - step)) & low)
        else:
            high = low << np.uint64(bits - step)
            moved = ((x >> np.uint64(step)) & ~high) | ((x << np.uint64(bits - step)) & high)
        x = (x & ~chosen) | (moved & chosen)
        step *= 2
        stage += 1
    return x


@numba.njit(cache=True, nogil=True)
def _words_kernel(
    words: np.ndarray, seed: np.uint64, code: int, bits: int, first_word: int
) -> None:  # pragma: no cover
    """Transform whole 8-byte words holding ``8 // bits`` lanes each, without carries between lanes (SWAR).

    Adding sums the lanes with their top bits masked off, then sets the top bits from their XOR;
    subtracting is the mirror image. Rotating applies a rotation by 1, 2, 4, ... to the lanes whose
    amount has that bit set.
    """
    ones = np.uint64(0xFFFFFFFFFFFFFFFF) // (np.uint64(0xFFFFFFFFFFFFFFFF) >> np.uint64(64 - bits))
    high = ones << np.uint64(bits - 1)
    low = ~high
    start = np.uint64(first_word)
    for j in range(words.size):
        k = _splitmix(seed, start + np.uint64(j))
        x = words[j]
        if code == _XOR:
            words[j] = x ^ k
        elif code == _ADD:
            words[j] = ((x & low) + (k & low)) ^ ((x ^ k) & high)
        elif code == _SUB:
            words[j] = ((x | high) - (k & low)) ^ ((x ^ ~k) & high)
        else:
            words[j] = _rotate_word(x, k, bits, ones, code == _ROTL)


@numba.njit(cache=True, nogil=True, inline="always")
def _feistel(
    x: np.uint64, k0: np.uint64, k1: np.uint64, k2: np.uint64, k3: np.uint64, half: np.uint64, forward: bool
) -> np.uint64:  # pragma: no cover - compiled
    """A four-round Feistel bijection of ``[0, 2^(2·half))``, or its inverse."""
    hmask = (np.uint64(1) << half) - np.uint64(1)
    shift = np.uint64(32)
    left = x >> half
    right = x & hmask
    if forward:
        left, right = right, left ^ ((((right ^ k0) * _MUL1) >> shift) & hmask)
        left, right = right, left ^ ((((right ^ k1) * _MUL1) >> shift) & hmask)
        left, right = right, left ^ ((((right ^ k2) * _MUL1) >> shift) & hmask)
        left, right = right, left ^ ((((right ^ k3) * _MUL1) >> shift) & hmask)
    else:
        left, right = right ^ ((((left ^ k3) * _MUL1) >> shift) & hmask), left
        left, right = right ^ ((((left ^ k2) * _MUL1) >> shift) & hmask), left
        left, right = right ^ ((((left ^ k1) * _MUL1) >> shift) & hmask), left
        left, right = right ^ ((((left ^ k0) * _MUL1) >> shift) & hmask), left
    return (left << half) | right


@numba.njit(cache=True, nogil=True, inline="always")
def _walk(
    x: np.uint64, keys: np.ndarray, row: int, half: np.uint64, limit: np.uint64, forward: bool
) -> np.uint64:  # pragma: no cover
    """The Feistel bijection cycle-walked into ``[0, limit)``."""
    k0, k1, k2, k3 = keys[row, 0], keys[row, 1], keys[row, 2], keys[row, 3]
    x = _feistel(x, k0, k1, k2, k3, half, forward)
    while x >= limit:
        x = _feistel(x, k0, k1, k2, k3, half, forward)
    return x


@numba.njit(cache=True, nogil=True)
def _gather_kernel(
    src: np.ndarray,
    dst: np.ndarray,
    keys: np.ndarray,
    block_half: int,
    tail_half: int,
    forward: bool,
    first: int,
    stop: int,
) -> None:  # pragma: no cover - compiled
    """``dst[i] = src[P(i)]`` (forward) or ``src[P⁻¹(i)]`` for rows of ``(elements, lanes)`` arrays.

    ``P`` keeps blocks of ``2^_BLOCK_BITS`` elements together: it permutes whole blocks, then elements inside
    each block with keys drawn from the block, and the last partial block on its own. Reads stay inside one
    cache-sized block at a time instead of jumping across the whole array. This call fills the blocks
    ``first .. stop - 1``, where block number ``n >> _BLOCK_BITS`` stands for the partial block.
    """
    n = src.shape[0]
    width = src.shape[1]
    size = 1 << _BLOCK_BITS
    blocks = n >> _BLOCK_BITS
    inner_half = np.uint64(_BLOCK_BITS // 2)
    for b in range(first, min(stop, blocks)):
        other = _walk(np.uint64(b), keys, 0, np.uint64(block_half), np.uint64(blocks), forward)
        keyed = np.uint64(b) if forward else other
        salt = _mix(keyed ^ keys[1, 0])
        k0, k1, k2, k3 = salt ^ keys[1, 1], salt ^ keys[1, 2], salt ^ keys[1, 3], _mix(salt)
        for offset in range(size):
            source = _feistel(np.uint64(offset), k0, k1, k2, k3, inner_half, forward)
            for c in range(width):
                dst[b * size + offset, c] = src[other * size + source, c]
    if stop <= blocks:
        return
    full = blocks * size
    tail = n - full
    for r in range(tail):
        source = _walk(np.uint64(r), keys, 2, np.uint64(tail_half), np.uint64(tail), forward)
        for c in range(width):
            dst[full + r, c] = src[full + source, c]


def _subseed(seed: int, position: int) -> int:
    if position == 0:
        return seed
    return int(_splitmix(np.uint64(seed), np.uint64(_SUBSEED_BASE + position)))


def _check_ops(op: Any) -> list[str]:
    allowed = f"one of {', '.join(OPS)}, or a non-empty list of them"
    if isinstance(op, str):
        if op not in OPS:
            raise MethodError("op", f"unknown transform {op!r}", allowed)
        return [op]
    if not isinstance(op, Sequence) or isinstance(op, bytes) or not op:
        raise MethodError("op", f"{op!r} is neither an operation name nor a non-empty list of them", allowed)
    for position, name in enumerate(op):
        if not isinstance(name, str) or name not in OPS:
            raise MethodError(f"op[{position}]", f"unknown transform {name!r}", allowed)
    return list(op)


def _check_seed(seed: Any) -> int:
    allowed = f"an integer in [0, {_UINT64_MAX}]"
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer):
        raise InvalidTypeError("seed", f"{seed!r} is not an integer", allowed)
    if not 0 <= int(seed) <= _UINT64_MAX:
        raise MethodError("seed", f"{seed} is out of range", allowed)
    return int(seed)


def _is_contiguous(array: np.ndarray) -> bool:
    return bool(array.flags.c_contiguous or array.flags.f_contiguous)


def _same_memory(a: np.ndarray, b: np.ndarray) -> bool:
    return (
        a.__array_interface__["data"][0] == b.__array_interface__["data"][0]
        and a.shape == b.shape
        and a.strides == b.strides
        and a.dtype == b.dtype
    )


def _check_arrays(data: Any, out: Any) -> tuple[np.ndarray, bool]:
    """Validate ``data`` and ``out``; returns the array to write and whether it is ``data`` itself."""
    if not isinstance(data, np.ndarray):
        raise InvalidTypeError("data", f"{type(data).__name__} is not a numpy array", "a numpy array")
    if data.dtype.hasobject:
        raise InvalidTypeError("data", f"dtype {data.dtype} holds Python objects", "any dtype without objects")
    if out is None:
        return np.empty_like(data), False
    allowed = f"a writable contiguous array of shape {list(data.shape)} and dtype {data.dtype}, or data itself"
    if not isinstance(out, np.ndarray):
        raise InvalidTypeError("out", f"{type(out).__name__} is not a numpy array", allowed)
    if out.dtype != data.dtype:
        raise InvalidTypeError("out", f"dtype {out.dtype} differs from {data.dtype}", allowed)
    if out.shape != data.shape:
        raise ShapeError("out", f"shape {list(out.shape)} differs from {list(data.shape)}", allowed)
    if not out.flags.writeable:
        raise InvalidInputError("out", "is read-only", allowed)
    if not _is_contiguous(out):
        raise InvalidInputError("out", "is not contiguous", allowed)
    in_place = out is data or _same_memory(out, data)
    if not in_place and np.shares_memory(out, data):
        raise InvalidInputError("out", "partly overlaps data", allowed)
    return out, in_place


def _lane_width(itemsize: int) -> int:
    return next(w for w in (8, 4, 2, 1) if itemsize % w == 0)


def _raw(array: np.ndarray) -> np.ndarray:
    """The contiguous array's bytes as a flat uint8 view."""
    if array.flags.f_contiguous and not array.flags.c_contiguous:
        return array.reshape(-1, order="F").view(np.uint8)
    return array.reshape(-1).view(np.uint8)


def _rows(raw: np.ndarray, itemsize: int) -> np.ndarray:
    """A flat byte view as ``(elements, lanes per element)`` of the lane type."""
    width = _lane_width(itemsize)
    return raw.view(_LANE_TYPES[width]).reshape(-1, itemsize // width)


def _half_bits(count: int) -> int:
    """Half the even number of bits that covers ``[0, count)`` (at least 1)."""
    return max(1, ((max(count, 1) - 1).bit_length() + 1) // 2)


def _split(units: int, nbytes: int) -> list[tuple[int, int]]:
    """Contiguous ranges of work units, one per thread for large arrays."""
    parts = min(os.cpu_count() or 1, units) if nbytes >= _PARALLEL_BYTES else 1
    bounds = [units * k // max(parts, 1) for k in range(parts + 1)]
    return [(a, b) for a, b in itertools.pairwise(bounds) if b > a]


_Calls = list[tuple[Callable[..., None], tuple[Any, ...]]]


def _run_all(calls: _Calls) -> BaseException | None:
    """Run kernel calls (GIL-free) on a thread pool and wait for every one of them, even through an interrupt.

    An interrupt (Ctrl-C, a task's cancellation) that arrives meanwhile is returned, not raised: the caller
    first records that the step is complete, so that it knows exactly what to undo.
    """
    interrupt: BaseException | None = None
    if len(calls) <= 1:
        try:
            for kernel, args in calls:
                kernel(*args)
        except BaseException as exc:  # raised only after the compiled call has finished its work
            interrupt = exc
        return interrupt
    with ThreadPoolExecutor(len(calls)) as pool:
        futures: list[Future[None]] = [pool.submit(kernel, *args) for kernel, args in calls]
        while True:
            try:
                wait(futures)
                break
            except BaseException as exc:  # the slices keep running; returning early would leave data half-done
                interrupt = interrupt or exc
    for future in futures:
        future.result()
    return interrupt


def _permute(
    target_raw: np.ndarray, source_raw: np.ndarray, itemsize: int, seed: int, forward: bool
) -> BaseException | None:
    n = source_raw.size // itemsize
    blocks = n >> _BLOCK_BITS
    keys = np.array([_splitmix(np.uint64(seed), np.uint64(r)) for r in range(12)], dtype=np.uint64).reshape(3, 4)
    src, dst = _rows(source_raw, itemsize), _rows(target_raw, itemsize)
    halves = (_half_bits(blocks), _half_bits(n - (blocks << _BLOCK_BITS)))
    return _run_all(
        [(_gather_kernel, (src, dst, keys, *halves, forward, a, b)) for a, b in _split(blocks + 1, source_raw.size)]
    )


def _keyed_lanes(raw: np.ndarray, itemsize: int, seed: int, code: int) -> BaseException | None:
    """XOR, add or rotate every lane of a flat byte view with the key stream of ``seed``."""
    width = _lane_width(itemsize)
    lane_type = _LANE_TYPES[width]
    key = np.uint64(seed)
    words = raw.size // 8
    calls: _Calls = []
    if raw.ctypes.data % 8 == 0:
        calls = [
            (_words_kernel, (raw[8 * a : 8 * b].view(np.uint64), key, code, 8 * width, a))
            for a, b in _split(words, raw.size)
        ]
        if 8 * words < raw.size:
            calls.append((_lanes_kernel, (raw[8 * words :].view(lane_type), key, code, words)))
    else:
        last = (raw.size + 7) // 8
        calls = [
            (_lanes_kernel, (raw[8 * a : min(8 * b, raw.size)].view(lane_type), key, code, a))
            for a, b in _split(last, raw.size)
        ]
    return _run_all(calls)


def _step(
    raw: np.ndarray, itemsize: int, name: str, seed: int, forward: bool, source: np.ndarray | None, scratch: Any
) -> BaseException | None:
    """One operation on the flat bytes ``raw``, in place, or from ``source`` for a permute that has one."""
    if name == "permute":
        if source is None:
            source = np.empty(raw.size, np.uint8) if scratch is None else scratch.array(raw.size, np.uint8)
            source[:] = raw
        return _permute(raw, source, itemsize, seed, forward)
    code = {"xor": _XOR, "add": _ADD if forward else _SUB, "rotate": _ROTL if forward else _ROTR}[name]
    return _keyed_lanes(raw, itemsize, seed, code)


def _run(data: Any, op: Any, seed: Any, out: Any, scratch: Any, forward: bool) -> np.ndarray:
    names = _check_ops(op)
    key = _check_seed(seed)
    target, in_place = _check_arrays(data, out)
    itemsize = data.dtype.itemsize
    raw = _raw(target)
    steps = [(name, _subseed(key, position)) for position, name in enumerate(names)]
    if not forward:
        steps.reverse()
    first = 0
    if not in_place:
        name, sub = steps[0]
        if name == "permute":
            # The first permute gathers straight from data, so out needs no copy.
            interrupt = _step(raw, itemsize, name, sub, forward, _raw(np.ascontiguousarray(data)), scratch)
            if interrupt is not None:
                raise interrupt
            first = 1
        else:
            # Same-dtype copies move raw bytes, so NaN payloads and non-0/1 bools survive.
            np.copyto(target, data, casting="no")
    done = first
    try:
        for position in range(first, len(steps)):
            name, sub = steps[position]
            interrupt = _step(raw, itemsize, name, sub, forward, None, scratch)
            done = position + 1
            if interrupt is not None:
                raise interrupt
    except BaseException:
        if in_place:
            # Undo the finished steps, so an interrupted in-place call leaves data as it found it.
            for name, sub in reversed(steps[first:done]):
                _step(raw, itemsize, name, sub, not forward, None, scratch)
        raise
    return target


def transform(
    data: np.ndarray, op: str | Sequence[str], seed: int = 0, *, out: Any = None, scratch: Any = None
) -> np.ndarray:
    """Apply a reversible transform to an array's raw bytes.

    Parameters
    ----------
    data : numpy.ndarray
        Any shape and any dtype without Python objects.
    op : {"xor", "add", "rotate", "permute"} or list of them
        The operation, or operations applied in order (see the module docstring).
    seed : int
        Key, in ``[0, 2^64)``.
    out : numpy.ndarray, optional
        Where to write: a contiguous writable array like ``data``, or ``data`` itself to work in place.
        A new array when omitted.
    scratch : Scratch, optional
        Lent memory for the temporary that an in-place ``permute`` needs.

    Returns
    -------
    numpy.ndarray
        ``out`` (or the new array) holding the transformed bytes, same shape and dtype.

    Raises
    ------
    MethodError
        An unknown operation (field ``op`` or ``op[k]``) or a seed out of range (field ``seed``).
    InvalidTypeError
        ``data``, ``out`` or ``seed`` of the wrong type or dtype.
    InvalidInputError
        ``out`` of another shape, read-only, non-contiguous or partly overlapping ``data``.

    Examples
    --------
    >>> values = np.array([1.5, np.nan, -0.0])
    >>> scrambled = transform(values, ["xor", "permute"], seed=7)
    >>> inverse(scrambled, ["xor", "permute"], seed=7).tobytes() == values.tobytes()
    True
    """
    return _run(data, op, seed, out, scratch, forward=True)


def inverse(
    data: np.ndarray, op: str | Sequence[str], seed: int = 0, *, out: Any = None, scratch: Any = None
) -> np.ndarray:
    """Undo :func:`transform` with the same ``op`` and ``seed``, bit for bit.

    Parameters
    ----------
    data : numpy.ndarray
        A transformed array.
    op : {"xor", "add", "rotate", "permute"} or list of them
        The operation(s) given to :func:`transform`; their inverses run in reverse order.
    seed : int
        The seed given to :func:`transform`.
    out : numpy.ndarray, optional
        As in :func:`transform`; ``data`` itself to work in place.
    scratch : Scratch, optional
        Lent memory for the temporary that an in-place ``permute`` needs.

    Returns
    -------
    numpy.ndarray
        The original bytes.

    Raises
    ------
    MethodError
        An unknown operation or a seed out of range.
    InvalidTypeError
        ``data``, ``out`` or ``seed`` of the wrong type or dtype.
    InvalidInputError
        ``out`` of another shape, read-only, non-contiguous or partly overlapping ``data``.

    Examples
    --------
    >>> codes = np.arange(6, dtype=np.int16)
    >>> inverse(transform(codes, "rotate", seed=3), "rotate", seed=3).tolist()
    [0, 1, 2, 3, 4, 5]
    """
    return _run(data, op, seed, out, scratch, forward=False)


def in_place(
    op: str | Sequence[str], seed: int = 0
) -> tuple[Callable[[np.ndarray], object], Callable[[np.ndarray], object]]:
    """The in-place forward and inverse of a transform, for :meth:`catalytic.memory.Scratch.apply`.

    Parameters
    ----------
    op : str or list of str
        As in :func:`transform`.
    seed : int
        As in :func:`transform`.

    Returns
    -------
    tuple of callable
        ``(forward, backward)``, each taking an array and transforming it in place.

    Raises
    ------
    MethodError
        An unknown operation or a seed out of range.

    Examples
    --------
    >>> forward, backward = in_place("add", seed=11)
    >>> lent = np.arange(4, dtype=np.uint32)
    >>> _ = forward(lent); _ = backward(lent)
    >>> lent.tolist()
    [0, 1, 2, 3]
    """
    ops = _check_ops(op)
    key = _check_seed(seed)

    def forward(array: np.ndarray) -> np.ndarray:
        return transform(array, ops, key, out=array)

    def backward(array: np.ndarray) -> np.ndarray:
        return inverse(array, ops, key, out=array)

    return forward, backward
