"""The frugal BFS of the ``numba`` backend: 3 bits per vertex on 64-vertex tiles, two threads or more.

The state is the backend's own layout (:meth:`NumbaBackend.frugal_depths` decodes it): per tile of
:func:`catalytic.kernels._numba_kernels.tiling`, a box of the lattice whose 64 vertices share a uint64 word,
three words: the open bits, then the low and the high bit of each vertex's code, ``1 + depth mod 3`` (0 for
unvisited). That is 3 bits per vertex of the tile grid (a partial tile at the high end of an axis pads it) and
nothing else grows with the lattice: there is no frontier bitmap and no vertex queue.

A level's frontier is read off the codes. The tiles that gained vertices are noted in a summary bit set (one
bit per tile) and listed in increasing order with the word of their vertices whose code is this level's. A
listed word can also hold vertices three levels older (same code); moving them again reaches only labelled
vertices, so the superset costs nothing in the answer, and the moves are whole-word shifts, so nothing in the
time either. A level moves each listed word one step along every axis, within its tile by a shift and across a
face into the next tile, and keeps the open, unlabelled bits it reaches, writing the next level's code into
them. The vertices labelled are counted as they are written, so ``expanded`` is exact.

A wide level is split into contiguous shares of the listed tiles, one per thread. A tile within one move of
another share's tiles is written with atomic ORs (the same code, from either thread); every other write is
plain, and every thread notes into its own summary bit set. The words a level moves are taken before it starts,
so a thread never reads a code another thread is writing. The state, the length and ``expanded`` are the same
for any thread count, and equal to the queue-based reference.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
from numba import njit, prange, types
from numba.core import cgutils
from numba.extending import intrinsic, overload

from catalytic.kernels._numba_kernels import (
    ALL_BITS,
    ONE,
    ZERO,
    Axes,
    Int,
    TileMoves,
    _inverse_strides,
    _low_mask,
    _tile_bit,
    _tile_moves,
    _walk_step,
    advance_axes,
    decompose,
    list_noted,
    popcount,
    prefetch,
    tile_frame,
    trailing_zeros,
)

AHEAD = 8
"""Listed tiles between the one a thread moves and the one whose cache lines it asks for."""

PREFETCH_TILES = 1 << 16
"""Tiles (4 M vertices, 1.5 MB of state) from which a level asks for its tiles' lines ahead: below it the
state stays in cache and the requests cost more than they save."""

WORDS_PER_TILE = 3
"""State words per tile: open bits, low code bits, high code bits."""

Frame = tuple[np.ndarray, np.ndarray]
"""A tile grid's ``(log, tile_strides)``: the log2 tile extent and the tile-grid stride of each axis."""


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


def tile_edges(grid: np.ndarray, out: np.ndarray) -> None:
    """Write each tile's faces into ``out`` (uint16 or uint32 per tile): bit ``2k`` when it is the first along
    axis ``k``, bit ``2k + 1`` when the last.

    The flags of the axes after the first repeat for every tile coordinate on the first axis: they are worked
    out once for the grid without its first axis, shifted two bits up and broadcast, and the first and last
    blocks get the first axis's own flags.

    Examples
    --------
    >>> out = np.empty(6, dtype=np.uint16)
    >>> tile_edges(np.array([2, 3]), out)
    >>> out.tolist()
    [5, 1, 9, 6, 2, 10]
    """
    blocks = out.reshape(int(grid[0]), -1)
    if grid.shape[0] == 1:
        blocks[:] = 0
    else:
        rest = np.empty(blocks.shape[1], dtype=out.dtype)
        tile_edges(grid[1:], rest)
        np.left_shift(rest, 2, out=rest)
        blocks[:] = rest
    blocks[0] |= out.dtype.type(1)
    blocks[-1] |= out.dtype.type(2)


