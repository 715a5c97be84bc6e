"""numba.cuda kernels of the GPU backend (:mod:`catalytic.kernels.cupy_backend`).

The kernels take any array that numba.cuda accepts: CuPy arrays on a real device (through
``__cuda_array_interface__``) and NumPy host arrays under the simulator (``NUMBA_ENABLE_CUDASIM=1``), so the
same code is exercised in CI without a GPU. Importing this module imports numba.cuda, which is why the backend
imports it only when it is instantiated.

Layout shared by the kernels
----------------------------
* Geometry: ``shape``, ``strides`` and ``periodic`` as int64 device arrays of ``d`` entries.
* Bit sets (frontiers, visited): uint32 words, vertex ``i`` at bit ``i & 31`` of word ``i >> 5``. On a
  little-endian device this is the same memory layout as the uint8 ``open_bits`` of the interface.
* Frugal state: uint32 words of 16 two-bit fields, vertex ``i`` at bits ``2 * (i & 15)`` of word ``i >> 4``,
  the same memory as the uint8 state of the interface (bits ``2 * (i & 3)`` of byte ``i >> 2``).
* Level rings: three frontiers, and ``flags`` (int32, 2 x 3: "not empty" and "hit"), indexed by ``level % 3``.
  Level ``L`` reads ring ``L % 3``, writes ring ``(L + 1) % 3`` and clears ring ``(L + 2) % 3``, whose last
  readers finished before the barrier that ended level ``L - 1``; so one barrier per level suffices, and the
  flags a thread reads after a barrier cannot change under it while faster threads start the next level.
  "Hit" is set when a level labels the target, or a vertex the other side of a bidirectional search already
  labelled.
* ``control`` (int64, 5 entries): ``[level reached, done, expanded, discovered, hit]``, for the host.
* SSSP (weighted Dijkstra's costs): ``pending`` and ``reached`` bit sets over the vertices; a pending vertex
  has a cost lowered since it last relaxed its neighbours, a reached one is a source or was ever lowered.
  ``sssp_control`` (int64, 2 entries): ``[relaxed this pass, settled]``; ``far`` (float64, 1 entry): the least
  cost of a pending vertex left for a later pass.

The whole-level BFS and the frugal BFS share one frontier walk (:func:`_expand_level`) and one pair of level
kernels; they differ only in how a neighbour is claimed (:func:`_claim`): a visited bit and a distance, or a
2-bit state. The search's arrays travel as ``visited, dist, open_bits, words, frugal``, with one-entry stand-ins
in the places a search does not read. Both path walks share :func:`_predecessor` the same way.

Uint64 arithmetic of the obstacle hash is done on 32-bit halves: every intermediate fits in 64 bits, so the
simulator (which runs the kernels on NumPy scalars that warn on overflow) and the device compute the same
wrapped products.
"""

# Kernel bodies are numba.cuda code, not Python that mypy can follow: numba-cuda's stubs describe the host API
# (cuda.grid takes a compile-time int, atomics take typed arrays), so the module opts out of type checking.
# mypy: ignore-errors

from __future__ import annotations

import numpy as np
from numba import cuda

from catalytic.kernels._rules import box_holds
from catalytic.lattice import MAX_AXES

__all__ = [
    "bidirectional_levels",
    "degree_histogram",
    "expand_level",
    "expand_levels",
    "init_frugal",
    "init_visited",
    "label_compress",
    "label_hook",
    "label_init",
    "label_number",
    "label_roots",
    "mark_sources",
    "open_flags",
    "sssp_relax",
    "sssp_settled",
    "sssp_tentative",
    "trace",
    "trace_frugal",
]

_LOW32 = np.uint64(0xFFFFFFFF)
_SHIFT32 = np.uint64(32)
_GAMMA = np.uint64(0x9E3779B97F4A7C15)
_MUL1 = np.uint64(0xBF58476D1CE4E5B9)
_MUL2 = np.uint64(0x94D049BB133111EB)
_ONE64 = np.uint64(1)
_SHIFT11 = np.uint64(11)
_SHIFT27 = np.uint64(27)
_SHIFT30 = np.uint64(30)
_SHIFT31 = np.uint64(31)
_BIT = np.uint32(1)
_FIELD = np.uint32(3)
_MAX_DEGREE = 2 * MAX_AXES + 1  # histogram bins


