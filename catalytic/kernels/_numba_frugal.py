"""The frugal BFS of the ``numba`` backend: 2 bits of state per vertex, a bitmap frontier, two threads or more.

Memory per vertex is 1 bit of open mask, 2 bits of state (``1 + depth mod 3``) and 2 bits of frontier (the
current and the next level as bitmaps), about 0.63 bytes per vertex in all; a level is never stored as a list
of indices, so no buffer grows with the widest level.

Why bitmaps rather than a queue: a queue lists a level in discovery order, which on a lattice of 10^9 vertices
turns every neighbour check into a cache miss. A bitmap is read back in increasing index order, so the ``2d``
neighbour streams ``v ± stride`` advance monotonically and the hardware prefetchers keep up. Only the groups of
4096 vertices that hold frontier bits are visited: their ids are collected per level, sorted, and dealt round
robin to the threads, so a thin frontier (a 1-D lattice, a maze) costs no scan of the whole bitmap.

Threads share the state and the next-level bitmap. A write two threads may race on (one within a move of both
threads' shares of the level) is an atomic OR of bits that only ever go from 0 to the one value a vertex can get
at this level, so two threads discovering the same vertex write the same bits; every other write is plain. The
result does not depend on the interleaving: the state, the length and ``expanded`` are the same
for any thread count, and equal to the queue-based reference.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic, overload

from catalytic.kernels._numba_kernels import Axes, Int, advance_axes, decompose, neighbour, trailing_zeros

GROUP_SHIFT = 12
"""log2 of the vertices per group (64 words of 64 bits)."""
GROUP_WORDS = 1 << (GROUP_SHIFT - 6)

Search = tuple[Axes, np.ndarray, np.ndarray]
"""A frugal search's lattice, open bits and 2-bit state: ``(axes, open_bits, state)``."""


_PYTHON_ATOMICS = threading.Lock()


def atomic_or(array: np.ndarray, index: Int, value: Any) -> Any:
    """``array[index] |= value`` as one atomic read-modify-write; returns the old value.

    Compiled code issues one atomic instruction (:func:`_atomic_rmw_or`); this body, under a lock, runs only
    where the kernels run as Python (``NUMBA_DISABLE_JIT=1``).
    """
    with _PYTHON_ATOMICS:
        old = array[index]
        array[index] = old | value
        return old


@intrinsic
def _atomic_rmw_or(typingctx: Any, array: Any, index: Any, value: Any) -> Any:
    if not isinstance(array, types.Array) or not isinstance(array.dtype, types.Integer):
        return None
    sig = array.dtype(array, types.intp, array.dtype)

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        array_type = signature.args[0]
        view = context.make_array(array_type)(context, builder, args[0])
        pointer = cgutils.get_item_pointer(context, builder, array_type, view, [args[1]], wraparound=False)
        return builder.atomic_rmw("or", pointer, args[2], "monotonic")

    return sig, codegen


@overload(atomic_or, inline="always")
def _atomic_or_compiled(array: Any, index: Any, value: Any) -> Any:
    # numba wants the implementation's parameters exactly as the overload declares them, annotations included
    def swap(array: Any, index: Any, value: Any) -> Any:
        return _atomic_rmw_or(array, index, value)  # type: ignore[call-arg]

    return swap if isinstance(array, types.Array) and isinstance(array.dtype, types.Integer) else None


