"""Compiled kernels of the ``numba`` backend.

Every kernel takes the geometry as flat arrays (``shape``, ``strides``, ``periodic``) and follows the
determinism rules of :mod:`catalytic.kernels.backend`. Two habits keep the inner loops cheap:

* a vertex's coordinates are decomposed once per expanded vertex, with a floating-point reciprocal of each
  stride and one integer correction step instead of an integer division (a 64-bit division costs tens of
  cycles, several times the rest of the neighbour loop);
* sweeps in linear order (mask materialisation, histograms, labelling) carry an odometer of coordinates
  instead of decomposing every index;
* BFS moves 64 vertices per word operation on bit sets of tiles, boxes of the lattice that a BFS front crosses
  in several vertices (:func:`tiling`, :func:`bfs_tiles`).

Kernels return status codes rather than raising, so they stay ``nogil`` and the Python wrapper chooses the
error class.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from llvmlite import ir
from numba import njit, prange, types
from numba.core import cgutils
from numba.extending import intrinsic, overload

from catalytic.kernels._rules import box_holds
from catalytic.kernels._rules import tile_logs as rule_tile_logs

Int = int | np.integer[Any]
"""An index or count, a Python int from the interpreter or a NumPy integer inside compiled code."""
Axes = tuple[np.ndarray, np.ndarray, np.ndarray]
"""A lattice's ``(shape, strides, periodic)``: int64, int64 and uint8 arrays of one entry per axis."""
TileMoves = tuple[Any, ...]
"""The per-axis move tables of a tile BFS level, from :func:`_tile_moves`."""

GAMMA = np.uint64(0x9E3779B97F4A7C15)
MUL1 = np.uint64(0xBF58476D1CE4E5B9)
MUL2 = np.uint64(0x94D049BB133111EB)
ONE = np.uint64(1)
SHIFT30 = np.uint64(30)
SHIFT27 = np.uint64(27)
SHIFT31 = np.uint64(31)
SHIFT11 = np.uint64(11)

ZERO = np.uint64(0)
ALL_BITS = np.uint64(0xFFFFFFFFFFFFFFFF)
SHIFT56 = np.uint64(56)
SHIFT63 = np.uint64(63)
BYTE_LOWS = np.uint64(0x0101010101010101)
BYTE_GATHER = np.uint64(0x0102040810204080)
"""Multiplying the low bits of eight bytes by this gathers them, in order, into the top byte."""

FILL_SPAN = 8
"""Labels a run writes with one fixed-length store (:func:`_fill`)."""

CHUNK = 1 << 16
"""Vertices per work item of the parallel sweeps (a multiple of 8 so bit-packing chunks own whole bytes)."""

HEAP_START = 1024
PATH_START = 1024


# --- small helpers ------------------------------------------------------------------------------------


def trailing_zeros(word: np.uint64) -> np.uint64:
    """The index of the lowest set bit of a non-zero uint64.

    Compiled code counts with one instruction (:func:`_cttz`); this body runs only where the kernels run as
    Python (``NUMBA_DISABLE_JIT=1``).
    """
    value = int(word)
    return np.uint64((value & -value).bit_length() - 1)


@intrinsic
def _cttz(typingctx: Any, word: Any) -> Any:
    if word != types.uint64:
        return None
    sig = types.uint64(types.uint64)

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        return builder.cttz(args[0], ir.Constant(ir.IntType(1), 1))

    return sig, codegen


@overload(trailing_zeros, inline="always")
def _trailing_zeros_compiled(word: Any) -> Any:
    # numba wants the implementation's parameters exactly as the overload declares them, annotations included
    def count(word: Any) -> Any:
        return _cttz(word)  # type: ignore[call-arg]

    return count if word == types.uint64 else None


def popcount(word: np.uint64) -> np.uint64:
    """The number of set bits of a uint64.

    Compiled code counts with one instruction (:func:`_ctpop`); this body runs only where the kernels run as
    Python (``NUMBA_DISABLE_JIT=1``).
    """
    return np.uint64(bin(int(word)).count("1"))


@intrinsic
def _ctpop(typingctx: Any, word: Any) -> Any:
    if word != types.uint64:
        return None
    sig = types.uint64(types.uint64)

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        return builder.ctpop(args[0])

    return sig, codegen


@overload(popcount, inline="always")
def _popcount_compiled(word: Any) -> Any:
    def count(word: Any) -> Any:
        return _ctpop(word)  # type: ignore[call-arg]

    return count if word == types.uint64 else None


def prefetch(array: np.ndarray, index: Int) -> None:
    """Ask for the cache line of ``array[index]`` ahead of a write (a hint: it never faults, never changes state).

    Compiled code issues one prefetch instruction (:func:`_prefetch_line`); as Python it does nothing.
    """


@intrinsic
def _prefetch_line(typingctx: Any, array: Any, index: Any) -> Any:
    if not isinstance(array, types.Array):
        return None
    sig = types.void(array, types.intp)

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        array_type = signature.args[0]
        view = context.make_array(array_type)(context, builder, args[0])
        pointer = cgutils.get_item_pointer(context, builder, array_type, view, [args[1]], wraparound=False)
        i32 = ir.IntType(32)
        byte_pointer = ir.IntType(8).as_pointer()
        hint = ir.FunctionType(ir.VoidType(), [byte_pointer, i32, i32, i32])
        function = cgutils.get_or_insert_function(builder.module, hint, "llvm.prefetch.p0")
        # write intent, keep in all cache levels, data cache
        address = builder.bitcast(pointer, byte_pointer)
        builder.call(function, [address, ir.Constant(i32, 1), ir.Constant(i32, 3), ir.Constant(i32, 1)])
        return context.get_dummy_value()

    return sig, codegen


@overload(prefetch, inline="always")
def _prefetch_compiled(array: Any, index: Any) -> Any:
    def hint(array: Any, index: Any) -> None:
        _prefetch_line(array, index)  # type: ignore[call-arg]

    return hint if isinstance(array, types.Array) else None


_box_holds = njit(cache=True, nogil=True, inline="always")(box_holds)


@njit(cache=True, nogil=True, inline="always")
def _splitmix(seed: np.uint64, index: np.uint64) -> np.uint64:
    z = seed + (index + ONE) * GAMMA
    z = (z ^ (z >> SHIFT30)) * MUL1
    z = (z ^ (z >> SHIFT27)) * MUL2
    return z ^ (z >> SHIFT31)


@njit(cache=True, nogil=True, inline="always")
def _set_coords(index: Int, strides: np.ndarray, coords: np.ndarray) -> None:
    rem = index
    for k in range(strides.shape[0]):
        coords[k] = rem // strides[k]
        rem -= coords[k] * strides[k]


@njit(cache=True, nogil=True, inline="always")
def advance_axes(coords: np.ndarray, shape: np.ndarray, top: Int) -> None:
    """Step the odometer ``coords[0..top]`` by one in C order (axis ``top`` fastest), carrying as it wraps."""
    k = top
    while k >= 0:
        coords[k] += 1
        if coords[k] < shape[k]:
            return
        coords[k] = 0
        k -= 1


@njit(cache=True, nogil=True, inline="always")
def _advance(coords: np.ndarray, shape: np.ndarray) -> None:
    advance_axes(coords, shape, shape.shape[0] - 1)


@njit(cache=True, nogil=True, inline="always")
def decompose(index: Int, strides: np.ndarray, inverse: np.ndarray, coords: np.ndarray) -> None:
    # inverse[k] = 1.0 / strides[k]; the product is off by at most one for indices below 2**52.
    d = strides.shape[0]
    rem = index
    for k in range(d - 1):
        s = strides[k]
        c = np.int64(rem * inverse[k])
        r = rem - c * s
        if r < 0:
            c -= 1
            r += s
        elif r >= s:
            c += 1
            r -= s
        coords[k] = c
        rem = r
    coords[d - 1] = rem