# --- device helpers --------------------------------------------------------------------------------------


@cuda.jit(device=True)
def _mul64(a, b):
    a_lo = a & _LOW32
    a_hi = a >> _SHIFT32
    b_lo = b & _LOW32
    b_hi = b >> _SHIFT32
    low = a_lo * b_lo
    cross = ((a_hi * b_lo) & _LOW32) + ((a_lo * b_hi) & _LOW32)
    high = ((low >> _SHIFT32) + cross) & _LOW32
    return (high << _SHIFT32) | (low & _LOW32)


@cuda.jit(device=True)
def _add64(a, b):
    low = (a & _LOW32) + (b & _LOW32)
    high = ((a >> _SHIFT32) + (b >> _SHIFT32) + (low >> _SHIFT32)) & _LOW32
    return (high << _SHIFT32) | (low & _LOW32)


@cuda.jit(device=True)
def _splitmix64(seed, index):
    z = _add64(seed, _mul64(np.uint64(index) + _ONE64, _GAMMA))
    z = _mul64(z ^ (z >> _SHIFT30), _MUL1)
    z = _mul64(z ^ (z >> _SHIFT27), _MUL2)
    return z ^ (z >> _SHIFT31)


_box_holds = cuda.jit(device=True)(box_holds)


@cuda.jit(device=True)
def _vertex_open(v, shape, strides, seeds, thresholds, n_random, box_lo, box_hi, n_boxes, explicit, has_explicit):
    if has_explicit and explicit[v] != 0:
        return False
    for r in range(n_random):
        if (_splitmix64(seeds[r], v) >> _SHIFT11) < thresholds[r]:
            return False
    if n_boxes > 0:
        coords = cuda.local.array(MAX_AXES, np.int64)
        rem = v
        for k in range(shape.size):
            coords[k] = rem // strides[k]
            rem -= coords[k] * strides[k]
        for b in range(n_boxes):
            if _box_holds(box_lo, box_hi, b, coords, shape.size):
                return False
    return True


@cuda.jit(device=True)
def _step(v, c, k, plus, shape, strides, periodic):
    """Neighbour of ``v`` (coordinate ``c`` on axis ``k``) one step down or up; −1 off an open border."""
    n = shape[k]
    if plus:
        if c < n - 1:
            return v + strides[k]
        if periodic[k] != 0:
            return v - (n - 1) * strides[k]
        return -1
    if c > 0:
        return v - strides[k]
    if periodic[k] != 0:
        return v + (n - 1) * strides[k]
    return -1


@cuda.jit(device=True)
def _bit_claim(words, u):
    """Set bit ``u``; True for the one thread that set it first."""
    word = u >> 5
    bit = _BIT << np.uint32(u & 31)
    if words[word] & bit:
        return False
    old = cuda.atomic.or_(words, word, bit)
    return (old & bit) == 0


@cuda.jit(device=True)
def _field(words, u):
    return (words[u >> 4] >> np.uint32(2 * (u & 15))) & _FIELD


@cuda.jit(device=True)
def _bit_open(open_bits, u):
    return (open_bits[u >> 3] >> np.uint8(u & 7)) & np.uint8(1)


@cuda.jit(device=True)
def _claim(u, depth, visited, dist, open_bits, words, frugal):
    """Whether this thread labels ``u`` at ``depth``, and label it.

    BFS claims the visited bit (blocked vertices start claimed) and writes ``dist[u]``; the frugal search
    claims an open vertex's zero 2-bit state by setting it to ``1 + depth % 3``.
    """
    if frugal:
        if _bit_open(open_bits, u) == 0 or _field(words, u) != 0:
            return False
        shift = np.uint32(2 * (u & 15))
        previous = cuda.atomic.or_(words, u >> 4, np.uint32(1 + depth % 3) << shift)
        return ((previous >> shift) & _FIELD) == 0
    if _bit_claim(visited, u):
        dist[u] = depth
        return True
    return False