@njit(cache=True, nogil=True)
def expand_share(
    search: Search,
    goal: Int,
    value: Int,
    frontier: tuple[np.ndarray, ...],
    active: np.ndarray,
    count: Int,
    discovered: np.ndarray,
    t: Int,
    threads: Int,
) -> tuple[Int, bool, Int]:
    """Expand the ``t``-th of ``threads`` contiguous shares of the groups ``active[:count]``.

    ``search`` is ``(axes, open_bits, state)`` and ``frontier`` is ``(current, following,
    current_flags, following_flags)``: the bitmaps of this level and the next, and their group flags. Returns
    ``(expanded, found, written)``. Contiguous shares keep two threads apart in memory, so they rarely write to
    the same cache line, and most of a share's writes land in groups no other share can reach, which take plain
    writes; only the groups within one move of another share's take atomic ones.

    Vertices discovered get ``value`` in ``state`` and a bit in ``following``; a group gaining its first bit is
    flagged and its id written to ``discovered[t, :written]``. With ``threads > 1`` the writes another share may
    race with are atomic.
    """
    (shape, strides, periodic), open_bits, state = search
    current, following, _, following_flags = frontier
    d = shape.shape[0]
    words = current.shape[0]
    shared = threads > 1
    last = shape[d - 1]
    coords = np.zeros(d, np.int64)
    inverse = np.empty(d, np.float64)
    for k in range(d):
        inverse[k] = 1.0 / strides[k]
    # The groups no other share can write: a share writes only within one move of its own groups, so a group
    # further than that from every other share's groups is this share's alone, and needs no atomic writes.
    first_slot = t * count // threads
    last_slot = (t + 1) * count // threads - 1
    own_lo: Int = 0
    own_hi: Int = -1
    if shared and first_slot <= last_slot:
        reach: Int = 0
        for k in range(d):
            reach = max(reach, (shape[k] - 1) * strides[k] if periodic[k] else strides[k])
        reach_groups = (reach >> GROUP_SHIFT) + 1
        own_lo = np.int64(active[first_slot]) + reach_groups
        own_hi = np.int64(active[last_slot]) - reach_groups
    previous = np.int64(-1)
    size = 0
    hit = False
    out = 0
    for slot in range(first_slot, last_slot + 1):
        group = active[slot]
        first = group * GROUP_WORDS
        for w in range(first, min(words, first + GROUP_WORDS)):
            word = current[w]
            if word == 0:
                continue
            current[w] = np.uint64(0)
            while word != 0:
                bit = np.int64(trailing_zeros(word))
                word &= word - np.uint64(1)
                v = (w << 6) + bit
                size += 1
                # Frontier vertices come in increasing order, usually close together: advance the coordinates
                # with one carry instead of decomposing the index.
                delta = v - previous
                if previous >= 0 and delta < last:
                    c = coords[d - 1] + delta
                    if c >= last:
                        c -= last
                        advance_axes(coords, shape, d - 2)
                    coords[d - 1] = c
                else:
                    decompose(v, strides, inverse, coords)
                previous = v
                for k in range(d):
                    for side in range(2):
                        u = neighbour(v, coords[k], shape[k], strides[k], periodic[k], side)
                        byte = u >> 2
                        shift = 2 * (u & 3)
                        if ((state[byte] >> shift) & 3) | (((open_bits[u >> 3] >> (u & 7)) & 1) ^ 1):
                            continue
                        mark = np.uint8(value << shift)
                        bit_mask = np.uint64(1) << np.uint64(u & 63)
                        target_group = u >> GROUP_SHIFT
                        fresh = False
                        if shared and (target_group < own_lo or target_group > own_hi):
                            atomic_or(state, byte, mark)
                            atomic_or(following, u >> 6, bit_mask)
                            if following_flags[target_group] == 0:
                                fresh = atomic_or(following_flags, target_group, np.uint8(1)) == 0
                        else:
                            state[byte] |= mark
                            following[u >> 6] |= bit_mask
                            if following_flags[target_group] == 0:
                                following_flags[target_group] = 1
                                fresh = True
                        if fresh:
                            discovered[t, out] = target_group
                            out += 1
                        if u == goal:
                            hit = True
    return size, hit, out


@njit(cache=True, nogil=True)
def next_active(
    active: np.ndarray,
    current_flags: np.ndarray,
    following_flags: np.ndarray,
    count: Int,
    discovered: np.ndarray,
    written: np.ndarray,
) -> Int:
    """Close a level: unflag its groups and list the next level's groups in ``active``, in increasing order.

    Returns the number of groups of the next level.
    """
    for j in range(count):
        current_flags[active[j]] = 0
    count = 0
    for t in range(written.shape[0]):
        for j in range(written[t]):
            active[count] = discovered[t, j]
            count += 1
    groups = following_flags.shape[0]
    if count * 16 > groups:
        # dense: one ordered pass over the flags is cheaper than sorting
        count = 0
        for g in range(groups):
            if following_flags[g]:
                active[count] = g
                count += 1
    else:
        active[:count] = np.sort(active[:count])
    return count