@njit(cache=True, nogil=True, inline="always")
def neighbour(index: Int, c: Int, n: Int, s: Int, wraps: Int, side: Int) -> Int:
    """The neighbour one step down (side 0) or up (side 1) an axis of length ``n`` and stride ``s``.

    ``c`` is the vertex's coordinate on that axis. Off an open border the step returns ``index`` itself, which
    the searches skip because it is labelled already, so their loops need no separate validity test; the path
    walks tell it from the self-step of a periodic axis of length 1.
    """
    if side == 0:
        if c > 0:
            return index - s
        return index + (n - 1) * s if wraps else index
    if c < n - 1:
        return index + s
    return index - (n - 1) * s if wraps else index


@njit(cache=True, nogil=True, inline="always")
def _step(
    index: Int, coords: np.ndarray, shape: np.ndarray, strides: np.ndarray, periodic: np.ndarray, k: Int, side: Int
) -> tuple[Int, Int]:
    """The neighbour of ``index`` one step down (side 0) or up (side 1) axis ``k`` and its new coordinate.

    Returns ``(-1, -1)`` off an open border.
    """
    n = shape[k]
    c = coords[k]
    if side == 0:
        if c > 0:
            return index - strides[k], c - 1
        if periodic[k]:
            return index + (n - 1) * strides[k], n - 1
        return -1, -1
    if c < n - 1:
        return index + strides[k], c + 1
    if periodic[k]:
        return index - (n - 1) * strides[k], 0
    return -1, -1


@njit(cache=True, nogil=True)
def _inverse_strides(strides: np.ndarray) -> np.ndarray:
    inverse = np.empty(strides.shape[0], np.float64)
    for k in range(strides.shape[0]):
        inverse[k] = 1.0 / strides[k]
    return inverse


# --- lattice --------------------------------------------------------------------------------------------


@njit(cache=True, nogil=True, inline="always")
def _open_run(lo: Int, hi: Int, generators: tuple[np.ndarray, ...], out: np.ndarray) -> None:
    """Write 1 (open) or 0 for the vertices ``lo .. hi - 1`` into ``out[0 .. hi - lo - 1]``.

    ``generators`` is ``(shape, strides, seeds, thresholds, box_lo, box_hi, explicit)``; ``explicit`` is empty
    without an explicit mask. One pass per generator, each a straight loop without branches that the compiler
    vectorises, rather than one pass testing every generator at each vertex; boxes, which need coordinates,
    are tested last and only at vertices still open.
    """
    shape, strides, seeds, thresholds, box_lo, box_hi, explicit = generators
    # loops, not array expressions: inside a parallel kernel an array expression is a parallel region of its
    # own, which a small lattice's serial path must not start
    explicit_any = explicit.shape[0] > 0
    for i in range(lo, hi):
        out[i - lo] = np.uint8(1) - np.uint8(explicit_any and explicit[i])
    for r in range(seeds.shape[0]):
        seed = seeds[r]
        threshold = thresholds[r]
        for i in range(lo, hi):
            out[i - lo] &= np.uint8((_splitmix(seed, np.uint64(i)) >> SHIFT11) >= threshold)
    if box_lo.shape[0] > 0:
        coords = np.empty(shape.shape[0], np.int64)
        _set_coords(lo, strides, coords)
        for i in range(lo, hi):
            if out[i - lo]:
                for b in range(box_lo.shape[0]):
                    if _box_holds(box_lo, box_hi, b, coords, coords.shape[0]):
                        out[i - lo] = 0
                        break
            _advance(coords, shape)


SERIAL_MASK_VERTICES = 1 << 18
"""Lattices up to this many vertices materialise their mask on the calling thread: starting numba's threads
costs more than the second thread saves (the mask takes about 1 ns per vertex)."""


