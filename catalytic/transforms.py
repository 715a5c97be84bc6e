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
    Moves whole elements. With ``S = 4096`` and ``w_k = splitmix64(seed, k)``, the first ``B = n // S`` blocks
    of ``S`` elements move as wholes and are shuffled inside, and the last ``n mod S`` elements among
    themselves: element ``o`` of block ``b`` of the result is element ``T[o ^ u_b] ^ v_b`` of block ``β(b)``
    of the input, and element ``r`` of the partial block is its element ``τ(r)``. ``β``, ``T`` and ``τ`` are
    four-round Feistel networks, keyed by ``w_0..w_3``, ``w_4..w_7`` and ``w_8..w_11``, on ``[0, B)``,
    ``[0, S)`` and ``[0, n mod S)``, cycle-walked into range where the count is not a power of four; ``u_b``
    and ``v_b`` are the low 12 bits of the low and high halves of ``splitmix64(w_12, b)``. It scrambles
    order, it is not a cipher, and it is not uniform over all orders. The inverse gathers through the
    inverse maps. Out of place, each result block is gathered from one input block staged in cache; in
    place, blocks move along the cycles of ``β`` with a few block-sized buffers per thread, so either way the
    array passes through memory once and no n-element temporary is needed.

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
_CHUNKS_PER_WORKER = 4