@cuda.jit(device=True)
def _expand_level(
    shape, strides, periodic, rings, flags, level, target, other, has_other, visited, dist, open_bits, words, frugal
):
    """Expand the frontier of ``level`` (ring ``level % 3``); returns (expanded, discovered) of this thread.

    The frontier is a bit ring in both searches (in the frugal one, depths three apart share a state, so the
    state cannot tell the frontier).
    """
    tid = cuda.grid(1)
    nthreads = cuda.gridsize(1)
    nwords = rings.shape[1]
    cur = level % 3
    nxt = (level + 1) % 3
    old = (level + 2) % 3
    for w in range(tid, nwords, nthreads):
        rings[old, w] = 0
    if tid == 0:
        flags[0, old] = 0
        flags[1, old] = 0
    expanded = 0
    discovered = 0
    depth = level + 1
    for w in range(tid, nwords, nthreads):
        bits = rings[cur, w]
        b = 0
        while bits != 0:
            if bits & _BIT:
                v = w * 32 + b
                expanded += 1
                rem = v
                for k in range(shape.size):
                    c = rem // strides[k]
                    rem -= c * strides[k]
                    if shape[k] == 1:
                        continue
                    for plus in range(2):
                        u = _step(v, c, k, plus, shape, strides, periodic)
                        if u >= 0 and _claim(u, depth, visited, dist, open_bits, words, frugal):
                            cuda.atomic.or_(rings, (nxt, u >> 5), _BIT << np.uint32(u & 31))
                            flags[0, nxt] = 1
                            discovered += 1
                            if u == target or (has_other and other[u] >= 0):
                                flags[1, nxt] = 1
            bits = bits >> _BIT
            b += 1
    return expanded, discovered


@cuda.jit(device=True)
def _precedes(u, frugal, mask, dist, here, step, integral, words, wanted):
    """Whether ``u`` precedes the vertex a path walk stands on.

    A frugal walk wants an open vertex (bit in ``mask``) whose state is ``wanted``; a distance walk an open
    vertex (byte in ``mask``) one cost closer: ``dist[u] + step == here``.
    """
    if frugal:
        return _bit_open(mask, u) != 0 and _field(words, u) == wanted
    if mask[u] == 0:
        return False
    if integral:
        return dist[u] >= 0 and dist[u] + 1 == here
    return dist[u] != np.inf and dist[u] + step == here


@cuda.jit(device=True)
def _predecessor(v, shape, strides, periodic, frugal, mask, dist, here, step, integral, words, wanted):
    """The first neighbour of ``v`` in canonical order that :func:`_precedes` accepts, or −1."""
    rem = v
    for k in range(shape.size):
        c = rem // strides[k]
        rem -= c * strides[k]
        for plus in range(2):
            u = _step(v, c, k, plus, shape, strides, periodic)
            if u >= 0 and _precedes(u, frugal, mask, dist, here, step, integral, words, wanted):
                return u
    return -1


# --- lattice ---------------------------------------------------------------------------------------------


@cuda.jit(cache=True)
def open_flags(
    shape, strides, seeds, thresholds, n_random, box_lo, box_hi, n_boxes, explicit, has_explicit, n, per, out
):
    """The open mask: ``per = 1`` writes 1 or 0 per vertex, ``per = 8`` packs 8 vertices a byte (bit ``v & 7``).

    A vertex is open unless the hash generators, the inclusive boxes or the explicit mask block it; one thread
    writes one entry of ``out``.
    """
    for i in range(cuda.grid(1), out.size, cuda.gridsize(1)):
        packed = 0
        for b in range(per):
            v = i * per + b
            if v < n and _vertex_open(
                v, shape, strides, seeds, thresholds, n_random, box_lo, box_hi, n_boxes, explicit, has_explicit
            ):
                packed |= 1 << b
        out[i] = packed