@njit(cache=True, nogil=True, parallel=True)
def open_mask(generators: tuple[np.ndarray, ...], out: np.ndarray) -> None:
    """Write the uint8 open mask into ``out`` (N,) (``generators`` as for :func:`_open_run`).

    Chunks of the lattice run in parallel, except on a lattice of at most :data:`SERIAL_MASK_VERTICES`.
    """
    n = out.shape[0]
    if n <= SERIAL_MASK_VERTICES:
        _open_run(0, n, generators, out)
        return
    for chunk in prange((n + CHUNK - 1) // CHUNK):
        lo = chunk * CHUNK
        hi = min(n, lo + CHUNK)
        _open_run(lo, hi, generators, out[lo:hi])


@njit(cache=True, nogil=True, inline="always")
def _pack_run(flags: np.ndarray, lo: Int, hi: Int, out: np.ndarray) -> None:
    """Pack ``flags`` (0 or 1, of the vertices ``lo .. hi - 1``, ``lo`` a multiple of 8) 8 per byte into ``out``."""
    for b in range((hi - lo + 7) >> 3):
        byte = np.uint8(0)
        for j in range(min(8, hi - lo - 8 * b)):
            byte |= np.uint8(flags[8 * b + j] << j)
        out[(lo >> 3) + b] = byte


@njit(cache=True, nogil=True, parallel=True)
def open_bits(generators: tuple[np.ndarray, ...], n: Int, out: np.ndarray) -> None:
    """Write the open mask of ``n`` vertices packed 8 per byte into ``out`` ((n + 7) // 8,).

    Each chunk (a multiple of 8 vertices, so it owns whole bytes) is materialised as bytes, then packed; chunks
    run in parallel, except on a lattice of at most :data:`SERIAL_MASK_VERTICES`.
    """
    if n <= SERIAL_MASK_VERTICES:
        flags = np.empty(n, np.uint8)
        _open_run(0, n, generators, flags)
        _pack_run(flags, 0, n, out)
        return
    for chunk in prange((n + CHUNK - 1) // CHUNK):
        lo = chunk * CHUNK
        hi = min(n, lo + CHUNK)
        chunk_flags = np.empty(hi - lo, np.uint8)
        _open_run(lo, hi, generators, chunk_flags)
        _pack_run(chunk_flags, lo, hi, out)


@njit(cache=True, nogil=True, parallel=True)
def degree_histogram(axes: Axes, open_mask: np.ndarray) -> np.ndarray:
    """Count open vertices by their number of distinct open neighbours."""
    shape, strides, periodic = axes
    n = open_mask.shape[0]
    d = shape.shape[0]
    chunks = (n + CHUNK - 1) // CHUNK
    partial = np.zeros((chunks, 2 * d + 1), np.int64)
    for chunk in prange(chunks):
        lo = chunk * CHUNK
        hi = min(n, lo + CHUNK)
        coords = np.empty(d, np.int64)
        _set_coords(lo, strides, coords)
        for i in range(lo, hi):
            if open_mask[i]:
                degree = 0
                for k in range(d):
                    s = strides[k]
                    m = shape[k]
                    c = coords[k]
                    if m == 1:
                        continue
                    if m == 2:
                        # the one other vertex on this axis, whether or not the axis wraps
                        other = i + s if c == 0 else i - s
                        degree += open_mask[other]
                        continue
                    if c > 0:
                        degree += open_mask[i - s]
                    elif periodic[k]:
                        degree += open_mask[i + (m - 1) * s]
                    if c < m - 1:
                        degree += open_mask[i + s]
                    elif periodic[k]:
                        degree += open_mask[i - (m - 1) * s]
                partial[chunk, degree] += 1
            _advance(coords, shape)
    return partial.sum(axis=0)


# --- searches ---------------------------------------------------------------------------------------------


@njit(cache=True, nogil=True, inline="always")
def _enqueue(u: Int, step: Int, dist: np.ndarray, queue: np.ndarray, tail: Int) -> Int:
    """Label ``u`` at depth ``step`` and append it to ``queue[tail]``; returns the new tail."""
    dist[u] = step
    queue[tail] = u
    return tail + 1


@njit(cache=True, nogil=True)
def bfs(
    axes: Axes,
    open_mask: np.ndarray,
    sources: np.ndarray,
    target: Int,
    dist: np.ndarray,
    queue: np.ndarray,
    meter: np.ndarray,
) -> Int:
    """Whole-level multi-source BFS over a vertex queue with room for every vertex; returns ``expanded``.

    The search for lattices whose tile tables are too large to keep (:func:`bfs_tiles` is the fast one):
    every frontier vertex checks its 2d neighbours. ``meter[0]`` gets the vertices expanded at the start of
    each level (a :class:`catalytic.kernels.backend.Meter`'s counts).
    """
    shape, strides, periodic = axes
    d = shape.shape[0]
    tail: Int = 0
    for s in sources:
        if dist[s] < 0:
            dist[s] = 0
            queue[tail] = s
            tail += 1
    if target >= 0 and dist[target] == 0:
        return 0
    inverse = _inverse_strides(strides)
    coords = np.empty(d, np.int64)
    head: Int = 0
    found = False
    while head < tail and not found:
        meter[0] = head
        level_end = tail
        step = dist[queue[head]] + 1
        while head < level_end:
            v = np.int64(queue[head])
            head += 1
            decompose(v, strides, inverse, coords)
            for k in range(d):
                for side in range(2):
                    u = neighbour(v, coords[k], shape[k], strides[k], periodic[k], side)
                    if dist[u] < 0 and open_mask[u]:
                        tail = _enqueue(u, step, dist, queue, tail)
                        if u == target:
                            found = True
    return head


@njit(cache=True, nogil=True, inline="always")
def _pack_word(octets: np.ndarray, w: Int) -> np.uint64:
    """Word ``w`` of a packed mask: the low bits of the 64 mask bytes ``octets[8w .. 8w + 7]`` (8 per uint64)."""
    # one multiply gathers the low bit of each of 8 bytes into the top byte
    acc = np.uint64(0)
    for j in range(8):
        acc |= (((octets[8 * w + j] & BYTE_LOWS) * BYTE_GATHER) >> SHIFT56) << np.uint64(8 * j)
    return acc


@njit(cache=True, nogil=True)
def pack_bits(open_mask: np.ndarray, packed: np.ndarray) -> None:
    """Pack the uint8 open mask (0 or 1 per vertex) into ``packed`` in index order, 8 bytes a multiply: bit
    ``i & 63`` of word ``i >> 6`` is vertex ``i``, the bits past the last vertex 0; words after the last vertex's
    are left as they are."""
    n = open_mask.shape[0]
    full = n >> 6
    octets = open_mask[: full << 6].view(np.uint64)
    for w in range(full):
        packed[w] = _pack_word(octets, w)
    if n & 63:
        tail = np.uint64(0)
        for i in range(full << 6, n):
            tail |= np.uint64(open_mask[i] & 1) << np.uint64(i & 63)
        packed[full] = tail


_tile_logs = njit(cache=True, nogil=True, inline="always")(rule_tile_logs)


@njit(cache=True, nogil=True)
def tile_logs(shape: np.ndarray) -> np.ndarray:
    """The tile extents of :func:`tiling` as log2 per axis (:func:`catalytic.kernels._rules.tile_logs`)."""
    log = np.zeros(shape.shape[0], np.int64)
    _tile_logs(shape, log)
    return log


@njit(cache=True, nogil=True)
def tile_frame(shape: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, Int]:
    """The tile grid of ``shape``: ``(log, tile_strides, grid, tiles)``, as :func:`tiling` cuts it."""
    d = shape.shape[0]
    log = tile_logs(shape)
    grid = np.empty(d, np.int64)
    tile_strides = np.empty(d, np.int64)
    tiles: Int = 1
    for k in range(d - 1, -1, -1):
        grid[k] = (shape[k] + (1 << log[k]) - 1) >> log[k]
        tile_strides[k] = tiles
        tiles *= grid[k]
    return log, tile_strides, grid, tiles


@njit(cache=True, nogil=True)
def tiling(shape: np.ndarray, strides: np.ndarray) -> tuple[np.ndarray, ...]:
    """Cut the lattice into tiles of 64 vertices, a box of ``2^log[k]`` along each axis, one word of bits each.

    Returns ``(log, tile_strides, offset, base, edges)``:

    * ``log`` (d,): the tile's extent along each axis is ``1 << log[k]``. Bits go one at a time to the axis with
      the smallest extent that is still shorter than the axis (the last such axis on ties), so a tile is as
      close to a cube as the shape allows and a BFS front, a surface of the lattice, crosses a tile in many
      vertices where it crosses a run of 64 consecutive indices in one or two;
    * ``tile_strides`` (d,): the strides of the grid of tiles (C order, partial tiles at the high ends);
    * ``offset`` (64,): the linear index of bit ``b`` relative to its tile's first vertex;
    * ``base`` (tiles,): the linear index of each tile's first vertex;
    * ``edges`` (tiles,): bit ``2k`` set when the tile is the first along axis ``k``, bit ``2k + 1`` when the last.

    Bit ``b`` of a tile is the vertex whose in-tile coordinate on axis ``k`` is ``(b >> sum(log[k + 1:])) &
    ((1 << log[k]) - 1)``: the last axis varies fastest. Bits of a partial tile that fall outside the lattice are
    never open.
    """
    d = shape.shape[0]
    log, tile_strides, grid, tiles = tile_frame(shape)
    total = 0
    for k in range(d):
        total += log[k]
    offset = np.zeros(64, np.int64)
    for b in range(1 << total):
        low = 0
        for k in range(d - 1, -1, -1):
            offset[b] += ((b >> low) & ((1 << log[k]) - 1)) * strides[k]
            low += log[k]
    base = np.empty(tiles, np.int64)
    edges = np.empty(tiles, np.uint64)
    coords = np.zeros(d, np.int64)
    for t in range(tiles):
        first = 0
        flags = ZERO
        for k in range(d):
            first += (coords[k] << log[k]) * strides[k]
            if coords[k] == 0:
                flags |= ONE << np.uint64(2 * k)
            if coords[k] == grid[k] - 1:
                flags |= ONE << np.uint64(2 * k + 1)
        base[t] = first
        edges[t] = flags
        advance_axes(coords, grid, d - 1)
    return log, tile_strides, offset, base, edges


@njit(cache=True, nogil=True)
def _pack_tiles(
    open_mask: np.ndarray, shape: np.ndarray, log: np.ndarray, tile_strides: np.ndarray, out: np.ndarray
) -> None:
    """Write the uint8 open mask into ``out`` in the tile layout of :func:`tiling`.

    The mask is packed in index order first (8 bytes a multiply), then each run of a line that falls in one tile
    is copied with one shift.
    """
    n = open_mask.shape[0]
    d = shape.shape[0]
    line = shape[d - 1]
    run = 1 << log[d - 1]
    packed = np.zeros(((n + 63) >> 6) + 1, np.uint64)
    pack_bits(open_mask, packed)
    out[:] = ZERO
    whole = line - line % run
    run_mask = _low_mask(run)
    # the tile and the bit offset of each line's first vertex: worked out afresh where axis d - 2 starts over,
    # and otherwise stepped one line along it
    line_bit = 1 << log[d - 1]
    extent = 1 << log[d - 2] if d > 1 else 1
    step_tile = tile_strides[d - 2] if d > 1 else 0
    coords = np.zeros(d, np.int64)
    first_tile = 0
    first_bit = 0
    for row in range(n // line):
        if d == 1 or coords[d - 2] == 0:
            first_tile = 0
            first_bit = 0
            low = log[d - 1]
            for k in range(d - 2, -1, -1):
                first_tile += (coords[k] >> log[k]) * tile_strides[k]
                first_bit += (coords[k] & ((1 << log[k]) - 1)) << low
                low += log[k]
        start = row * line
        shift = np.uint64(first_bit)
        for c in range(0, whole, run):
            out[first_tile + (c >> log[d - 1])] |= (_bits_at(packed, start + c) & run_mask) << shift
        if whole < line:
            # the bits past the line's end belong to the next line: masked off
            bits = _bits_at(packed, start + whole) & _low_mask(line - whole)
            out[first_tile + (whole >> log[d - 1])] |= bits << shift
        advance_axes(coords, shape, d - 2)
        if d > 1 and coords[d - 2] != 0:
            if coords[d - 2] & (extent - 1) == 0:
                first_tile += step_tile
                first_bit -= (extent - 1) * line_bit
            else:
                first_bit += line_bit


@njit(cache=True, nogil=True, inline="always")
def _plane(log: np.ndarray, k: Int, c: Int) -> np.uint64:
    """The bits of a tile whose in-tile coordinate on axis ``k`` is ``c``."""
    low = 0
    for j in range(k + 1, log.shape[0]):
        low += log[j]
    total = low
    for j in range(k + 1):
        total += log[j]
    plane = ZERO
    for b in range(1 << total):
        if ((b >> low) & ((1 << log[k]) - 1)) == c:
            plane |= ONE << np.uint64(b)
    return plane


@njit(cache=True, nogil=True, inline="always")
def _move(reached: np.ndarray, noted: np.ndarray, free: np.ndarray, t: Int, bits: np.uint64) -> None:
    """OR the unlabelled ``bits`` into ``reached[t]`` and, when there are any, set bit ``t`` of ``noted``.

    Without a branch: whether a face of the frontier holds bits is as good as random. Keeping only unlabelled
    bits leaves out the tiles a level reaches without gaining anything, about half of them.
    """
    bits &= free[t]
    reached[t] |= bits
    noted[t >> 6] |= np.uint64(bits != 0) << np.uint64(t & 63)


@njit(cache=True, nogil=True)
def open_tiles(open_mask: np.ndarray, shape: np.ndarray, layout: tuple[np.ndarray, ...]) -> np.ndarray:
    """The uint8 open mask in the tile layout of :func:`tiling`: a uint64 word per tile, 0 outside the lattice."""
    out = np.empty(layout[3].shape[0], np.uint64)
    _pack_tiles(open_mask, shape, layout[0], layout[1], out)
    return out


@njit(cache=True, nogil=True)
def _tile_moves(shape: np.ndarray, periodic: np.ndarray, layout: tuple[np.ndarray, ...]) -> TileMoves:
    """The tables a level of :func:`bfs_tiles` or :func:`lower_tiles` moves its tiles by.

    Per moving axis (length over 1, last axis first): the axis, the bit shift inside a tile, the low and high
    face planes, the shift that carries a face plane to the opposite face of the next tile, and for a periodic
    axis the plane, shift and tile offset of its wrap; then how many axes move and the farthest a move writes,
    in tiles.
    """
    log, tile_strides = layout[0], layout[1]
    d = shape.shape[0]
    axis = np.empty(d, np.int64)
    inner = np.empty(d, np.uint64)
    low_face = np.empty(d, np.uint64)
    high_face = np.empty(d, np.uint64)
    across = np.empty(d, np.uint64)
    wrap_face = np.zeros(d, np.uint64)
    wrap_shift = np.zeros(d, np.uint64)
    wrap_tiles = np.zeros(d, np.int64)
    moving = 0
    reach = 1
    low = 0
    for k in range(d - 1, -1, -1):
        if shape[k] > 1:
            extent = 1 << log[k]
            axis[moving] = k
            inner[moving] = np.uint64(1 << low)
            low_face[moving] = _plane(log, k, 0)
            high_face[moving] = _plane(log, k, extent - 1)
            across[moving] = np.uint64((extent - 1) << low)
            reach = max(reach, tile_strides[k])
            if periodic[k] and shape[k] > 2:
                last = (shape[k] - 1) & (extent - 1)
                wrap_face[moving] = _plane(log, k, last)
                wrap_shift[moving] = np.uint64(last << low)
                wrap_tiles[moving] = ((shape[k] - 1) >> log[k]) * tile_strides[k]
                reach = max(reach, wrap_tiles[moving])
            moving += 1
        low += log[k]
    return axis, inner, low_face, high_face, across, wrap_face, wrap_shift, wrap_tiles, moving, reach


@njit(cache=True, nogil=True, inline="always")
def _tile_bit(
    index: Int, axes: Axes, inverse: np.ndarray, coords: np.ndarray, layout: tuple[np.ndarray, ...]
) -> tuple[Int, np.uint64]:
    """The tile of vertex ``index`` and its bit there, in the layout of :func:`tiling`.

    ``inverse`` is :func:`_inverse_strides` of the strides and ``coords`` scratch of one entry per axis: a
    multiplication per axis instead of a division, for the many halo seeds of :func:`lower_tiles`.
    """
    log, tile_strides = layout[0], layout[1]
    decompose(index, axes[1], inverse, coords)
    t: Int = 0
    b = 0
    width = 0
    for k in range(coords.shape[0] - 1, -1, -1):
        c = coords[k]
        t += (c >> log[k]) * tile_strides[k]
        b += (c & ((1 << log[k]) - 1)) << width
        width += log[k]
    return t, ONE << np.uint64(b)


@njit(cache=True, nogil=True, inline="always")
def _expand_tiles(
    listed: np.ndarray,
    count: Int,
    frontier: np.ndarray,
    moves: TileMoves,
    layout: tuple[np.ndarray, ...],
    reached: np.ndarray,
    noted: np.ndarray,
    free: np.ndarray,
) -> None:
    """Move the frontier's ``listed[:count]`` tiles one step along every axis into ``reached`` (free bits only).

    Clears those tiles of ``frontier`` and notes each tile that gained bits in ``noted``; a tile inside the
    lattice along every axis moves without a face test.
    """
    axis, inner, low_face, high_face, across, wrap_face, wrap_shift, wrap_tiles, moving, _ = moves
    tile_strides, edges = layout[1], layout[4]
    for a in range(count):
        t = listed[a]
        f = frontier[t]
        frontier[t] = ZERO
        flags = edges[t]
        within = ZERO
        if flags == 0:
            for m in range(moving):
                s = inner[m]
                step_m = tile_strides[axis[m]]
                within |= ((f & ~high_face[m]) << s) | ((f & ~low_face[m]) >> s)
                _move(reached, noted, free, t + step_m, (f & high_face[m]) >> across[m])
                _move(reached, noted, free, t - step_m, (f & low_face[m]) << across[m])
            _move(reached, noted, free, t, within)
            continue
        for m in range(moving):
            k = axis[m]
            s = inner[m]
            within |= ((f & ~high_face[m]) << s) | ((f & ~low_face[m]) >> s)
            if (flags >> np.uint64(2 * k + 1)) & ONE == 0:
                _move(reached, noted, free, t + tile_strides[k], (f & high_face[m]) >> across[m])
            elif wrap_face[m] != 0:
                _move(reached, noted, free, t - wrap_tiles[m], (f & wrap_face[m]) >> wrap_shift[m])
            if (flags >> np.uint64(2 * k)) & ONE == 0:
                _move(reached, noted, free, t - tile_strides[k], (f & low_face[m]) << across[m])
            elif wrap_face[m] != 0:
                _move(reached, noted, free, t + wrap_tiles[m], (f & low_face[m]) << wrap_shift[m])
        _move(reached, noted, free, t, within)


@njit(cache=True, nogil=True, inline="always")
def list_noted(noted: np.ndarray, first: Int, last: Int, ids: np.ndarray, slot: Int) -> Int:
    """Write the tiles whose bits are set in words ``first .. last - 1`` of the summary ``noted`` (one bit per
    tile; cleared) into ``ids`` from ``slot`` on, in increasing order; returns the slot after the last."""
    for i in range(first, last):
        bits = noted[i]
        noted[i] = ZERO
        while bits != 0:
            ids[slot] = (i << 6) + np.int64(trailing_zeros(bits))
            bits &= bits - ONE
            slot += 1
    return slot


@njit(cache=True, nogil=True)
def bfs_tiles(
    axes: Axes,
    opened: np.ndarray,
    sources: np.ndarray,
    target: Int,
    dist: np.ndarray,
    layout: tuple[np.ndarray, ...],
    meter: np.ndarray,
) -> Int:
    """Whole-level multi-source BFS on bit sets in the tile layout of :func:`tiling`; returns ``expanded``.

    ``opened`` is :func:`open_tiles` of the mask and ``layout`` :func:`tiling` of the shape. ``meter`` is a
    :class:`catalytic.kernels.backend.Meter`'s counts: ``meter[0]`` gets the vertices expanded at the start of
    each level, ``meter[2]`` the bytes of the bit sets and tile lists.

    The frontier, the vertices it reaches and the open vertices not yet labelled are bit sets of one word per
    tile, and the frontier's non-zero tiles are listed in increasing order; no vertex is ever queued. A level
    moves each listed tile along every axis: within the tile by a shift of the bits, and across its faces into
    the next tile (the last tile along a periodic axis wraps to the first). It ORs the unlabelled bits of the
    results into ``reached``, noting each tile that gained some in a summary bit set (one bit per tile); a tile
    inside the lattice along every axis moves without a face test. Then it reads the noted tiles in
    increasing order and keeps ``reached`` as the next frontier, writing its depth into
    ``dist``. A thin frontier costs no pass over the lattice, and every array is read in increasing order. The
    depths are the BFS depths, so ``dist`` and ``expanded`` (every vertex of the levels before the target's)
    equal the vertex-queue search's.
    """
    shape, periodic = axes[0], axes[2]
    offset, base = layout[2], layout[3]
    tiles = base.shape[0]
    moves = _tile_moves(shape, periodic, layout)
    reach = moves[9]
    free = opened.copy()  # open and not yet labelled
    frontier = np.zeros(tiles, np.uint64)
    reached = np.zeros(tiles, np.uint64)
    noted = np.zeros((tiles + 63) >> 6, np.uint64)  # bit t: reached[t] was written this level
    listed = np.empty(tiles, np.int64)  # the frontier's non-zero tiles, increasing
    meter[2] += 8 * (4 * tiles + noted.shape[0])
    inverse = _inverse_strides(axes[1])
    coords = np.empty(shape.shape[0], np.int64)
    level: Int = 0
    for s in sources:
        if dist[s] < 0:
            dist[s] = 0
            level += 1
            t, bit = _tile_bit(s, axes, inverse, coords, layout)
            frontier[t] |= bit
            free[t] &= ~bit
            noted[t >> 6] |= ONE << np.uint64(t & 63)
    if target >= 0 and dist[target] == 0:
        return 0
    count = list_noted(noted, 0, noted.shape[0], listed, 0)
    expanded: Int = 0
    step = 0
    while count > 0:
        meter[0] = expanded
        expanded += level
        step += 1
        _expand_tiles(listed, count, frontier, moves, layout, reached, noted, free)
        lo = max(listed[0] - reach, 0) >> 6
        hi = min(listed[count - 1] + reach, tiles - 1) >> 6
        count = 0
        level = 0
        for i in range(lo, hi + 1):
            bits = noted[i]
            if bits == 0:
                continue
            noted[i] = ZERO
            while bits != 0:
                t = (i << 6) + np.int64(trailing_zeros(bits))
                bits &= bits - ONE
                # every noted tile gains something: _move keeps unlabelled bits only
                fresh = reached[t]
                reached[t] = ZERO
                free[t] ^= fresh
                frontier[t] = fresh
                listed[count] = t
                count += 1
                first = base[t]
                while fresh != 0:
                    dist[first + offset[trailing_zeros(fresh)]] = step
                    fresh &= fresh - ONE
                    level += 1
        if target >= 0 and dist[target] >= 0:
            break
    return expanded


@njit(cache=True, nogil=True)
def lower_tiles(
    axes: Axes,
    opened: np.ndarray,
    seeds: np.ndarray,
    depths: np.ndarray,
    dist: np.ndarray,
    layout: tuple[np.ndarray, ...],
) -> Int:
    """Lower int32 steps ``dist`` (−1 unreached) from ``seeds`` starting at ``depths``, on tiles; returns the
    vertices expanded (seeds that joined and vertices lowered).

    ``seeds`` are open vertices ordered by ``depths`` (non-decreasing). The levels of :func:`bfs_tiles` run in
    depth order from the first seed's depth: a seed joins the frontier at its own depth if ``dist`` still holds
    that depth there (else the search lowered it already), and a vertex reached at depth ``step`` is taken when
    its ``dist`` is −1 or larger than ``step``. Every finite entry is an upper bound; a vertex reached and not
    taken is final for this call, as in the bucket search of :mod:`catalytic.distributed._relax`, so the result
    is the same. When a level is empty the search jumps to the next seed's depth.
    """
    shape, periodic = axes[0], axes[2]
    offset, base = layout[2], layout[3]
    tiles = base.shape[0]
    count_seeds = seeds.shape[0]
    moves = _tile_moves(shape, periodic, layout)
    reach = moves[9]
    free = opened.copy()  # open and neither lowered nor reached by this call
    frontier = np.zeros(tiles, np.uint64)
    reached = np.zeros(tiles, np.uint64)
    joining = np.zeros(tiles, np.uint64)  # the seeds that join the level being formed
    noted = np.zeros((tiles + 63) >> 6, np.uint64)
    listed = np.empty(tiles, np.int64)
    inverse = _inverse_strides(axes[1])
    coords = np.empty(shape.shape[0], np.int64)
    expanded: Int = 0
    si = 0
    step = depths[0] if count_seeds > 0 else 0
    lo: Int = tiles
    hi: Int = -1
    while True:
        while si < count_seeds and depths[si] <= step:
            s = seeds[si]
            if dist[s] == depths[si]:
                t, bit = _tile_bit(s, axes, inverse, coords, layout)
                expanded += np.int64((joining[t] & bit) == 0)
                joining[t] |= bit
                noted[t >> 6] |= ONE << np.uint64(t & 63)
                lo = min(lo, t)
                hi = max(hi, t)
            si += 1
        count: Int = 0
        bound = np.uint32(step)
        for i in range(max(lo, 0) >> 6, (hi >> 6) + 1 if hi >= 0 else 0):
            bits = noted[i]
            if bits == 0:
                continue
            noted[i] = ZERO
            while bits != 0:
                t = (i << 6) + np.int64(trailing_zeros(bits))
                bits &= bits - ONE
                got = reached[t]
                reached[t] = ZERO
                fresh = joining[t]
                joining[t] = ZERO
                # reached and not taken is final too: a later level reaches it deeper still
                free[t] &= ~(got | fresh)
                first = base[t]
                while got != 0:
                    b = trailing_zeros(got)
                    got &= got - ONE
                    x = first + offset[b]
                    # −1 (unreached) is the largest as unsigned
                    if np.uint32(dist[x]) > bound:
                        dist[x] = step
                        fresh |= ONE << b
                        expanded += 1
                if fresh != 0:
                    frontier[t] = fresh
                    listed[count] = t
                    count += 1
        if count == 0:
            if si >= count_seeds:
                return expanded
            step = depths[si]
            lo = tiles
            hi = -1
            continue
        _expand_tiles(listed, count, frontier, moves, layout, reached, noted, free)
        lo = max(listed[0] - reach, 0)
        hi = min(listed[count - 1] + reach, tiles - 1)
        step += 1


@njit(cache=True, nogil=True, inline="always")
def _expand_level(
    axes: Axes,
    inverse: np.ndarray,
    coords: np.ndarray,
    open_mask: np.ndarray,
    queue: np.ndarray,
    head: Int,
    tail: Int,
    mine: np.ndarray,
    other: np.ndarray,
) -> tuple[Int, Int, Int]:
    """Expand ``queue[head:tail]`` of one side; returns (new tail, best touch sum, best touch vertex)."""
    shape, strides, periodic = axes
    best_sum: Int = np.int64(-1)
    best_vertex: Int = np.int64(-1)
    end = tail
    for q in range(head, tail):
        v = np.int64(queue[q])
        step = mine[v] + 1
        decompose(v, strides, inverse, coords)
        for k in range(shape.shape[0]):
            for side in range(2):
                u = neighbour(v, coords[k], shape[k], strides[k], periodic[k], side)
                if mine[u] < 0 and open_mask[u]:
                    end = _enqueue(u, step, mine, queue, end)
                    if other[u] >= 0:
                        total = np.int64(step) + other[u]
                        if best_vertex < 0 or total < best_sum or (total == best_sum and u < best_vertex):
                            best_sum = total
                            best_vertex = u
    return end, best_sum, best_vertex


@njit(cache=True, nogil=True)
def bidirectional(
    axes: Axes,
    open_mask: np.ndarray,
    start: Int,
    goal: Int,
    dist_start: np.ndarray,
    dist_goal: np.ndarray,
    queue_start: np.ndarray,
    queue_goal: np.ndarray,
    meter: np.ndarray,
) -> tuple[Int, Int, Int]:
    """Bidirectional whole-level BFS; returns ``(length, meet, expanded)`` (``meter[0]``: expanded, per level)."""
    shape, strides = axes[0], axes[1]
    if start == goal:
        dist_start[start] = 0
        dist_goal[goal] = 0
        return 0, start, 0
    d = shape.shape[0]
    inverse = _inverse_strides(strides)
    coords = np.empty(d, np.int64)
    dist_start[start] = 0
    dist_goal[goal] = 0
    queue_start[0] = start
    queue_goal[0] = goal
    heads = np.zeros(2, np.int64)  # each side's queue[head:tail] is its frontier
    tails = np.ones(2, np.int64)
    expanded = 0
    while True:
        side = 0 if tails[0] - heads[0] <= tails[1] - heads[1] else 1
        queue, mine, other = (queue_start, dist_start, dist_goal) if side == 0 else (queue_goal, dist_goal, dist_start)
        end, total, meet = _expand_level(axes, inverse, coords, open_mask, queue, heads[side], tails[side], mine, other)
        expanded += tails[side] - heads[side]
        meter[0] = expanded
        heads[side], tails[side] = tails[side], end
        if meet >= 0:
            return total, meet, expanded
        if heads[side] == tails[side]:
            return -1, -1, expanded


@njit(cache=True, nogil=True, inline="always")
def _heap_less(f: np.ndarray, h: np.ndarray, key: np.ndarray, a: Int, b: Int) -> bool:
    if f[a] != f[b]:
        return f[a] < f[b]
    if h[a] != h[b]:
        return h[a] < h[b]
    return key[a] < key[b]


@njit(cache=True, nogil=True, inline="always")
def _heap_swap(f: np.ndarray, h: np.ndarray, key: np.ndarray, a: Int, b: Int) -> None:
    f[a], f[b] = f[b], f[a]
    h[a], h[b] = h[b], h[a]
    key[a], key[b] = key[b], key[a]


@njit(cache=True, nogil=True, inline="always")
def _heap_push(f: np.ndarray, h: np.ndarray, key: np.ndarray, size: Int, fv: float, hv: float, kv: Int) -> Int:
    i = size
    f[i] = fv
    h[i] = hv
    key[i] = kv
    while i > 0:
        parent = (i - 1) >> 1
        if _heap_less(f, h, key, i, parent):
            _heap_swap(f, h, key, i, parent)
            i = parent
        else:
            break
    return size + 1


@njit(cache=True, nogil=True, inline="always")
def _heap_pop(f: np.ndarray, h: np.ndarray, key: np.ndarray, size: Int) -> Int:
    """Move the smallest entry to position ``size - 1`` and restore the heap on the rest."""
    last = size - 1
    _heap_swap(f, h, key, 0, last)
    i = 0
    while True:
        left = 2 * i + 1
        if left >= last:
            break
        smallest = left
        right = left + 1
        if right < last and _heap_less(f, h, key, right, left):
            smallest = right
        if _heap_less(f, h, key, smallest, i):
            _heap_swap(f, h, key, smallest, i)
            i = smallest
        else:
            break
    return last


@njit(cache=True, nogil=True)
def _grow_float(array: np.ndarray, size: Int) -> np.ndarray:
    bigger = np.empty(2 * array.shape[0], np.float64)
    bigger[:size] = array[:size]
    return bigger


@njit(cache=True, nogil=True)
def _grow_int(array: np.ndarray, size: Int) -> np.ndarray:
    bigger = np.empty(2 * array.shape[0], np.int64)
    bigger[:size] = array[:size]
    return bigger


@njit(cache=True, nogil=True, inline="always")
def _heap_add(
    f: np.ndarray, h: np.ndarray, key: np.ndarray, size: Int, fv: float, hv: float, kv: Int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, Int]:
    """:func:`_heap_push`, doubling the heap's arrays first when they are full."""
    if size == f.shape[0]:
        f, h, key = _grow_float(f, size), _grow_float(h, size), _grow_int(key, size)
    return f, h, key, _heap_push(f, h, key, size, fv, hv, kv)


@njit(cache=True, nogil=True, inline="always")
def _note(written: np.ndarray, count: Int, index: Int) -> tuple[np.ndarray, Int]:
    """Append ``index`` to ``written[:count]``, doubling the array when it is full."""
    if count == written.shape[0]:
        written = _grow_int(written, count)
    written[count] = index
    return written, count + 1


@njit(cache=True, nogil=True, inline="always")
def _axis_distance(c: Int, t: Int, n: Int, wraps: Int) -> Int:
    delta = abs(c - t)
    if wraps and n - delta < delta:
        return n - delta
    return delta


@njit(cache=True, nogil=True, inline="always")
def _manhattan(coords: np.ndarray, goal_coords: np.ndarray, shape: np.ndarray, periodic: np.ndarray) -> Int:
    total = 0
    for k in range(shape.shape[0]):
        total += _axis_distance(coords[k], goal_coords[k], shape[k], periodic[k])
    return total


@njit(cache=True, nogil=True)
def dijkstra(
    axes: Axes,
    open_mask: np.ndarray,
    weights: np.ndarray,
    sources: np.ndarray,
    target: Int,
    dist: np.ndarray,
    astar: bool,
    min_weight: float,
    meter: np.ndarray,
) -> tuple[Int, np.ndarray]:
    """Dijkstra (A* towards ``target`` when ``astar``) with keys ``(f, h, index)``.

    ``weights`` is empty for unit costs. A source starts at 0, or at its entry of ``dist`` when that is finite
    (a seed). A settled vertex is skipped when popped again and never relaxed again, as in the reference
    backend. Returns ``(expanded, written)``: ``written`` holds every index whose distance this call wrote in
    place of inf, each once, so a caller can put ``dist`` back for the next query in time proportional to the
    search rather than to the lattice. ``meter[0]`` gets the settled count every 1024 vertices, and ``meter[2]``
    the bytes of the heap, the settled flags and ``written`` at their largest.
    """
    shape, strides, periodic = axes
    n = open_mask.shape[0]
    d = shape.shape[0]
    weighted = weights.shape[0] > 0
    heuristic = astar and target >= 0
    inverse = _inverse_strides(strides)
    coords = np.empty(d, np.int64)
    goal_coords = np.zeros(d, np.int64)
    if heuristic:
        _set_coords(target, strides, goal_coords)
    capacity = min(max(n, 16), HEAP_START)
    hf = np.empty(capacity, np.float64)
    hh = np.empty(capacity, np.float64)
    hk = np.empty(capacity, np.int64)
    size: Int = 0
    settled = np.zeros(n, np.uint8)
    written = np.empty(capacity, np.int64)
    count: Int = 0
    for s in sources:
        if dist[s] == np.inf:
            written, count = _note(written, count, s)
            dist[s] = 0.0
        h0 = 0.0
        if heuristic:
            decompose(s, strides, inverse, coords)
            h0 = min_weight * _manhattan(coords, goal_coords, shape, periodic)
        hf, hh, hk, size = _heap_add(hf, hh, hk, size, dist[s] + h0, h0, s)
    expanded = 0
    while size > 0:
        size = _heap_pop(hf, hh, hk, size)
        v = hk[size]
        if settled[v]:
            continue
        settled[v] = 1
        expanded += 1
        if expanded & 1023 == 0:
            meter[0] = expanded
        if v == target:
            break
        gv = dist[v]
        decompose(v, strides, inverse, coords)
        base: Int = 0
        if heuristic:
            base = _manhattan(coords, goal_coords, shape, periodic)
        for k in range(d):
            for side in range(2):
                u, c_new = _step(v, coords, shape, strides, periodic, k, side)
                if u < 0 or not open_mask[u] or settled[u]:
                    continue
                gu = gv + (weights[u] if weighted else 1.0)
                if gu < dist[u]:
                    if dist[u] == np.inf:
                        written, count = _note(written, count, u)
                    dist[u] = gu
                    hu = 0.0
                    if heuristic:
                        # u differs from v on axis k only
                        hu = min_weight * (
                            base
                            - _axis_distance(coords[k], goal_coords[k], shape[k], periodic[k])
                            + _axis_distance(c_new, goal_coords[k], shape[k], periodic[k])
                        )
                    hf, hh, hk, size = _heap_add(hf, hh, hk, size, gu + hu, hu, u)
    meter[2] += n + 8 * (hf.shape[0] + hh.shape[0] + hk.shape[0] + written.shape[0])
    return expanded, written[:count]


@njit(cache=True, nogil=True, inline="always")
def _walk_step(v: Int, j: Int, coords: np.ndarray, axes: Axes) -> Int:
    """The ``j``-th neighbour of ``v`` in canonical order for a path walk, or −1 for none.

    A step off an open border gives none; the self-step of a periodic axis of length 1 is kept (the walk's test
    then refuses it), exactly as the reference walks every neighbour in :func:`_neighbours` order.
    """
    shape, strides, periodic = axes
    k = j >> 1
    u = neighbour(v, coords[k], shape[k], strides[k], periodic[k], j & 1)
    if u == v and not (periodic[k] and shape[k] == 1):
        return -1
    return u


@njit(cache=True, nogil=True)
def trace_path(
    axes: Axes,
    open_mask: np.ndarray,
    dist: np.ndarray,
    weights: np.ndarray,
    root: Int,
    vertex: Int,
    lo: Int,
    hi: Int,
) -> np.ndarray:
    """The canonical path ``[vertex, ..., root]``; ``weights`` is empty for unit costs.

    The path also ends at its first vertex outside ``lo .. hi - 1``. Returns an empty array when some vertex on
    the way has no predecessor (an inconsistent ``dist``).
    """
    shape, strides = axes[0], axes[1]
    d = shape.shape[0]
    weighted = weights.shape[0] > 0
    inverse = _inverse_strides(strides)
    coords = np.empty(d, np.int64)
    path = np.empty(PATH_START, np.int64)
    size = 0
    v: Int = np.int64(vertex)
    while True:
        if size == open_mask.shape[0]:
            # no simple path is longer than the lattice: dist is not a search result
            return path[:0].copy()
        if size == path.shape[0]:
            path = _grow_int(path, size)
        path[size] = v
        size += 1
        if v == root or v < lo or v >= hi:
            return path[:size].copy()
        cost = weights[v] if weighted else 1
        decompose(v, strides, inverse, coords)
        previous: Int = np.int64(-1)
        for j in range(2 * d):
            u = _walk_step(v, j, coords, axes)
            # dist[u] >= 0 excludes an unreached int32 neighbour (-1) next to a second source (0)
            if u >= 0 and open_mask[u] and dist[u] >= 0 and dist[u] + cost == dist[v]:
                previous = u
                break
        if previous < 0:
            return path[:0].copy()
        v = previous


@njit(cache=True, nogil=True, inline="always")
def _find(parent: np.ndarray, x: Int) -> Int:
    while parent[x] != x:
        parent[x] = parent[parent[x]]
        x = parent[x]
    return x


@njit(cache=True, nogil=True, inline="always")
def _merge(parent: np.ndarray, a: Int, b: Int) -> Int:
    """Union the classes of labels ``a`` and ``b`` under the smaller root; returns that root."""
    ra = _find(parent, a)
    rb = _find(parent, b)
    if ra < rb:
        parent[rb] = ra
        return ra
    if rb < ra:
        parent[ra] = rb
    return rb


@njit(cache=True, nogil=True, parallel=True)
def _pack_open(open_mask: np.ndarray, packed: np.ndarray) -> None:
    """Pack the uint8 open mask (0 or 1 per vertex) into ``packed``: bit ``i & 63`` of word ``i >> 6`` is vertex
    ``i``. ``packed`` holds ``(N + 63) // 64 + 1`` words; the bits past N and the spare last word are 0, so
    :func:`_bits_at` may read one word past any vertex."""
    n = open_mask.shape[0]
    full = n >> 6
    octets = open_mask[: full << 6].view(np.uint64)
    for w in prange(full):
        packed[w] = _pack_word(octets, w)
    tail = np.uint64(0)
    for i in range(full << 6, n):
        tail |= np.uint64(open_mask[i] & 1) << np.uint64(i & 63)
    packed[full] = tail
    packed[packed.shape[0] - 1] = 0


@njit(cache=True, nogil=True, inline="always")
def _bits_at(packed: np.ndarray, pos: Int) -> np.uint64:
    """The 64 open bits of vertices ``pos .. pos + 63`` (0 past N)."""
    w = pos >> 6
    s = np.uint64(pos & 63)
    return (packed[w] >> s) | ((packed[w + 1] << ONE) << (SHIFT63 - s))


@njit(cache=True, nogil=True, inline="always")
def _low_mask(width: Int) -> np.uint64:
    """The ``width`` (1..64) low bits set."""
    return ALL_BITS >> np.uint64(64 - width)


@njit(cache=True, nogil=True, inline="always")
def _run_at(bits: np.uint64, rest: np.uint64) -> tuple[np.int64, np.int64]:
    """The run of set ``bits`` that starts at the lowest set bit of ``rest`` (a subset of ``bits`` whose lowest
    set bit starts a run), as ``(first, end)`` bit positions."""
    a = trailing_zeros(rest)
    above = ~(bits >> a)
    width = trailing_zeros(above) if above else np.uint64(64) - a
    return np.int64(a), np.int64(a + width)


@njit(cache=True, nogil=True, inline="always")
def _fill(out: np.ndarray, lo: Int, hi: Int, value: Int, limit: Int) -> None:
    """Write ``value`` into ``out[lo:hi]``; may write it up to ``lo + FILL_SPAN`` too, but never at ``limit`` or past.

    The usual short run takes one fixed-length store instead of a loop whose length the branch predictor
    cannot know; the slots written past ``hi`` belong to vertices later in the slab, written again in turn.
    """
    if lo + FILL_SPAN <= limit:
        for j in range(FILL_SPAN):
            out[lo + j] = value
        lo += FILL_SPAN
    for i in range(lo, hi):
        out[i] = value


@njit(cache=True, nogil=True)
def _label_slab(
    axes: Axes,
    packed: np.ndarray,
    out: np.ndarray,
    parent: np.ndarray,
    first_row: Int,
    last_row: Int,
) -> Int:
    """Provisional labels for the axis-0 rows ``first_row .. last_row - 1``; returns how many were opened.

    Each line along the last axis is read 64 vertices at a time from the packed mask, as runs of open
    vertices. A run takes the label of the open vertices next to it on the lines before it (one per run of
    theirs that it overlaps) and merges their classes in ``parent``; without any it opens a new label, and it
    writes its label over its vertices. Labels count up from the slab's first index, so they follow the index
    of the vertex that opened them, in this slab and across slabs, and the smallest label of a class is the
    one its lowest vertex opened (that vertex starts a run with no open vertex before it). Blocked vertices
    are not written: the packed mask says which are open. Edges leaving the slab along axis 0 are left to
    :func:`_join_slabs`.
    """
    shape, strides, periodic = axes
    d = shape.shape[0]
    line = shape[d - 1]
    line_wraps = periodic[d - 1] and line > 2
    lo = first_row * strides[0]
    hi = last_row * strides[0] if d > 1 else line
    coords = np.zeros(d, np.int64)
    coords[0] = first_row if d > 1 else 0
    offsets = np.empty(2 * d, np.int64)
    partner = np.empty(2 * d, np.uint64)
    fresh = lo
    base = lo
    while base < hi:
        # the lines before this one along the other axes (the lower index of each edge)
        m = 0
        for k in range(d - 1):
            c = coords[k]
            if c > 0 and (k > 0 or c > first_row):
                offsets[m] = strides[k]
                m += 1
            # the forward wrap partner has the lower index; length 2 makes it the backward neighbour
            if k > 0 and periodic[k] and c == shape[k] - 1 and shape[k] > 2:
                offsets[m] = c * strides[k]
                m += 1
        lab: Int = -1
        carry = ZERO
        for c0 in range(0, line, 64):
            start = base + c0
            cur = _bits_at(packed, start) & _low_mask(min(64, line - c0))
            if cur == 0:
                carry = ZERO
                continue
            for q in range(m):
                partner[q] = _bits_at(packed, start - offsets[q]) & cur
            rest = cur
            while rest:
                a, b = _run_at(cur, rest)
                run = _low_mask(b - a) << np.uint64(a)
                rest &= ~run
                # a run from bit 0 goes on from the last chunk's when that ended at its bit 63
                if a != 0 or carry == 0:
                    lab = -1
                for q in range(m):
                    touch = partner[q] & run
                    while touch:
                        p = trailing_zeros(touch)
                        other = out[start - offsets[q] + np.int64(p)]
                        if lab < 0:
                            lab = other
                        elif other != lab:
                            lab = _merge(parent, lab, other)
                        # drop the rest of that partner run: adding its lowest bit carries through it
                        touch &= touch + (ONE << p)
                if lab < 0:
                    parent[fresh] = fresh
                    lab = fresh
                    fresh += 1
                _fill(out, start + a, start + b, lab, hi)
            carry = cur >> SHIFT63
        if line_wraps and (_bits_at(packed, base) & ONE) and (_bits_at(packed, base + line - 1) & ONE):
            _merge(parent, out[base], out[base + line - 1])
        base += line
        advance_axes(coords, shape, d - 2)
    return fresh - lo


@njit(cache=True, nogil=True, inline="always")
def _is_set(packed: np.ndarray, i: Int) -> bool:
    """Whether vertex ``i`` is open in the packed mask."""
    return bool((packed[i >> 6] >> np.uint64(i & 63)) & ONE)


@njit(cache=True, nogil=True)
def _join_slabs(
    axes: Axes,
    packed: np.ndarray,
    out: np.ndarray,
    parent: np.ndarray,
    bounds: np.ndarray,
) -> None:
    """Merge the classes joined by axis-0 edges between slabs (``bounds``: first rows) and across its wrap."""
    shape, strides, periodic = axes
    row = strides[0]
    n0 = shape[0]
    for b in range(1, bounds.shape[0] - 1):
        first = bounds[b] * row
        for i in range(first, first + row):
            if _is_set(packed, i) and _is_set(packed, i - row):
                _merge(parent, out[i], out[i - row])
    if shape.shape[0] > 1 and periodic[0] and n0 > 2:
        last = (n0 - 1) * row
        for i in range(last, last + row):
            if _is_set(packed, i) and _is_set(packed, i - last):
                _merge(parent, out[i], out[i - last])


@njit(cache=True, nogil=True)
def _number_lines(line: Int, packed: np.ndarray, out: np.ndarray, parent: np.ndarray, lo: Int, hi: Int) -> None:
    """Final labels of the lines starting at ``lo .. hi - 1`` (step ``line``), 0 where blocked.

    Vertex by vertex without a branch: a blocked vertex's slot holds no label, so it looks up slot 0 instead
    (whatever that holds is masked off) and writes 0.
    """
    for base in range(lo, hi, line):
        for c0 in range(0, line, 64):
            start = base + c0
            cur = _bits_at(packed, start)
            for j in range(min(64, line - c0)):
                # all ones where open, 0 where blocked
                keep = -np.int32((cur >> np.uint64(j)) & ONE)
                i = start + j
                out[i] = parent[out[i] & keep] & keep


@njit(cache=True, nogil=True, parallel=True)
def label(
    axes: Axes,
    open_mask: np.ndarray,
    out: np.ndarray,
    parent: np.ndarray,
    slabs: Int,
    meter: np.ndarray,
) -> Int:
    """Component labels numbered by lowest index (0 blocked) written into ``out``; returns the count.

    ``open_mask`` holds 0 or 1 per vertex. ``meter[0]`` counts the vertices of the rounds done: the parallel
    slabs (up to ``n``), the join and the numbering (``n`` more each).

    ``parent`` (N,) of ``out``'s dtype is scratch for the label classes; only the labels used are touched.
    The mask is packed 64 vertices a word (N / 8 bytes of scratch) and read as runs. The rows of axis 0 are
    split into ``slabs`` slabs labelled in parallel and then joined; the classes are numbered in label order,
    which is the order of their lowest vertices, so the result does not depend on the split.
    """
    shape, strides = axes[0], axes[1]
    d = shape.shape[0]
    n = open_mask.shape[0]
    n0 = shape[0]
    line = shape[d - 1]
    packed = np.empty(((n + 63) >> 6) + 1, np.uint64)
    _pack_open(open_mask, packed)
    # a 1-D lattice is a single line, labelled in one piece
    parts = max(1, min(slabs, n0)) if d > 1 else 1
    bounds = np.empty(parts + 1, np.int64)
    for b in range(parts + 1):
        bounds[b] = b * n0 // parts
    used = np.zeros(parts, np.int64)
    for b in prange(parts):
        used[b] = _label_slab(axes, packed, out, parent, bounds[b], bounds[b + 1])
    meter[0] = n
    _join_slabs(axes, packed, out, parent, bounds)
    meter[0] = 2 * n
    count = 0
    for b in range(parts):
        first = bounds[b] * strides[0]
        for lab in range(first, first + used[b]):
            root = parent[lab]
            if root == lab:
                count += 1
                parent[lab] = count
            else:
                # root < lab was numbered already and is in the same class
                parent[lab] = parent[root]
    lines = n // line
    pieces = max(1, min(lines, 4 * slabs))
    for piece in prange(pieces):
        _number_lines(line, packed, out, parent, piece * lines // pieces * line, (piece + 1) * lines // pieces * line)
    return count