@njit(cache=True, nogil=True, inline="always")
def _byte_bits(packed: np.ndarray, pos: Int, width: Int) -> np.uint64:
    """Bits ``pos .. pos + width - 1`` (``width`` 1..64) of the uint8 bit array ``packed``, lowest first."""
    byte = pos >> 3
    s = pos & 7
    span = (s + width + 7) >> 3
    acc = ZERO
    for j in range(min(span, 8)):
        acc |= np.uint64(packed[byte + j]) << np.uint64(8 * j)
    acc >>= np.uint64(s)
    if span > 8:
        acc |= np.uint64(packed[byte + 8]) << np.uint64(64 - s)
    return acc & _low_mask(width)


@njit(cache=True, nogil=True, inline="always")
def _slabs(shape: np.ndarray, log: np.ndarray) -> Int:
    """The slabs one tile thick along axis 0 that the open-bit fill works through (one on a 1-D lattice)."""
    if shape.shape[0] == 1:
        return 1
    return (shape[0] + (1 << log[0]) - 1) >> log[0]


@njit(cache=True, nogil=True, inline="always")
def _fill_line(
    open_bits: np.ndarray, start: Int, line: Int, state: np.ndarray, first_tile: Int, shift: np.uint64, log_last: Int
) -> None:
    """OR the open bits of the line from vertex ``start`` into its tiles: 64 bits read at a time (a whole number
    of runs), cut into the runs each tile holds by shifts."""
    run = 1 << log_last
    run_mask = _low_mask(run)
    for c in range(0, line, 64):
        width = min(64, line - c)
        word = _byte_bits(open_bits, start + c, width)
        for j in range(0, width, run):
            bits = (word >> np.uint64(j)) & run_mask
            state[WORDS_PER_TILE * (first_tile + ((c + j) >> log_last))] |= bits << shift


@njit(cache=True, nogil=True, inline="always")
def _fill_slab(open_bits: np.ndarray, shape: np.ndarray, frame: Frame, state: np.ndarray, slab: Int) -> None:
    """OR the open bits of one slab's lines into its tiles, a row of tiles at a time.

    The lines of one row of tiles (up to 64 of them, one per in-tile offset on the axes before the last) are
    read one after another, so the row's tile words stay in cache while all of its lines are ORed in.
    """
    log, tile_strides = frame
    d = shape.shape[0]
    line = shape[d - 1]
    if d == 1:
        _fill_line(open_bits, 0, line, state, 0, ZERO, log[0])
        return
    m = d - 1  # the axes that pick a line
    row_stride = np.empty(m, np.int64)
    grid = np.empty(m, np.int64)
    lines: Int = 1
    offsets = 0
    for k in range(m - 1, -1, -1):
        row_stride[k] = lines
        lines *= shape[k]
        grid[k] = (shape[k] + (1 << log[k]) - 1) >> log[k]
        offsets += log[k]
    place = np.zeros(m, np.int64)  # the row of tiles: its tile coordinates on axes 0 .. d - 2
    place[0] = slab
    tile_rows: Int = 1
    for k in range(1, m):
        tile_rows *= grid[k]
    for _ in range(tile_rows):
        first_tile: Int = 0
        for k in range(m):
            first_tile += place[k] * tile_strides[k]
        for o in range(1 << offsets):
            # o holds the in-tile offsets, axis d - 2 lowest: shifted past the last axis, the tile bit of the line
            row: Int = 0
            rest = o
            inside = True
            for k in range(m - 1, -1, -1):
                c = (place[k] << log[k]) + (rest & ((1 << log[k]) - 1))
                rest >>= log[k]
                if c >= shape[k]:
                    inside = False
                    break
                row += c * row_stride[k]
            if inside:
                _fill_line(open_bits, row * line, line, state, first_tile, np.uint64(o << log[d - 1]), log[d - 1])
        advance_axes(place[1:], grid[1:], m - 2)


@njit(cache=True, nogil=True)
def fill_open(open_bits: np.ndarray, shape: np.ndarray, frame: Frame, state: np.ndarray) -> None:
    """OR the open bits (uint8, packed 8 per byte in index order) into the tiles' first words of ``state``."""
    for slab in range(_slabs(shape, frame[0])):
        _fill_slab(open_bits, shape, frame, state, slab)