_Shuffle = tuple[np.ndarray, np.ndarray, bool, int]
"""How blocks are shuffled inside: the table ``T`` (or ``T⁻¹``), the permute keys, the direction, lanes per element."""

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
def _rotate_word(x: np.uint64, k: np.uint64, bits: int, right: np.uint64) -> np.uint64:  # pragma: no cover
    """Rotate every ``bits``-wide lane of a word left by its key's low bits, or right where ``right`` is all ones.

    Rotating right by ``r`` is rotating left by ``-r mod bits``, negated lane by lane as ``~r + 1`` on the
    amount bits alone (no carry reaches the next lane), so the direction costs no branch. Wide lanes (32 or
    64 bits) rotate one by one; narrow ones all at once, by one conditional rotation per bit of the amount
    (by 1, 2, 4, ...), which costs fewer operations than 4 or 8 separate lanes. Callers pass ``bits`` as a
    literal, so each width compiles to straight-line code.
    """
    lane_max = np.uint64(0xFFFFFFFFFFFFFFFF) >> np.uint64(64 - bits)
    ones = np.uint64(0xFFFFFFFFFFFFFFFF) // lane_max
    amount_bits = ones * np.uint64(bits - 1)
    amounts = (((k ^ right) & amount_bits) + (ones & right)) & amount_bits
    if bits >= 32:
        width = np.uint64(bits)
        low_bits = np.uint64(bits - 1)
        out = np.uint64(0)
        for t in range(64 // bits):
            shift = np.uint64(t * bits)
            lane = (x >> shift) & lane_max
            r = (amounts >> shift) & low_bits
            # (width - r) & low_bits keeps every shift below the lane width, so r == 0 needs no branch.
            out |= (((lane << r) | (lane >> ((width - r) & low_bits))) & lane_max) << shift
        return out
    step = 1
    stage = 0
    while step < bits:
        chosen = ((amounts >> np.uint64(stage)) & ones) * lane_max
        low = ones * ((np.uint64(1) << np.uint64(step)) - np.uint64(1))
        moved = ((x << np.uint64(step)) & ~low) | ((x >> np.uint64(bits - step)) & low)
        x = (x & ~chosen) | (moved & chosen)
        step *= 2
        stage += 1
    return x


@numba.njit(cache=True, nogil=True)
def _rotate_words(
    words: np.ndarray, seed: np.uint64, bits: int, right: np.uint64, start: np.uint64
) -> None:  # pragma: no cover
    """Rotate the lanes of whole words; one loop per lane width, so that each loop body is branch-free."""
    if bits == 64:
        for j in range(words.size):
            words[j] = _rotate_word(words[j], _splitmix(seed, start + np.uint64(j)), 64, right)
    elif bits == 32:
        for j in range(words.size):
            words[j] = _rotate_word(words[j], _splitmix(seed, start + np.uint64(j)), 32, right)
    elif bits == 16:
        for j in range(words.size):
            words[j] = _rotate_word(words[j], _splitmix(seed, start + np.uint64(j)), 16, right)
    else:
        for j in range(words.size):
            words[j] = _rotate_word(words[j], _splitmix(seed, start + np.uint64(j)), 8, right)


@numba.njit(cache=True, nogil=True)
def _words_kernel(
    words: np.ndarray, seed: np.uint64, code: int, bits: int, first_word: int
) -> None:  # pragma: no cover
    """Transform whole 8-byte words holding ``64 // bits`` lanes each, without carries between lanes (SWAR).

    Adding sums the lanes with their top bits masked off, then sets the top bits from their XOR;
    subtracting is the mirror image. Rotating applies a rotation by 1, 2, 4, ... to the lanes whose
    amount has that bit set. The operation is chosen once, outside the loops.
    """
    ones = np.uint64(0xFFFFFFFFFFFFFFFF) // (np.uint64(0xFFFFFFFFFFFFFFFF) >> np.uint64(64 - bits))
    high = ones << np.uint64(bits - 1)
    low = ~high
    start = np.uint64(first_word)
    if code == _XOR:
        for j in range(words.size):
            words[j] ^= _splitmix(seed, start + np.uint64(j))
    elif code == _ADD:
        for j in range(words.size):
            k = _splitmix(seed, start + np.uint64(j))
            x = words[j]
            words[j] = ((x & low) + (k & low)) ^ ((x ^ k) & high)
    elif code == _SUB:
        for j in range(words.size):
            k = _splitmix(seed, start + np.uint64(j))
            x = words[j]
            words[j] = ((x | high) - (k & low)) ^ ((x ^ ~k) & high)
    else:
        right = np.uint64(0) if code == _ROTL else np.uint64(0xFFFFFFFFFFFFFFFF)
        _rotate_words(words, seed, bits, right, start)


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
def _inner_table(keys: np.ndarray, forward: bool) -> np.ndarray:  # pragma: no cover - compiled
    """``T`` of the module docstring as a table of ``2^_BLOCK_BITS`` offsets, or ``T⁻¹`` for the inverse."""
    size = 1 << _BLOCK_BITS
    half = np.uint64(_BLOCK_BITS // 2)
    table = np.empty(size, np.uint16)
    for offset in range(size):
        image = _feistel(np.uint64(offset), keys[1, 0], keys[1, 1], keys[1, 2], keys[1, 3], half, True)
        if forward:
            table[offset] = image
        else:
            table[image] = offset
    return table


@numba.njit(cache=True, nogil=True)
def _block_sources(keys: np.ndarray, blocks: int, half: int, forward: bool) -> np.ndarray:  # pragma: no cover
    """For each block ``w`` of the result, the block it is gathered from: ``β(w)``, or ``β⁻¹(w)`` for the inverse."""
    sources = np.empty(blocks, np.int64)
    for w in range(blocks):
        sources[w] = _walk(np.uint64(w), keys, 0, np.uint64(half), np.uint64(blocks), forward)
    return sources


@numba.njit(cache=True, nogil=True, inline="always")
def _gather_block(
    target: np.ndarray, staged: np.ndarray, shuffle: _Shuffle, written: int, read: int
) -> None:  # pragma: no cover - compiled
    """Fill the block ``target`` from the block ``staged`` (a copy in cache), both flat in lanes.

    ``shuffle`` is ``(T or T⁻¹, keys, forward, lanes per element)``. The offset masks belong to the block ``b``
    of the forward definition: the written one forward, the read one backward, where they also swap sides.
    Indices are unsigned, so no negative-index check is compiled.
    """
    table, keys, forward, lanes = shuffle
    z = _splitmix(keys[3, 0], np.uint64(written if forward else read))
    low = np.uint64((1 << _BLOCK_BITS) - 1)
    pre, post = z & low, (z >> np.uint64(32)) & low
    if not forward:
        pre, post = post, pre
    size = np.uint64(table.size)
    if lanes == 1:
        for offset in range(size):
            target[offset] = staged[np.uint64(table[offset ^ pre]) ^ post]
        return
    width = np.uint64(lanes)
    for offset in range(size):
        source = (np.uint64(table[offset ^ pre]) ^ post) * width
        for c in range(width):
            target[offset * width + c] = staged[source + c]


@numba.njit(cache=True, nogil=True)
def _gather_blocks(
    dst: np.ndarray,
    src: np.ndarray,
    sources: np.ndarray,
    shuffle: _Shuffle,
    first: int,
    stop: int,
) -> None:  # pragma: no cover - compiled
    """Blocks ``first .. stop - 1`` of ``dst`` gathered from the separate array ``src``.

    Each source block is first copied whole into a cache-resident buffer: a sequential read that the hardware
    prefetches, where gathering straight from memory would wait on a cache miss for each line.
    """
    block = shuffle[0].size * shuffle[3]
    staged = np.empty(block, dst.dtype)
    for w in range(first, stop):
        r = sources[w]
        staged[:] = src[r * block : (r + 1) * block]
        _gather_block(dst[w * block : (w + 1) * block], staged, shuffle, w, r)


@numba.njit(cache=True, nogil=True)
def _gather_tail(
    dst: np.ndarray, src: np.ndarray, keys: np.ndarray, half: int, forward: bool, lanes: int
) -> None:  # pragma: no cover - compiled
    """The partial block on its own: ``dst[r] = src[τ(r)]``, or ``src[τ⁻¹(r)]``, element by element."""
    count = dst.size // lanes
    for r in range(count):
        source = _walk(np.uint64(r), keys, 2, np.uint64(half), np.uint64(count), forward)
        for c in range(lanes):
            dst[r * lanes + c] = src[np.intp(source) * lanes + c]


@numba.njit(cache=True, nogil=True)
def _cycle_plan(
    sources: np.ndarray, bounds: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:  # pragma: no cover
    """Order the blocks along the cycles of ``w ↦ sources[w]`` and choose which blocks to save first.

    Position ``p`` of ``order`` is written from the block at position ``reads[p]``: the next one, or the
    cycle's first at its end. The threads walk the contiguous position ranges ``bounds[k] .. bounds[k + 1]``.
    A block must be saved before any thread writes when a thread other than its writer reads it: the first
    block of every range, and the first block of a cycle that ends in another range. ``slots[p]`` numbers
    those saved blocks (-1 for the rest). A cycle that ends in the range where it starts keeps its first block
    in that thread's own buffer instead.
    """
    blocks = sources.size
    order = np.empty(blocks, np.int64)
    reads = np.empty(blocks, np.int64)
    seen = np.zeros(blocks, np.bool_)
    p = 0
    for head in range(blocks):
        start = p
        w = head
        while not seen[w]:
            seen[w] = True
            order[p] = w
            reads[p] = p + 1
            p += 1
            w = sources[w]
        if p > start:
            reads[p - 1] = start
    slots = np.full(blocks, -1, np.int64)
    part = np.empty(blocks, np.int64)
    count = 0
    for k in range(bounds.size - 1):
        part[bounds[k] : bounds[k + 1]] = k
        slots[bounds[k]] = count
        count += 1
    for p in range(blocks):
        q = reads[p]
        if q <= p and part[q] != part[p] and slots[q] < 0:
            slots[q] = count
            count += 1
    return order, reads, slots


@numba.njit(cache=True, nogil=True)
def _save_blocks(
    lanes_array: np.ndarray, saved: np.ndarray, order: np.ndarray, slots: np.ndarray
) -> None:  # pragma: no cover - compiled
    """Copy the blocks that ``slots`` numbers into ``saved``, before any thread writes (see :func:`_cycle_plan`)."""
    block = saved.shape[1]
    for p in range(order.size):
        if slots[p] >= 0:
            saved[slots[p], :] = lanes_array[order[p] * block : (order[p] + 1) * block]


@numba.njit(cache=True, nogil=True)
def _cycle_range(
    array: np.ndarray,
    saved: np.ndarray,
    own: np.ndarray,
    order: np.ndarray,
    reads: np.ndarray,
    slots: np.ndarray,
    shuffle: _Shuffle,
    first: int,
    stop: int,
) -> None:  # pragma: no cover - compiled
    """Permute the blocks at cycle positions ``first .. stop - 1`` of ``array`` in place (see :func:`_cycle_plan`).

    Each block written was read just before as the source of the previous position, so it is still in cache:
    the pass moves the array through memory once, like the elementwise operations.
    """
    block = own.size
    staged = np.empty(block, array.dtype)
    for p in range(first, stop):
        w = order[p]
        q = reads[p]
        target = array[w * block : (w + 1) * block]
        if slots[p] < 0 and (p == 0 or reads[p - 1] != p):
            own[:] = target
        if slots[q] >= 0:
            _gather_block(target, saved[slots[q]], shuffle, w, order[q])
        elif q <= p:
            _gather_block(target, own, shuffle, w, order[q])
        else:
            staged[:] = array[order[q] * block : (order[q] + 1) * block]
            _gather_block(target, staged, shuffle, w, order[q])


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


def _half_bits(count: int) -> int:
    """Half the even number of bits that covers ``[0, count)`` (at least 1)."""
    return max(1, ((max(count, 1) - 1).bit_length() + 1) // 2)


def _workers() -> int:
    """The cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _split(units: int, nbytes: int) -> list[tuple[int, int]]:
    """Contiguous ranges of work units: for large arrays a few per core, so that a core that other work
    slows down hands its share to the others."""
    parts = min(units, _CHUNKS_PER_WORKER * _workers()) if nbytes >= _PARALLEL_BYTES else min(units, 1)
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
    with ThreadPoolExecutor(min(len(calls), _workers())) as pool:
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


def _buffer(scratch: Any, shape: tuple[int, int], lane_type: type) -> np.ndarray:
    """An uninitialised ``shape`` array, from the lent ``scratch`` when there is one."""
    if scratch is None:
        return np.empty(shape, lane_type)
    return scratch.array(shape[0] * shape[1], lane_type).reshape(shape)


def _permute(
    raw: np.ndarray, source: np.ndarray | None, itemsize: int, seed: int, forward: bool, scratch: Any
) -> BaseException | None:
    """Permute the elements of the flat bytes ``raw``, gathering from ``source`` or, without one, in place."""
    width = _lane_width(itemsize)
    lane_type = _LANE_TYPES[width]
    lanes = itemsize // width
    n = raw.size // itemsize
    blocks = n >> _BLOCK_BITS
    full = (blocks << _BLOCK_BITS) * lanes
    keys = np.array([_splitmix(np.uint64(seed), np.uint64(r)) for r in range(16)], dtype=np.uint64).reshape(4, 4)
    table = _inner_table(keys, forward)
    shuffle = (table, keys, forward, lanes)
    sources = _block_sources(keys, blocks, _half_bits(blocks), forward)
    ranges = _split(blocks, raw.size)
    dst = raw.view(lane_type)
    calls: _Calls = []
    if source is not None:
        src = source.view(lane_type)
        calls = [(_gather_blocks, (dst, src, sources, shuffle, a, b)) for a, b in ranges]
        tail = src[full:]
    else:
        bounds = np.array([a for a, _ in ranges] + [blocks], dtype=np.int64)
        order, reads, slots = _cycle_plan(sources, bounds)
        saved = _buffer(scratch, (int(slots.max(initial=-1)) + 1, table.size * lanes), lane_type)
        own = _buffer(scratch, (len(ranges), table.size * lanes), lane_type)
        _save_blocks(dst, saved, order, slots)
        calls = [
            (_cycle_range, (dst, saved, own[k], order, reads, slots, shuffle, a, b)) for k, (a, b) in enumerate(ranges)
        ]
        tail = _buffer(scratch, (1, dst.size - full), lane_type)[0]
        tail[:] = dst[full:]
    if full < dst.size:
        calls.append((_gather_tail, (dst[full:], tail, keys, _half_bits(n - (blocks << _BLOCK_BITS)), forward, lanes)))
    return _run_all(calls)


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
        return _permute(raw, source, itemsize, seed, forward, scratch)
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
        Lent memory for the few block-sized buffers that an in-place ``permute`` needs.

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
        Lent memory for the few block-sized buffers that an in-place ``permute`` needs.

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