@cuda.jit(cache=True)
def degree_histogram(shape, strides, periodic, open_mask, histogram):
    """Add to ``histogram[k]`` the open vertices with ``k`` distinct open neighbours (per-thread tallies)."""
    local = cuda.local.array(_MAX_DEGREE, np.int64)
    for i in range(_MAX_DEGREE):
        local[i] = 0
    for v in range(cuda.grid(1), open_mask.size, cuda.gridsize(1)):
        if open_mask[v] == 0:
            continue
        degree = 0
        for k in range(shape.size):
            # A periodic axis of length 2 reaches one vertex both ways; one of length 1 reaches v itself.
            sides = 0 if shape[k] == 1 else (1 if shape[k] == 2 and periodic[k] != 0 else 2)
            c = (v // strides[k]) % shape[k]
            for plus in range(sides):
                u = _step(v, c, k, plus, shape, strides, periodic)
                if u >= 0 and open_mask[u] != 0:
                    degree += 1
        local[degree] += 1
    for i in range(histogram.size):
        if local[i] != 0:
            cuda.atomic.add(histogram, i, local[i])


# --- whole-level BFS and frugal BFS ----------------------------------------------------------------------


@cuda.jit(cache=True)
def init_visited(open_mask, visited):
    """Visited bits start as "blocked or past the end" so that only open vertices can be claimed."""
    n = open_mask.size
    for w in range(cuda.grid(1), visited.size, cuda.gridsize(1)):
        bits = np.uint32(0)
        for b in range(32):
            v = w * 32 + b
            if v >= n or open_mask[v] == 0:
                bits |= _BIT << np.uint32(b)
        visited[w] = bits


@cuda.jit(cache=True)
def mark_sources(sources, visited, rings, dist):
    """Label the sources at depth 0 and put them in the level-0 frontier."""
    for i in range(cuda.grid(1), sources.size, cuda.gridsize(1)):
        s = sources[i]
        bit = _BIT << np.uint32(s & 31)
        cuda.atomic.or_(visited, s >> 5, bit)
        cuda.atomic.or_(rings, (0, s >> 5), bit)
        dist[s] = 0


@cuda.jit(cache=True)
def init_frugal(words, rings, start):
    """Label ``start`` at depth 0 (state 1) and make it the level-0 frontier."""
    if cuda.grid(1) == 0:
        cuda.atomic.or_(words, start >> 4, _BIT << np.uint32(2 * (start & 15)))
        cuda.atomic.or_(rings, (0, start >> 5), _BIT << np.uint32(start & 31))


@cuda.jit(cache=True)
def expand_level(
    shape, strides, periodic, rings, flags, control, level, target, other, has_other, visited, dist, open_bits,
    words, frugal,
):  # fmt: skip
    """One level per launch (the bidirectional search, and the fallback when cooperative launch is off)."""
    expanded, discovered = _expand_level(
        shape, strides, periodic, rings, flags, level, target, other, has_other, visited, dist, open_bits, words,
        frugal,
    )  # fmt: skip
    cuda.atomic.add(control, 2, expanded)
    cuda.atomic.add(control, 3, discovered)


@cuda.jit(cache=True)
def expand_levels(
    shape, strides, periodic, rings, flags, control, level, target, max_levels, visited, dist, open_bits, words,
    frugal,
):  # fmt: skip
    """Up to ``max_levels`` levels in one cooperative launch, with a grid-wide barrier between levels.

    Every thread reads the same flags after the barrier, so all of them leave the loop together.
    """
    grid = cuda.cg.this_grid()
    tid = cuda.grid(1)
    expanded = 0
    discovered = 0
    done = 0
    for _ in range(max_levels):
        e, d = _expand_level(
            shape, strides, periodic, rings, flags, level, target, dist, 0, visited, dist, open_bits, words, frugal
        )
        expanded += e
        discovered += d
        grid.sync()
        level += 1
        if flags[0, level % 3] == 0 or flags[1, level % 3] != 0:
            done = 1
            break
    cuda.atomic.add(control, 2, expanded)
    cuda.atomic.add(control, 3, discovered)
    if tid == 0:
        control[0] = level
        control[1] = done
        control[4] = flags[1, level % 3]


@cuda.jit(cache=True)
def bidirectional_levels(
    shape, strides, periodic, rings, visited, dist_start, dist_goal, flags, counts, control, max_levels
):
    """Up to ``max_levels`` rounds of bidirectional BFS in one cooperative launch.

    Side 0 searches from the start, side 1 from the goal; ``rings``, ``visited`` and ``flags`` stack the two
    sides, and ``counts[side, level % 3]`` is the size of a side's frontier at that level. Each round expands
    the side with the smaller frontier (the start side on a tie). A round's counts are read after the barrier
    and the next round only clears or writes other ring slots, so every thread takes the same decisions.
    ``control``: ``[start level, goal level, done, expanded, last side]``.
    """
    grid = cuda.cg.this_grid()
    tid = cuda.grid(1)
    level_start = control[0]
    level_goal = control[1]
    expanded = 0
    done = 0
    side = 0
    for _ in range(max_levels):
        side = 0 if counts[0, level_start % 3] <= counts[1, level_goal % 3] else 1
        level = level_start if side == 0 else level_goal
        if tid == 0:
            counts[side, (level + 2) % 3] = 0
        own, other = (dist_start, dist_goal) if side == 0 else (dist_goal, dist_start)
        e, d = _expand_level(
            shape, strides, periodic, rings[side], flags[side], level, -1, other, 1, visited[side], own,
            visited[side], visited[side], False,
        )  # fmt: skip
        expanded += e
        if d > 0:
            cuda.atomic.add(counts, (side, (level + 1) % 3), d)
        grid.sync()
        level += 1
        if side == 0:
            level_start = level
        else:
            level_goal = level
        if flags[side, 1, level % 3] != 0 or counts[side, level % 3] == 0:
            done = 1
            break
    cuda.atomic.add(control, 3, expanded)
    if tid == 0:
        control[0] = level_start
        control[1] = level_goal
        control[2] = done
        control[4] = side


# --- weighted single-source shortest paths (near-far relaxation) -----------------------------------------


@cuda.jit(device=True)
def _entry_cost(weights, weighted, u):
    """What entering ``u`` costs: its weight, or 1.0 on an unweighted lattice (as the reference adds it)."""
    if weighted:
        return weights[u]
    return 1.0


@cuda.jit(cache=True)
def sssp_relax(shape, strides, periodic, open_mask, weights, weighted, pending, reached, dist, limit, control, far):
    """One near-far pass: every pending vertex whose cost is below ``limit`` relaxes its open neighbours.

    A neighbour's candidate is ``dist[v] + cost(u)``, the very float64 sum the reference's heap loop forms, and
    it is kept by an atomic minimum only when strictly lower; a lowered neighbour becomes pending (and reached).
    Whatever the order of the passes, the costs reach the one fixed point the reference's Dijkstra reaches
    (see :mod:`catalytic.kernels.cupy_backend`). Pending vertices at or above ``limit`` wait: ``far[0]``
    becomes the least of their costs, which the host reads when a pass relaxed nothing.
    """
    relaxed = 0
    nearest_far = np.inf  # one atomic per thread, not one per waiting vertex on a single address
    for w in range(cuda.grid(1), pending.size, cuda.gridsize(1)):
        bits = pending[w]
        if bits == 0:
            continue
        near = np.uint32(0)
        b = 0
        scan = bits
        while scan != 0:
            if scan & _BIT:
                cost = dist[w * 32 + b]
                if cost < limit:
                    near |= _BIT << np.uint32(b)
                elif cost < nearest_far:
                    nearest_far = cost
            scan = scan >> _BIT
            b += 1
        if near == 0:
            continue
        # Cleared before the costs are read: a vertex lowered again meanwhile is pending again, and relaxes again.
        cuda.atomic.and_(pending, w, ~near)
        b = 0
        while near != 0:
            if near & _BIT:
                v = w * 32 + b
                # An atomic read: another block may have lowered the cost in this launch, and a plain load may
                # come from this multiprocessor's cache. Adding 0.0 to a cost leaves it as it is.
                g = cuda.atomic.add(dist, v, 0.0)
                relaxed += 1
                rem = v
                for k in range(shape.size):
                    c = rem // strides[k]
                    rem -= c * strides[k]
                    if shape[k] == 1:
                        continue
                    for plus in range(2):
                        u = _step(v, c, k, plus, shape, strides, periodic)
                        if u < 0 or open_mask[u] == 0:
                            continue
                        candidate = g + _entry_cost(weights, weighted, u)
                        if candidate < dist[u]:
                            old = cuda.atomic.min(dist, u, candidate)
                            if candidate < old:
                                # the lowered cost is visible before anyone can see the vertex pending
                                cuda.threadfence()
                                bit = _BIT << np.uint32(u & 31)
                                cuda.atomic.or_(reached, u >> 5, bit)
                                cuda.atomic.or_(pending, u >> 5, bit)
            near = near >> _BIT
            b += 1
    if relaxed:
        cuda.atomic.add(control, 0, relaxed)
    if nearest_far < far[0]:
        cuda.atomic.min(far, 0, nearest_far)


@cuda.jit(cache=True)
def sssp_settled(dist, reached, target_cost, target, settled, control):
    """The vertices the reference settles before it stops: reached, with ``(cost, index) <= (target_cost, target)``.

    ``settled`` gets their bits and ``control[1]`` their count (``expanded``); ``target_cost = inf`` with
    ``target`` past the last index takes every reached vertex (a search run to exhaustion).
    """
    count = 0
    for w in range(cuda.grid(1), reached.size, cuda.gridsize(1)):
        bits = reached[w]
        out = np.uint32(0)
        b = 0
        while bits != 0:
            if bits & _BIT:
                v = w * 32 + b
                cost = dist[v]
                if cost < target_cost or (cost == target_cost and v <= target):
                    out |= _BIT << np.uint32(b)
                    count += 1
            bits = bits >> _BIT
            b += 1
        settled[w] = out
    if count:
        cuda.atomic.add(control, 1, count)


@cuda.jit(cache=True)
def sssp_tentative(shape, strides, periodic, open_mask, weights, weighted, settled, target, bounds, has_bounds, dist):
    """Give every open vertex the reference did not settle the cost its heap loop left there when it stopped.

    That is its starting bound (``bounds``, or inf) lowered by ``dist[v] + cost(u)`` of each settled neighbour
    ``v`` but the target (the reference stops as it settles the target, before relaxing from it). Only
    unsettled entries are written and only settled ones are read, so threads never race.
    """
    for u in range(cuda.grid(1), open_mask.size, cuda.gridsize(1)):
        if open_mask[u] == 0 or (settled[u >> 5] >> np.uint32(u & 31)) & _BIT:
            continue
        best = bounds[u] if has_bounds else np.inf
        entry = _entry_cost(weights, weighted, u)
        rem = u
        for k in range(shape.size):
            c = rem // strides[k]
            rem -= c * strides[k]
            if shape[k] == 1:
                continue
            for plus in range(2):
                v = _step(u, c, k, plus, shape, strides, periodic)
                if v >= 0 and v != target and (settled[v >> 5] >> np.uint32(v & 31)) & _BIT:
                    candidate = dist[v] + entry
                    if candidate < best:
                        best = candidate
        dist[u] = best


# --- components ------------------------------------------------------------------------------------------


@cuda.jit(device=True)
def _root(parent, v):
    while parent[v] != v:
        v = parent[v]
    return v


@cuda.jit(cache=True)
def label_init(parent):
    """Every vertex starts as its own root."""
    for v in range(cuda.grid(1), parent.size, cuda.gridsize(1)):
        parent[v] = v


@cuda.jit(cache=True)
def label_hook(shape, strides, periodic, open_mask, parent, changed):
    """Hook the larger root of every open edge under the smaller one; parents only ever decrease."""
    for v in range(cuda.grid(1), open_mask.size, cuda.gridsize(1)):
        if open_mask[v] == 0:
            continue
        rem = v
        root_v = -1
        for k in range(shape.size):
            c = rem // strides[k]
            rem -= c * strides[k]
            u = _step(v, c, k, 1, shape, strides, periodic)
            if u < 0 or u == v or open_mask[u] == 0:
                continue
            if root_v < 0:
                root_v = _root(parent, v)
            root_u = _root(parent, u)
            if root_v != root_u:
                cuda.atomic.min(parent, max(root_v, root_u), min(root_v, root_u))
                changed[0] = 1
                # The hook may have moved v's root; find it again for the next edge.
                root_v = _root(parent, v)


@cuda.jit(cache=True)
def label_compress(parent):
    """Point every vertex straight at its root (pointer jumping)."""
    for v in range(cuda.grid(1), parent.size, cuda.gridsize(1)):
        parent[v] = _root(parent, v)


@cuda.jit(cache=True)
def label_roots(open_mask, parent, roots, counts):
    """Bit ``v`` of ``roots``: ``v`` is open and its own root; ``counts[w]``: the roots in word ``w``."""
    n = open_mask.size
    for w in range(cuda.grid(1), roots.size, cuda.gridsize(1)):
        bits = np.uint32(0)
        found = 0
        for b in range(32):
            v = w * 32 + b
            if v < n and open_mask[v] != 0 and parent[v] == v:
                bits |= _BIT << np.uint32(b)
                found += 1
        roots[w] = bits
        counts[w] = found


@cuda.jit(cache=True)
def label_number(open_mask, roots, offsets, parent):
    """In place, each open vertex's root becomes its label: 1 + the roots of lower index; blocked becomes 0.

    ``offsets`` is the inclusive prefix sum of the roots per word. A thread reads and writes only its own
    vertex's entry of ``parent``, so the labels can overwrite the roots.
    """
    for v in range(cuda.grid(1), parent.size, cuda.gridsize(1)):
        if open_mask[v] == 0:
            parent[v] = 0
            continue
        root = parent[v]
        w = root >> 5
        below = roots[w] & ((_BIT << np.uint32(root & 31)) - _BIT)
        rank = cuda.popc(below)
        if w > 0:
            rank += offsets[w - 1]
        parent[v] = rank + 1


# --- path walks (one thread: a path is short next to the lattice) ----------------------------------------


@cuda.jit(cache=True)
def trace(shape, strides, periodic, open_mask, dist, weights, weighted, integral, root, vertex, lo, hi, out, count):
    """Canonical path ``vertex .. root`` into ``out``; it also ends at its first vertex outside ``lo .. hi - 1``.

    ``count[0]`` is its length, −1 without a predecessor, −2 when ``out`` is too short.
    """
    if cuda.grid(1) != 0:
        return
    v = vertex
    out[0] = v
    size = 1
    while v != root and v >= lo and v < hi:
        if size >= out.size:
            count[0] = -2
            return
        step = 1.0
        if weighted:
            step = weights[v]
        v = _predecessor(v, shape, strides, periodic, False, open_mask, dist, dist[v], step, integral, open_mask, 0)
        if v < 0:
            count[0] = -1
            return
        out[size] = v
        size += 1
    count[0] = size


@cuda.jit(cache=True)
def trace_frugal(shape, strides, periodic, open_bits, words, start, goal, length, out, count):
    """Canonical path ``goal .. start`` from depth-mod-3 states; ``count[0]`` −1 when the walk breaks off."""
    if cuda.grid(1) != 0:
        return
    v = goal
    out[0] = v
    for r in range(length, 0, -1):
        wanted = np.uint32(1 + (r - 1) % 3)
        v = _predecessor(v, shape, strides, periodic, True, open_bits, words, 0, 0.0, 1, words, wanted)
        if v < 0:
            count[0] = -1
            return
        out[length - r + 1] = v
    count[0] = length + 1 if v == start else -1