@njit(cache=True, nogil=True, parallel=True)
def fill_open_parallel(open_bits: np.ndarray, shape: np.ndarray, frame: Frame, state: np.ndarray) -> None:
    """:func:`fill_open` with the slabs (one tile thick along axis 0, so they write disjoint tiles) in parallel."""
    for slab in prange(_slabs(shape, frame[0])):
        _fill_slab(open_bits, shape, frame, state, slab)


PARALLEL_FILL_TILES = 1 << 14
"""Tiles (about a million vertices) from which :func:`bfs_frugal` fills the open bits in parallel."""


@njit(cache=True, nogil=True, inline="always")
def _coded(state: np.ndarray, t: Int, code: Int) -> np.uint64:
    """The bits of tile ``t`` whose code is ``code`` (1, 2 or 3)."""
    lo = state[WORDS_PER_TILE * t + 1]
    hi = state[WORDS_PER_TILE * t + 2]
    if code == 1:
        return lo & ~hi
    if code == 2:
        return hi & ~lo
    return lo & hi


@njit(cache=True, nogil=True, inline="always")
def _label(
    state: np.ndarray,
    u: Int,
    bits: np.uint64,
    code: Int,
    low_mask: np.uint64,
    high_mask: np.uint64,
    noted: np.ndarray,
    atomic: bool,
) -> Int:
    """Give the open, unlabelled ``bits`` of tile ``u`` the code ``code``; returns how many this call labelled.

    With ``atomic`` the code goes in by atomic ORs (low word first), and only the bits no other thread set
    first are counted.
    """
    at = WORDS_PER_TILE * u
    lo = state[at + 1]
    hi = state[at + 2]
    fresh = bits & state[at] & ~(lo | hi)
    if atomic:
        if fresh == 0:
            return 0
        noted[u >> 6] |= ONE << np.uint64(u & 63)
        if code & 1:
            old = atomic_or(state, at + 1, fresh)
            if code & 2:
                atomic_or(state, at + 2, fresh)
        else:
            old = atomic_or(state, at + 2, fresh)
        return np.int64(popcount(fresh & ~old))
    # without a branch on whether anything was labelled, which is as good as random
    state[at + 1] = lo | (fresh & low_mask)
    state[at + 2] = hi | (fresh & high_mask)
    noted[u >> 6] |= np.uint64(fresh != 0) << np.uint64(u & 63)
    return np.int64(popcount(fresh))


