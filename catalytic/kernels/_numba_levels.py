"""Whole-lattice BFS levels on row-major bit sets: the ``numba`` BFS of small lattices of many axes.

The open vertices not yet labelled, the frontier and the vertices a level reaches are bit sets of the whole
lattice in linear order (bit ``i`` of word ``i >> 6`` is vertex ``i``). A level moves the frontier along every
axis by shifting the bit set by the axis stride, keeping the bits that land on a vertex the move may reach (a
precomputed mask per move), and keeps the open, unlabelled ones as the next frontier. Its cost is a few passes over
the words the frontier spans whatever the frontier holds, so it pays only where a BFS has few levels for its size:
many short axes, as in a 5-D lattice of 10^5 vertices (45 levels corner to corner), and never on a long 2-D one
(:func:`whole_levels_pay`). The word loops have no branch, so that they compile to vector instructions.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import numpy as np
from numba import njit

from catalytic.kernels._numba_kernels import pack_bits, trailing_zeros
from catalytic.kernels._rules import tile_count, tile_logs

__all__ = ["bfs_levels", "level_moves", "move_masks", "whole_levels_pay"]

Int = int | np.integer[Any]
Axes = tuple[np.ndarray, np.ndarray, np.ndarray]
Moves = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]
"""Per move of :func:`level_moves`: the shift in bits (signed), and where its landing vertices lie in each period
of the lattice (their offset in the period, their count, the period)."""

ZERO = np.uint64(0)
ONE = np.uint64(1)
ALL_BITS = np.uint64(0xFFFFFFFFFFFFFFFF)

WORD_NS = 0.42
"""Nanoseconds per word of one pass of a level (a move, or the pass that keeps the new frontier)."""
PASS_NS = 27.0
"""Nanoseconds a pass of a level costs besides its words."""
VERTEX_NS = 1.3
"""Nanoseconds per vertex of the lattice besides the passes (the masks, and writing each depth)."""
TILE_NS = 30.0
"""Nanoseconds per tile listed in a level of the tile BFS (:func:`_numba_kernels.bfs_tiles`), all included."""
MARGIN = 0.9
"""Whole levels are chosen where they are estimated to take at most this share of the tile BFS's time: the
estimate is rough, and near a tie the tile BFS, which keeps nothing per shape but its tables, is kept."""
MIN_AXES = 4
"""Fewest axes longer than 1 on which whole levels run: on 3-D lattices the two searches were within 10 % of
each other where the estimate favours whole levels (30^3, 20^3), and 2-D ones have too many levels for their
size."""
MASK_BYTES_LIMIT = 8 * 2**20
"""Largest move masks (a bit per vertex per move) whole levels build for a search; past it the tile BFS runs
(7^10, 282 million vertices, would need 700 MiB of masks)."""
SMALL_WORDS = 16
"""Lattices of :data:`MIN_AXES` or more axes and at most this many words (1,024 vertices) always run whole
levels: both searches take microseconds there, mostly fixed costs, and the whole levels have fewer (4^5: 5 us
against 7 us)."""


@functools.lru_cache(maxsize=256)
def whole_levels_pay(shape: tuple[int, ...], periodic: tuple[bool, ...]) -> bool:
    """Whether whole-lattice levels (:func:`bfs_levels`) are estimated to beat the tile BFS on a lattice.

    A pure function of the shape. A BFS across the lattice runs about ``L = sum(n - 1)`` levels (``n // 2``
    along a periodic axis), each ``P`` passes over most of the ``W = N / 64`` words (a pass per move, 2 per axis
    longer than 1 and 4 along a periodic axis longer than 2, and one more), and it writes a depth per vertex:
    about ``L P (W WORD_NS + PASS_NS) + N VERTEX_NS``. The tile BFS lists each 64-vertex tile in about as many
    levels as the tile's extents add up to (a front crosses a box of sides ``t`` in ``sum(t)`` levels), at
    ``TILE_NS`` a listing. The constants are fitted to timings of both kernels, corner to corner with 20 %
    obstacles, on shapes of 2 to 10 axes; whole levels win by a third on 5-D 10^5 and lose by more than half
    on 2-D 300^2.

    Parameters
    ----------
    shape : tuple of int
        The extents of the axes.
    periodic : tuple of bool
        Which axes wrap.

    Returns
    -------
    bool
        True on lattices of :data:`MIN_AXES` or more axes longer than 1 whose masks fit in
        :data:`MASK_BYTES_LIMIT` and that have at most :data:`SMALL_WORDS` words or where the whole-level BFS is
        estimated to take at most :data:`MARGIN` of the tile BFS's time.

    Examples
    --------
    >>> whole_levels_pay((10,) * 5, (False,) * 5), whole_levels_pay((1024, 1024), (False, False))
    (True, False)
    """
    vertices = math.prod(shape)
    words = (vertices + 63) // 64
    levels = 0
    passes = 1
    for n, wraps in zip(shape, periodic, strict=True):
        if n > 1:
            levels += n // 2 if wraps else n - 1
            passes += 4 if wraps and n > 2 else 2
    if sum(n > 1 for n in shape) < MIN_AXES or 8 * (passes - 1) * words > MASK_BYTES_LIMIT:
        return False
    if words <= SMALL_WORDS:
        return True
    whole = levels * passes * (words * WORD_NS + PASS_NS) + vertices * VERTEX_NS
    log = np.zeros(len(shape), dtype=np.int64)
    tile_logs(np.asarray(shape, dtype=np.int64), log)
    listings = sum(min(1 << k, n) for k, n in zip(log.tolist(), shape, strict=True))
    return whole <= MARGIN * tile_count(shape) * listings * TILE_NS


@njit(cache=True, nogil=True)
def level_moves(shape: np.ndarray, strides: np.ndarray, periodic: np.ndarray) -> Moves:
    """The moves of a level: per move the shift in bits and the vertices it may land on.

    Along an axis of extent ``n > 1`` and stride ``s`` (period ``P = n s``) a step up shifts by ``+s`` and lands
    on the vertices whose index ``i`` has ``i mod P`` in ``[s, P)``, a step down by ``-s`` onto ``[0, P - s)``.
    A periodic axis longer than 2 adds its wraps: ``-(P - s)`` onto ``[0, s)`` and ``+(P - s)`` onto
    ``[P - s, P)`` (of length 2 its wrap is the plain step).

    Examples
    --------
    >>> shift, start, length, period = level_moves(np.array([3]), np.array([1]), np.array([1], np.uint8))
    >>> shift.tolist(), start.tolist(), length.tolist(), period.tolist()
    ([1, -1, -2, 2], [1, 0, 0, 2], [2, 2, 1, 1], [3, 3, 3, 3])
    """
    d = shape.shape[0]
    shift = np.empty(4 * d, np.int64)
    start = np.empty(4 * d, np.int64)
    length = np.empty(4 * d, np.int64)
    period = np.empty(4 * d, np.int64)
    m = 0
    for k in range(d):
        n, s = shape[k], strides[k]
        if n < 2:
            continue
        span = n * s
        shift[m], start[m], length[m], period[m] = s, s, span - s, span
        shift[m + 1], start[m + 1], length[m + 1], period[m + 1] = -s, 0, span - s, span
        m += 2
        if periodic[k] and n > 2:
            shift[m], start[m], length[m], period[m] = -(span - s), 0, s, span
            shift[m + 1], start[m + 1], length[m + 1], period[m + 1] = span - s, span - s, s, span
            m += 2
    return shift[:m], start[:m], length[:m], period[:m]


@njit(cache=True, nogil=True, inline="always")
def _runs_word(phase: Int, start: Int, length: Int, period: Int) -> np.uint64:
    """Bits ``j`` in ``[0, 64)`` whose ``(phase + j) mod period`` lies in ``[start, start + length)``."""
    j = start - phase
    if j > 0:
        j -= period
    word = ZERO
    while j < 64:
        lo = max(j, 0)
        hi = min(j + length, 64)
        if hi > lo:
            word |= (ALL_BITS >> np.uint64(64 - (hi - lo))) << np.uint64(lo)
        j += period
    return word


@njit(cache=True, nogil=True)
def move_masks(moves: Moves, words: Int) -> np.ndarray:
    """uint64 ``(moves, words)``: row ``m`` has bit ``i`` set where move ``m`` may land on vertex ``i``.

    A row is periodic in the index with the move's period ``P``. Word ``w`` starts at ``64 w mod P`` in it: for
    ``P <= 64`` it is cut from the first 128 bits of the pattern with two shifts, for longer periods it is
    built from the one or two runs it meets.

    Examples
    --------
    >>> moves = level_moves(np.array([3, 4]), np.array([4, 1]), np.array([0, 0], np.uint8))
    >>> [format(int(row[0]), "064b")[:-13:-1] for row in move_masks(moves, 1)]  # vertex 0 first
    ['000011111111', '111111110000', '011101110111', '111011101110']
    """
    shift, start, length, period = moves
    out = np.empty((shift.shape[0], words), np.uint64)
    for m in range(shift.shape[0]):
        p, first, run = period[m], start[m], length[m]
        row = out[m]
        if p <= 64:
            low = _runs_word(0, first, run, p)
            high = _runs_word(64 % p, first, run, p)
            phase = 0
            for w in range(words):
                up = np.uint64(phase)
                row[w] = (low >> up) | ((high << (np.uint64(63) - up)) << ONE)
                phase += 64 % p
                if phase >= p:
                    phase -= p
        else:
            phase = 0
            for w in range(words):
                row[w] = _runs_word(phase, first, run, p)
                phase += 64
                if phase >= p:
                    phase -= p
    return out


@njit(cache=True, nogil=True)
def _pack_open(open_mask: np.ndarray, words: Int) -> np.ndarray:
    """The uint8 open mask as bits in index order (8 bytes a multiply); padding bits past the end are 0."""
    packed = np.zeros(words, np.uint64)
    pack_bits(open_mask, packed)
    return packed


@njit(cache=True, nogil=True, inline="always")
def _move(
    reached: np.ndarray, near: np.ndarray, far: np.ndarray, row: np.ndarray, r: np.uint64, up: bool, keep: np.uint64
) -> None:
    """``reached = (reached & keep) | (moved & row)``, word by word, for a shift of ``64 q + r`` bits.

    ``near[w]`` is the frontier word the shift carries by ``q`` words onto ``reached[w]`` and ``far[w]`` the one
    beyond it, whose ``r`` bits spill over (upwards when ``up``, else downwards). Each argument is a view that
    starts at the word it is read at, so the loop indexes from 0 and compiles to vector instructions.
    """
    back = np.uint64(63) - r
    if up:
        for w in range(reached.shape[0]):
            moved = (near[w] << r) | ((far[w] >> back) >> ONE)
            reached[w] = (reached[w] & keep) | (moved & row[w])
    else:
        for w in range(reached.shape[0]):
            moved = (near[w] >> r) | ((far[w] << back) << ONE)
            reached[w] = (reached[w] & keep) | (moved & row[w])


@njit(cache=True, nogil=True, inline="always")
def _keep_fresh(reached: np.ndarray, free: np.ndarray, frontier: np.ndarray) -> None:
    """Keep the free bits of ``reached`` (in place), take them out of ``free`` and make them the frontier."""
    for w in range(reached.shape[0]):
        fresh = reached[w] & free[w]
        free[w] ^= fresh
        frontier[w] = fresh
        reached[w] = fresh


@njit(cache=True, nogil=True)
def bfs_levels(
    axes: Axes, open_mask: np.ndarray, sources: np.ndarray, target: Int, dist: np.ndarray, meter: np.ndarray
) -> Int:
    """Whole-level multi-source BFS on row-major bit sets of the whole lattice; returns ``expanded``.

    The same search as :func:`catalytic.kernels._numba_kernels.bfs_tiles`, with the same ``dist`` (int32, −1
    unreached; a source not yet labelled gets 0, open or not), the same stop after the level that labels
    ``target`` when ``target >= 0`` and the same ``expanded`` (every vertex of the levels expanded). ``meter``
    is a :class:`catalytic.kernels.backend.Meter`'s counts: ``meter[0]`` gets the vertices expanded at the start
    of each level, ``meter[2]`` the bytes of the bit sets and masks.

    A level moves the frontier words ``lo .. hi`` (those between its lowest and highest set bits) by each move
    of :func:`level_moves` into ``reached``, over those words widened by the longest shift, then keeps the open,
    unlabelled bits of ``reached`` as the next frontier and writes their depth.

    Examples
    --------
    >>> from catalytic.lattice import Lattice
    >>> from catalytic.kernels.backend import Geometry
    >>> geom = Geometry.of(Lattice((3, 4)))
    >>> dist = np.full(12, -1, np.int32)
    >>> axes = (geom.shape, geom.strides, geom.periodic)
    >>> bfs_levels(axes, np.ones(12, np.uint8), np.array([0]), -1, dist, np.zeros(3, np.int64))
    12
    >>> dist.reshape(3, 4).tolist()
    [[0, 1, 2, 3], [1, 2, 3, 4], [2, 3, 4, 5]]
    """
    shape, strides, periodic = axes
    vertices = open_mask.shape[0]
    words = (vertices + 63) >> 6
    moves = level_moves(shape, strides, periodic)
    shift = moves[0]
    reach = 0
    for m in range(shift.shape[0]):
        reach = max(reach, abs(shift[m]))
    guard = (reach >> 6) + 1  # zero words on both sides of the frontier: a shifted read never leaves it
    masks = move_masks(moves, words)
    free = _pack_open(open_mask, words)  # open and not yet labelled
    frontier = np.zeros(words + 2 * guard, np.uint64)
    reached = np.zeros(words, np.uint64)
    meter[2] += 8 * (masks.size + free.shape[0] + frontier.shape[0] + reached.shape[0])
    level: Int = 0
    lo = words
    hi = -1
    for s in sources:
        if dist[s] < 0:
            dist[s] = 0
            level += 1
            w = s >> 6
            bit = ONE << np.uint64(s & 63)
            frontier[guard + w] |= bit
            free[w] &= ~bit
            lo = min(lo, w)
            hi = max(hi, w)
    if target >= 0 and dist[target] == 0:
        return 0
    expanded: Int = 0
    step = 0
    while level > 0:
        meter[0] = expanded
        expanded += level
        step += 1
        first = max(lo - guard, 0)
        last = min(hi + guard, words - 1)
        keep = ZERO
        span = last + 1 - first
        into = reached[first : last + 1]
        for m in range(shift.shape[0]):
            q = abs(shift[m]) >> 6
            r = np.uint64(abs(shift[m]) & 63)
            near = guard + first - q if shift[m] > 0 else guard + first + q
            far = near - 1 if shift[m] > 0 else near + 1
            _move(into, frontier[near : near + span], frontier[far : far + span], masks[m, first : last + 1], r,
                  shift[m] > 0, keep)  # fmt: skip
            keep = ALL_BITS
        level = 0
        lo = words
        hi = -1
        _keep_fresh(into, free[first : last + 1], frontier[guard + first : guard + last + 1])
        for w in range(first, last + 1):
            fresh = reached[w]
            if fresh != 0:
                lo = min(lo, w)
                hi = w
                index = w << 6
                while fresh != 0:
                    dist[index + np.int64(trailing_zeros(fresh))] = step
                    fresh &= fresh - ONE
                    level += 1
        if target >= 0 and dist[target] >= 0:
            break
    return expanded