@njit(cache=True, nogil=True)
def serial_levels(
    search: Search,
    goal: Int,
    frontier: tuple[np.ndarray, ...],
    active: np.ndarray,
    count: Int,
    discovered: np.ndarray,
    depth: Int,
    expanded: Int,
    limit: Int,
    meter: np.ndarray,
) -> tuple[Int, Int, Int, Int, tuple[np.ndarray, ...]]:
    """Expand levels on this thread while they span fewer than ``limit`` groups (arguments as :func:`expand_share`).

    ``meter[0]`` gets the vertices expanded after each level (a :class:`catalytic.kernels.backend.Meter`'s counts).

    Returns ``(status, count, depth, expanded, frontier)``: status 0 when the next level is wide (hand it to the
    threads), 1 when ``goal`` was reached, 2 when the component is exhausted; ``frontier`` with the roles of this
    level and the next as they stand on return.
    """
    written = np.zeros(1, np.int64)
    while count > 0:
        if count >= limit:
            return 0, count, depth, expanded, frontier
        size, found, written[0] = expand_share(
            search, goal, 1 + (depth + 1) % 3, frontier, active, count, discovered, 0, 1
        )
        expanded += size
        depth += 1
        meter[0] = expanded
        if found:
            return 1, count, depth, expanded, frontier
        count = next_active(active, frontier[2], frontier[3], count, discovered, written)
        frontier = (frontier[1], frontier[0], frontier[3], frontier[2])
    return 2, count, depth, expanded, frontier


PARALLEL_GROUPS = 64
"""A level spanning at least this many groups (up to 262,144 vertices) is split over threads."""


def bfs_frugal(
    axes: Axes,
    open_bits: np.ndarray,
    state: np.ndarray,
    start: int,
    goal: int,
    threads: int,
    meter: np.ndarray | None = None,
) -> tuple[int, int]:
    """Whole-level BFS from ``start`` keeping ``1 + depth mod 3`` in ``state``; returns ``(length, expanded)``.

    Narrow levels run in one compiled loop; each wide level is split over ``threads`` Python threads running
    the ``nogil`` kernel, which costs no spinning workers when the machine is busy. ``meter`` is a
    :class:`catalytic.kernels.backend.Meter`'s counts: ``meter[0]`` gets the vertices expanded after each level,
    and ``meter[2]`` the bytes of the frontier bitmaps, their group flags and the group lists.
    """
    meter = np.zeros(3, dtype=np.int64) if meter is None else meter
    state[start >> 2] |= np.uint8(1 << (2 * (start & 3)))
    if start == goal:
        return 0, 0
    vertices = int(np.prod(axes[0]))
    words = (vertices + 63) >> 6
    groups = (words + GROUP_WORDS - 1) // GROUP_WORDS
    search: Search = (axes, open_bits, state)
    # this level's bitmap and the next one's, and their group flags; the roles swap after every level
    frontier: tuple[np.ndarray, ...] = (
        np.zeros(words, dtype=np.uint64),
        np.zeros(words, dtype=np.uint64),
        np.zeros(groups, dtype=np.uint8),
        np.zeros(groups, dtype=np.uint8),
    )
    active = np.empty(groups, dtype=np.int64)
    discovered = np.empty((max(1, threads), groups), dtype=np.int64)
    meter[2] += sum(int(array.nbytes) for array in (*frontier, active, discovered))
    frontier[0][start >> 6] = np.uint64(1 << (start & 63))
    frontier[2][start >> GROUP_SHIFT] = 1
    active[0] = start >> GROUP_SHIFT
    count: Int = 1
    depth: Int = 0
    expanded: Int = 0
    limit = PARALLEL_GROUPS if threads > 1 else groups + 1
    pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="catalytic-frugal") if threads > 1 else None
    try:
        while True:
            status, count, depth, expanded, frontier = serial_levels(
                search, goal, frontier, active, count, discovered, depth, expanded, limit, meter
            )
            if status == 1:
                return int(depth), int(expanded)
            if status == 2 or pool is None:
                return -1, int(expanded)
            level = (search, goal, 1 + (depth + 1) % 3, frontier, active, count, discovered)
            futures = [pool.submit(expand_share, *level, t, threads) for t in range(threads)]
            shares = [future.result() for future in futures]
            expanded += sum(int(share[0]) for share in shares)
            meter[0] = expanded
            depth += 1
            if any(share[1] for share in shares):
                return int(depth), int(expanded)
            written = np.array([share[2] for share in shares], dtype=np.int64)
            count = next_active(active, frontier[2], frontier[3], count, discovered, written)
            frontier = (frontier[1], frontier[0], frontier[3], frontier[2])
    finally:
        if pool is not None:
            pool.shutdown()