@njit(cache=True, nogil=True)
def expand_share(
    state: np.ndarray,
    listed: tuple[np.ndarray, np.ndarray],
    count: Int,
    moves: TileMoves,
    tile_strides: np.ndarray,
    edges: np.ndarray,
    code: Int,
    noted: np.ndarray,
    t: Int,
    threads: Int,
) -> Int:
    """Move the ``t``-th of ``threads`` contiguous shares of the listed words one step; returns the vertices
    labelled ``code``.

    ``listed`` is ``(ids, words)``: the level's tiles, increasing, and the words to move from each. Writes to a
    tile within one move of another share's tiles are atomic; ``noted`` is this thread's summary bit set.
    """
    ids, words = listed
    axis, inner, low_face, high_face, across, wrap_face, wrap_shift, wrap_tiles, moving, reach = moves
    first_slot = t * count // threads
    last_slot = (t + 1) * count // threads - 1
    if first_slot > last_slot:
        return 0
    # the tiles no other share can write: further than one move from all of their listed tiles
    own_lo: Int = ids[first_slot] + reach if t > 0 else -1
    own_hi: Int = ids[last_slot] - reach if t < threads - 1 else 1 << 62
    low_mask = ALL_BITS if code & 1 else ZERO
    high_mask = ALL_BITS if code & 2 else ZERO
    labelled: Int = 0
    last_tile = edges.shape[0] - 1
    far = last_tile >= PREFETCH_TILES
    for slot in range(first_slot, last_slot + 1):
        # the tiles a few slots ahead will move: their lines are asked for now, so the misses overlap
        if far and slot + AHEAD <= last_slot:
            ahead = ids[slot + AHEAD]
            prefetch(edges, ahead)
            prefetch(state, WORDS_PER_TILE * ahead)
            for m in range(moving):
                step = tile_strides[axis[m]]
                prefetch(state, WORDS_PER_TILE * min(ahead + step, last_tile))
                prefetch(state, WORDS_PER_TILE * max(ahead - step, 0))
        tile = ids[slot]
        shared_tile = tile < own_lo or tile > own_hi
        f = words[slot] if shared_tile else _coded(state, tile, code - 1 if code > 1 else 3)
        flags = edges[tile]
        within = ZERO
        for m in range(moving):
            k = axis[m]
            s = inner[m]
            within |= ((f & ~high_face[m]) << s) | ((f & ~low_face[m]) >> s)
            step = tile_strides[k]
            if (flags >> (2 * k + 1)) & 1 == 0:
                up = f & high_face[m]
                if up != 0:
                    u = tile + step
                    labelled += _label(
                        state, u, up >> across[m], code, low_mask, high_mask, noted, u < own_lo or u > own_hi
                    )
            elif wrap_face[m] != 0:
                # the last tile along a periodic axis: its vertices at the axis's end wrap to the first tile
                up = f & wrap_face[m]
                if up != 0:
                    u = tile - wrap_tiles[m]
                    labelled += _label(
                        state, u, up >> wrap_shift[m], code, low_mask, high_mask, noted, u < own_lo or u > own_hi
                    )
            down = f & low_face[m]
            if down != 0:
                if (flags >> (2 * k)) & 1 == 0:
                    u = tile - step
                    labelled += _label(
                        state, u, down << across[m], code, low_mask, high_mask, noted, u < own_lo or u > own_hi
                    )
                elif wrap_face[m] != 0:
                    u = tile + wrap_tiles[m]
                    labelled += _label(
                        state, u, down << wrap_shift[m], code, low_mask, high_mask, noted, u < own_lo or u > own_hi
                    )
        labelled += _label(state, tile, within, code, low_mask, high_mask, noted, shared_tile)
    return labelled


@njit(cache=True, nogil=True)
def list_level(
    noted: np.ndarray,
    lo: Int,
    hi: Int,
    listed: tuple[np.ndarray, np.ndarray],
) -> tuple[Int, tuple[np.ndarray, np.ndarray]]:
    """List the tiles noted in ``noted[:, lo >> 6 .. hi >> 6]`` (every thread's rows, cleared) in increasing
    order; returns ``(count, listed)``, the buffers doubled when they fill. A level on one thread reads each
    tile's words as it moves it, so none are taken here."""
    ids, words = listed
    count: Int = 0
    for i in range(lo >> 6, (hi >> 6) + 1):
        bits = ZERO
        for r in range(noted.shape[0]):
            bits |= noted[r, i]
            noted[r, i] = ZERO
        while bits != 0:
            t = (i << 6) + np.int64(trailing_zeros(bits))
            bits &= bits - ONE
            if count == ids.shape[0]:
                grown_ids = np.empty(2 * count, np.int64)
                grown_ids[:count] = ids
                ids = grown_ids
                words = np.empty(2 * count, np.uint64)
            ids[count] = t
            count += 1
    return count, (ids, words)


@njit(cache=True, nogil=True)
def fold_noted(noted: np.ndarray, first: Int, last: Int) -> Int:
    """Fold every thread's row of ``noted[:, first .. last - 1]`` into row 0 (the others cleared); returns the
    tiles noted there."""
    total: Int = 0
    for i in range(first, last):
        bits = noted[0, i]
        for r in range(1, noted.shape[0]):
            bits |= noted[r, i]
            noted[r, i] = ZERO
        noted[0, i] = bits
        total += np.int64(popcount(bits))
    return total


@njit(cache=True, nogil=True)
def list_range(noted: np.ndarray, first: Int, last: Int, listed: tuple[np.ndarray, np.ndarray], slot: Int) -> None:
    """List the tiles noted in words ``first .. last - 1`` of the folded summary ``noted`` (cleared) from ``slot``
    on."""
    list_noted(noted, first, last, listed[0], slot)


@njit(cache=True, nogil=True)
def take_zones(
    state: np.ndarray, listed: tuple[np.ndarray, np.ndarray], count: Int, reach: Int, threads: Int, code: Int
) -> Int:
    """Take the ``code`` bits of the tiles another thread may write this level into ``listed[1]``; returns how
    many.

    These are the tiles of each share within one move of the share's ends (the tiles :func:`expand_share`
    writes atomically): another thread may label them while this share moves them, so their words are taken
    before the level starts. Every other tile is written by its own thread only and is read as it is moved.
    """
    ids, words = listed
    taken: Int = 0
    for t in range(threads):
        first_slot = t * count // threads
        last_slot = (t + 1) * count // threads - 1
        if first_slot > last_slot:
            continue
        low_end = first_slot  # the share's first tile past its bottom zone
        if t > 0:
            slot = first_slot
            while slot <= last_slot and ids[slot] < ids[first_slot] + reach:
                words[slot] = _coded(state, ids[slot], code)
                slot += 1
            low_end = slot
            taken += slot - first_slot
        if t < threads - 1:
            slot = last_slot
            while slot >= low_end and ids[slot] > ids[last_slot] - reach:
                tile = np.int64(ids[slot])
                words[slot] = _coded(state, tile, code)
                slot -= 1
            taken += last_slot - slot
    return taken


@njit(cache=True, nogil=True, inline="always")
def _code_at(state: np.ndarray, tile: Int, bit: np.uint64) -> Int:
    at = WORDS_PER_TILE * tile
    return np.int64((state[at + 1] & bit) != 0) + 2 * np.int64((state[at + 2] & bit) != 0)


@njit(cache=True, nogil=True)
def serial_levels(
    state: np.ndarray,
    geometry: tuple[TileMoves, np.ndarray, np.ndarray],
    goal: tuple[Int, np.uint64],
    listed: tuple[np.ndarray, np.ndarray],
    noted: np.ndarray,
    progress: tuple[Int, Int, Int, Int],
    limit: Int,
    meter: np.ndarray,
) -> tuple[Int, tuple[Int, Int, Int, Int], tuple[np.ndarray, np.ndarray]]:
    """Run levels on this thread while they list fewer than ``limit`` tiles.

    ``geometry`` is ``(moves, tile_strides, edges)``, ``goal`` the goal's tile and bit, and ``progress``
    ``(count, depth, expanded, size)``: the tiles listed for level ``depth``, the vertices expanded before it
    and the vertices in it. ``meter[0]`` gets ``expanded`` before each level.

    Returns ``(status, progress, listed)``: status 0 when the level is wide (hand it to the threads), 1 when
    the goal got its code, 2 when no vertex is left to reach.
    """
    moves, tile_strides, edges = geometry
    tiles = edges.shape[0]
    reach = moves[9]
    count, depth, expanded, size = progress
    while count > 0:
        if count >= limit:
            return 0, (count, depth, expanded, size), listed
        code = 1 + (depth + 1) % 3
        expanded += size
        meter[0] = expanded
        size = expand_share(state, listed, count, moves, tile_strides, edges, code, noted[0], 0, 1)
        depth += 1
        if _code_at(state, goal[0], goal[1]) != 0:
            return 1, (count, depth, expanded, size), listed
        lo = max(listed[0][0] - reach, 0)
        hi = min(listed[0][count - 1] + reach, tiles - 1)
        count, listed = list_level(noted, lo, hi, listed)
    return 2, (count, depth, expanded + size, size), listed


PARALLEL_TILES = 4096
"""A level listing at least this many tiles (up to 262,144 vertices) is split over threads."""

FIRST_LISTED = 1 << 12
"""Tiles the level lists start with room for (they double as a level needs)."""


def state_words(shape: np.ndarray) -> int:
    """uint64 words of the frugal state of a lattice of ``shape``: 3 per tile."""
    return WORDS_PER_TILE * int(tile_frame(np.ascontiguousarray(shape, dtype=np.int64))[3])


def bfs_frugal(
    axes: Axes,
    open_bits: np.ndarray,
    state: np.ndarray,
    start: int,
    goal: int,
    threads: int,
    meter: np.ndarray | None = None,
    wide: tuple[int, int] | None = None,
) -> tuple[int, int]:
    """Whole-level BFS from ``start`` on the tiled frugal state (uint64, :func:`state_words`, zeroed); returns
    ``(length, expanded)``, length −1 when ``goal`` is unreachable.

    Narrow levels run in one compiled loop; each wide level is split over ``threads`` Python threads running
    the ``nogil`` kernel, which costs no spinning workers when the machine is busy. ``meter`` is a
    :class:`catalytic.kernels.backend.Meter`'s counts: ``meter[0]`` gets the vertices expanded before each
    level, and ``meter[2]`` the bytes of the edge flags, the summary bit sets and the level lists. ``wide``
    is the tiles from which a level is split over threads and the open bits are filled in parallel (default
    ``(PARALLEL_TILES, PARALLEL_FILL_TILES)``; the warm-up lowers them to compile those paths on a small lattice).
    """
    parallel_tiles, parallel_fill_tiles = (PARALLEL_TILES, PARALLEL_FILL_TILES) if wide is None else wide
    meter = np.zeros(3, dtype=np.int64) if meter is None else meter
    shape, _, periodic = axes
    log, tile_strides, grid, tiles = tile_frame(shape)
    frame = (log, tile_strides)
    (fill_open_parallel if tiles >= parallel_fill_tiles else fill_open)(open_bits, shape, frame, state)
    inverse = _inverse_strides(axes[1])
    coords = np.empty(shape.shape[0], np.int64)
    start_tile, start_bit = _tile_bit(start, axes, inverse, coords, frame)
    state[WORDS_PER_TILE * start_tile + 1] |= np.uint64(start_bit)
    if start == goal:
        return 0, 0
    goal_tile, goal_bit = _tile_bit(goal, axes, inverse, coords, frame)
    goal_at = (int(goal_tile), np.uint64(goal_bit))
    threads = max(1, threads)
    edges = np.empty(int(tiles), dtype=np.uint16 if shape.shape[0] <= 8 else np.uint32)
    tile_edges(grid, edges)
    moves = _tile_moves(shape, periodic, frame)
    noted = np.zeros((threads, (int(tiles) + 63) >> 6), dtype=np.uint64)
    capacity = min(int(tiles), FIRST_LISTED)
    listed = (np.empty(capacity, dtype=np.int64), np.empty(capacity, dtype=np.uint64))
    listed[0][0] = start_tile
    listed[1][0] = np.uint64(start_bit)
    progress: tuple[Any, ...] = (1, 0, 0, 1)
    limit = parallel_tiles if threads > 1 else int(tiles) + 1
    geometry = (moves, tile_strides, edges)
    reach = int(moves[9])
    meter[2] += int(edges.nbytes + noted.nbytes)
    pool: ThreadPoolExecutor | None = None  # made at the first wide level: a narrow search never starts threads
    try:
        while True:
            status, progress, listed = serial_levels(state, geometry, goal_at, listed, noted, progress, limit, meter)
            if status == 1:
                return int(progress[1]), int(progress[2])
            if status == 2 or threads == 1:
                return -1, int(progress[2])
            if pool is None:
                pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="catalytic-frugal")
            count, depth, expanded, size = (int(x) for x in progress)
            code = 1 + (depth + 1) % 3
            expanded += size
            meter[0] = expanded
            take_zones(state, listed, count, reach, threads, 1 + depth % 3)
            level = (state, listed, count, moves, tile_strides, edges, code)
            futures = [pool.submit(expand_share, *level, noted[t], t, threads) for t in range(threads)]
            size = sum(int(future.result()) for future in futures)
            depth += 1
            if _code_at(state, goal_at[0], goal_at[1]) != 0:
                return depth, expanded
            lo = max(int(listed[0][0]) - reach, 0)
            hi = min(int(listed[0][count - 1]) + reach, int(tiles) - 1)
            # each thread folds, then lists, an equal range of the summary words; the ranges' tiles are counted
            # first, so each knows where its list starts
            first, last = lo >> 6, (hi >> 6) + 1
            bounds = [first + (last - first) * t // threads for t in range(threads + 1)]
            folds = [pool.submit(fold_noted, noted, bounds[t], bounds[t + 1]) for t in range(threads)]
            counts = [int(fold.result()) for fold in folds]
            count = sum(counts)
            if count > listed[0].shape[0]:
                capacity = max(count, 2 * listed[0].shape[0])
                listed = (np.empty(capacity, dtype=np.int64), np.empty(capacity, dtype=np.uint64))
            starts = [sum(counts[:t]) for t in range(threads)]
            lists = [
                pool.submit(list_range, noted[0], bounds[t], bounds[t + 1], listed, starts[t]) for t in range(threads)
            ]
            for part in lists:
                part.result()
            progress = (count, depth, expanded, size)
    finally:
        meter[2] += int(listed[0].nbytes + listed[1].nbytes)
        if pool is not None:
            pool.shutdown()


@njit(cache=True, nogil=True)
def trace_path(axes: Axes, state: np.ndarray, frame: Frame, start: Int, goal: Int, length: Int) -> np.ndarray:
    """The canonical path ``[goal, ..., start]`` rebuilt from the tiled codes of :func:`bfs_frugal`.

    From each vertex at depth ``r`` the walk takes the first neighbour, in canonical order, whose code is
    ``1 + (r - 1) mod 3``: only a vertex of depth ``r - 1`` can be a neighbour with that code. Returns an
    empty array when the state holds no path of ``length`` steps.
    """
    strides = axes[1]
    d = strides.shape[0]
    inverse = _inverse_strides(strides)
    coords = np.empty(d, np.int64)
    scratch = np.empty(d, np.int64)
    path = np.empty(length + 1, np.int64)
    v: Int = np.int64(goal)
    path[0] = v
    for r in range(length, 0, -1):
        wanted = 1 + (r - 1) % 3
        decompose(v, strides, inverse, coords)
        previous: Int = np.int64(-1)
        for j in range(2 * d):
            u = _walk_step(v, j, coords, axes)
            if u >= 0:
                tile, bit = _tile_bit(u, axes, inverse, scratch, frame)
                if _code_at(state, tile, bit) == wanted:
                    previous = u
                    break
        if previous < 0:
            return path[:0].copy()
        v = previous
        path[length - r + 1] = v
    if v != start:
        return path[:0].copy()
    return path


@njit(cache=True, nogil=True)
def depth_codes(shape: np.ndarray, state: np.ndarray, frame: Frame, out: np.ndarray) -> None:
    """Write each vertex's code (0 unvisited, else ``1 + depth mod 3``) into ``out`` (uint8, index order)."""
    log, tile_strides = frame
    d = shape.shape[0]
    coords = np.zeros(d, np.int64)
    for i in range(out.shape[0]):
        tile: Int = 0
        b: Int = 0
        width: Int = 0
        for k in range(d - 1, -1, -1):
            c = coords[k]
            tile += (c >> log[k]) * tile_strides[k]
            b += (c & ((1 << log[k]) - 1)) << width
            width += log[k]
        out[i] = _code_at(state, tile, ONE << np.uint64(b))
        advance_axes(coords, shape, d - 1)
