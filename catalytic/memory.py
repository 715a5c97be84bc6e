"""Memory accounting and borrow-and-restore scratch memory.

Borrowed scratch
----------------
The idea comes from catalytic computing (Buhrman, Cleve, Koucký, Loff and Speelman, 2014): a computation may
use memory that already holds somebody else's data, provided it hands every bit back. :func:`borrow` makes that
a tested contract for NumPy buffers (a caller's array, another lattice's mask, a ``np.memmap``)::

    with borrow(mask_a, weights_b) as scratch:
        path = shortest_path(lattice, start, goal, scratch=scratch)

Two honest ways to use a lent buffer are offered:

``compress``
    The buffer is compressed (LZ4, in 4 MiB chunks; a chunk that does not shrink is kept raw) into a small
    fresh allocation. Its bytes are then free, and :meth:`Scratch.array` carves arrays out of them. On exit the
    chunks are decompressed back in place. A buffer whose compressed size would exceed ``max_ratio`` of its
    size (judged from the chunks compressed so far, so incompressible data is declined early) is not worth
    lending: it is left untouched, and requests go to fresh memory within ``budget``.
``reversible``
    The buffer keeps its content and the computation changes it only through invertible in-place updates
    (:meth:`Scratch.apply`, for instance key-stream XOR or modular add from :mod:`catalytic.transforms`). Every
    update is journaled by its inverse, not by its data, and the journal is unwound on exit.

``auto`` compresses the buffers that compress to ``max_ratio`` or less and holds the others reversibly.

On every exit of the ``with`` block (normal return, exception, ``KeyboardInterrupt``, cancellation, a
thread's timeout raised inside the block) the lent bytes are restored; with ``verify=True`` (the default) an
xxh3-128 digest taken on entry is compared on exit and :class:`~catalytic.errors.RestoreError` is raised if a
single bit differs. :attr:`Scratch.stats` reports the bytes lent, the compressed size and every cost in seconds.

Memory accounting
-----------------
:func:`lattice_memory_report` and :func:`search_memory_report` set measured bytes against three labelled
baselines an explicit-graph library would need for the same lattice: igraph (32 B per edge + 16 B per
vertex), a CSR adjacency matrix (float64 data, int32 or int64 indices as SciPy would choose) and a dense
adjacency bitmap (N²/8 bytes). :class:`MemoryMeter` measures what a computation allocates.
"""

from __future__ import annotations

import logging
import os
import sys
import time
import tracemalloc
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from types import TracebackType
from typing import Any, ClassVar

import lz4.block
import numpy as np
import xxhash

from catalytic.errors import InvalidInputError, InvalidTypeError, MemoryBudgetError, RestoreError, ScratchError

__all__ = [
    "CHUNK_BYTES",
    "DEFAULT_MAX_RATIO",
    "MODES",
    "MemoryMeter",
    "Scratch",
    "ScratchStats",
    "borrow",
    "buffer_digest",
    "exact_edge_count",
    "lattice_memory_report",
    "memory_baselines",
    "search_memory_report",
]

logger = logging.getLogger(__name__)

MODES = ("auto", "compress", "reversible")
CHUNK_BYTES = 4 * 2**20
"""Compression unit: restoring decompresses one chunk at a time, so exit never needs a full-size temporary."""
DEFAULT_MAX_RATIO = 0.75
"""A buffer is compressed only when its compressed copy takes at most this fraction of its bytes."""
_RESTORE_ATTEMPTS = 3
_INT32_MAX = 2**31 - 1


def _byte_view(array: np.ndarray) -> np.ndarray:
    """The contiguous array's own bytes as a flat writable-or-not uint8 view (no copy)."""
    if array.flags.f_contiguous and not array.flags.c_contiguous:
        return array.reshape(-1, order="F").view(np.uint8)
    return array.reshape(-1).view(np.uint8)


def buffer_digest(array: np.ndarray) -> bytes:
    """The xxh3-128 digest of a contiguous array's raw bytes.

    Parameters
    ----------
    array : numpy.ndarray
        A C- or F-contiguous array of any non-object dtype.

    Returns
    -------
    bytes
        The 16-byte digest.

    Examples
    --------
    >>> len(buffer_digest(np.zeros(3)))
    16
    """
    return xxhash.xxh3_128_digest(_byte_view(array).data)


@dataclass
class ScratchStats:
    """Measured costs of one borrow. Sizes in bytes, times in seconds."""

    mode: str
    buffers: int = 0
    bytes_lent: int = 0
    bytes_compressed: int = 0
    compressed_size: int = 0
    bytes_reversible: int = 0
    bytes_declined: int = 0
    fresh_bytes: int = 0
    digest_s: float = 0.0
    compress_s: float = 0.0
    decompress_s: float = 0.0
    undo_s: float = 0.0
    verify_s: float = 0.0
    updates: int = 0
    verified: bool = False

    @property
    def ratio(self) -> float:
        """Compressed size over the bytes compressed (``nan`` when nothing was compressed)."""
        return self.compressed_size / self.bytes_compressed if self.bytes_compressed else float("nan")

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able copy, with the ratio."""
        return {**asdict(self), "ratio": self.ratio}


@dataclass
class _Region:
    """Freed bytes of a compressed buffer, handed out by a bump pointer."""

    view: np.ndarray
    address: int
    top: int = 0


@dataclass
class _Journal:
    """One invertible update of a buffer held in place, and the buffer's digest before it.

    The digest makes undoing idempotent: a buffer that already matches it was never changed (an update
    interrupted before it ran) or is already undone (a restore interrupted after the inverse ran).
    """

    buffer: int
    backward: Callable[[np.ndarray], object]
    before: bytes


@dataclass
class _Lent:
    array: np.ndarray
    name: str
    how: str = "reversible"
    chunks: list[tuple[bool, bytes, int]] = field(default_factory=list)
    digest: bytes | None = None


def _compress_chunk(chunk: np.ndarray) -> tuple[bool, bytes, int]:
    raw = chunk.data
    packed = lz4.block.compress(raw, store_size=False)
    if len(packed) < chunk.nbytes:
        return True, packed, chunk.nbytes
    return False, raw.tobytes(), chunk.nbytes


class Scratch:
    """Scratch memory carved from lent buffers; handed out by :func:`borrow`.

    Kernels accept it as ``scratch=``. Arrays from :meth:`array` live in the freed bytes of compressed
    buffers, or in fresh memory within the budget when those are full. Buffers held in place change only
    through :meth:`apply`. Everything is undone when the ``with`` block of :func:`borrow` ends.

    Attributes
    ----------
    stats : ScratchStats
        Bytes lent, compressed size and ratio, compress, decompress, undo and verification seconds.
    budget : int or None
        Most bytes of fresh memory this scratch may allocate (compressed copies included); None is unlimited.
    """

    def __init__(self, lent: list[_Lent], mode: str, budget: int | None, max_ratio: float, verify: bool) -> None:
        self._lent = lent
        self._mode = mode
        self.budget = budget
        self._max_ratio = max_ratio
        self._verify = verify
        self._regions: list[_Region] = []
        self._carved: list[np.ndarray] = []
        self._fresh: list[np.ndarray] = []
        self._journal: list[_Journal] = []
        self._open = False
        self.stats = ScratchStats(mode=mode, buffers=len(lent), bytes_lent=sum(b.array.nbytes for b in lent))

    # --- lending ------------------------------------------------------------------------------------

    def _enter(self) -> None:
        t0 = time.perf_counter()
        if self._verify:
            for item in self._lent:
                item.digest = buffer_digest(item.array)
        self.stats.digest_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        for item in self._lent:
            if self._mode != "reversible" and item.array.nbytes:
                self._try_compress(item)
            if item.how == "reversible" and self._mode == "compress":
                item.how = "declined"
            if item.how == "reversible":
                self.stats.bytes_reversible += item.array.nbytes
            elif item.how == "declined":
                self.stats.bytes_declined += item.array.nbytes
        self.stats.compress_s = time.perf_counter() - t0
        self._open = True

    def _try_compress(self, item: _Lent) -> None:
        view = _byte_view(item.array)
        pieces = [view[i : i + CHUNK_BYTES] for i in range(0, view.nbytes, CHUNK_BYTES)]
        limit = self._max_ratio * view.nbytes
        if self.budget is not None:
            limit = min(limit, self.budget - self.stats.fresh_bytes)
        workers = os.cpu_count() or 1
        chunks: list[tuple[bool, bytes, int]] = []
        size = 0
        done = 0
        # lz4 releases the GIL, so a batch of chunks compresses in parallel. The buffer is declined as soon
        # as the ratio so far, carried over the rest, passes the limit: incompressible data is recognised
        # after one batch. A buffer that only compresses late is then held in place, never lost.
        with ThreadPoolExecutor(workers) as pool:
            for start in range(0, len(pieces), workers):
                batch = list(pool.map(_compress_chunk, pieces[start : start + workers]))
                chunks += batch
                size += sum(len(c[1]) for c in batch)
                done += sum(c[2] for c in batch)
                projected = size + (view.nbytes - done) * size / done
                if projected > limit:
                    logger.debug("%s not compressed: %d bytes projected, limit %d", item.name, projected, limit)
                    return
        item.chunks = chunks
        item.how = "compressed"
        self.stats.fresh_bytes += size
        self.stats.bytes_compressed += view.nbytes
        self.stats.compressed_size += size
        self._regions.append(_Region(view, view.__array_interface__["data"][0]))

    # --- the interface kernels use ------------------------------------------------------------------

    @property
    def capacity(self) -> int:
        """Bytes freed by compressed buffers that :meth:`array` can carve from."""
        return sum(r.view.nbytes for r in self._regions)

    @property
    def used(self) -> int:
        """Bytes of the freed capacity carved so far, alignment padding included."""
        return sum(r.top for r in self._regions)

    def _check_open(self) -> None:
        if not self._open:
            raise ScratchError("scratch", "is used outside its borrow() block", "use it inside `with borrow(...)`")

    def array(self, n: int, dtype: Any, fill: Any = None) -> np.ndarray:
        """A contiguous 1-D array of ``n`` elements, carved from freed bytes or freshly allocated.

        Parameters
        ----------
        n : int
            Number of elements, >= 0.
        dtype : numpy dtype-like
            Element type; the array starts at a multiple of its alignment.
        fill : scalar, optional
            Value to fill with; without it the content is arbitrary (like ``np.empty``).

        Returns
        -------
        numpy.ndarray
            A writable array, valid until the borrow ends (it is made read-only then).

        Raises
        ------
        MemoryBudgetError
            Neither the freed bytes nor a fresh allocation within the budget can hold it.
        ScratchError
            ``n`` is negative, or the scratch is used after its borrow ended.

        Examples
        --------
        >>> lent = np.zeros(1 << 16, dtype=np.uint8)
        >>> with borrow(lent) as scratch:
        ...     depth = scratch.array(1000, np.int32, fill=-1)
        ...     int(depth.sum())
        -1000
        """
        self._check_open()
        if isinstance(n, bool) or not isinstance(n, int | np.integer):
            raise InvalidTypeError("n", f"{n!r} is not an integer", "an integer >= 0")
        if n < 0:
            raise ScratchError("n", f"{n} elements requested", "an integer >= 0")
        kind = np.dtype(dtype)
        need = int(n) * kind.itemsize
        out = self._carve(need, kind)
        if out is None:
            if self.budget is not None and self.stats.fresh_bytes + need > self.budget:
                raise MemoryBudgetError(self.stats.fresh_bytes + need, self.budget, "scratch.array")
            out = np.empty(int(n), dtype=kind)
            self._fresh.append(out)
            self.stats.fresh_bytes += need
        else:
            out = out.view(kind)
            self._carved.append(out)
        if fill is not None:
            out.fill(fill)
        return out

    def _carve(self, need: int, kind: np.dtype) -> np.ndarray | None:
        align = max(kind.alignment, 1)
        for region in self._regions:
            start = region.top + (-(region.address + region.top)) % align
            if start + need <= region.view.nbytes:
                region.top = start + need
                return region.view[start : start + need]
        return None

    def check_disjoint(self, *arrays: Any, field: str = "scratch") -> None:
        """Refuse a lent buffer that shares memory with any of ``arrays`` (the computation's inputs or outputs).

        Parameters
        ----------
        *arrays : numpy.ndarray
            Arrays the computation reads or writes; non-arrays and None are skipped.
        field : str
            The field named in the error.

        Raises
        ------
        ScratchError
            A lent buffer overlaps one of the arrays.

        Examples
        --------
        >>> lent, mine = np.zeros(64), np.ones(8)
        >>> with borrow(lent) as scratch:
        ...     scratch.check_disjoint(mine)
        """
        for position, array in enumerate(arrays):
            if not isinstance(array, np.ndarray):
                continue
            for item in self._lent:
                if np.shares_memory(item.array, array):
                    raise ScratchError(
                        field,
                        f"lent {item.name} shares memory with argument {position} of the computation",
                        "lent buffers disjoint from the computation's inputs and outputs",
                    )

    def release(self) -> None:
        """Take back every carved and fresh array; carved ones become read-only so stale writes fail loudly."""
        for array in self._carved:
            array.flags.writeable = False
        self._carved.clear()
        self._fresh.clear()
        for region in self._regions:
            region.top = 0

    # --- reversible updates -------------------------------------------------------------------------

    def held(self) -> list[int]:
        """Positions of the lent buffers held in place, which :meth:`apply` may update."""
        return [i for i, item in enumerate(self._lent) if item.how == "reversible"]

    def apply(
        self,
        forward: Callable[[np.ndarray], object],
        backward: Callable[[np.ndarray], object],
        *,
        buffer: int = 0,
    ) -> np.ndarray:
        """Update a buffer held in place with an invertible in-place function; its inverse runs on exit.

        Only the inverse is journaled, never the data, so the update costs no memory. ``forward`` must change
        the buffer all at once or not at all (a compiled in-place kernel such as
        ``catalytic.transforms.transform(buf, "xor", seed, out=buf)``) and must not be the identity: undoing
        compares the buffer with a digest taken before the update to tell whether the update ran. That costs
        one xxh3 pass over the buffer per update and per undo.

        Parameters
        ----------
        forward, backward : callable
            ``f(array) -> Any``, each changing the array in place, ``backward`` the exact inverse of ``forward``.
        buffer : int
            Position of the lent buffer (see :meth:`held`).

        Returns
        -------
        numpy.ndarray
            The lent buffer, now updated, for the computation to read.

        Raises
        ------
        ScratchError
            The position is not a buffer held in place.

        Examples
        --------
        >>> lent = np.arange(4, dtype=np.uint64)
        >>> def plus(a): a += np.uint64(5)
        >>> def minus(a): a -= np.uint64(5)
        >>> with borrow(lent, mode="reversible") as scratch:
        ...     int(scratch.apply(plus, minus).sum())
        26
        >>> lent.tolist()
        [0, 1, 2, 3]
        """
        self._check_open()
        held = self.held()
        if isinstance(buffer, bool) or not isinstance(buffer, int) or buffer not in held:
            raise ScratchError("buffer", f"{buffer!r} is not a lent buffer held in place", f"one of {held}")
        target = self._lent[buffer].array
        self._journal.append(_Journal(buffer, backward, buffer_digest(target)))
        forward(target)
        self.stats.updates += 1
        return target

    def undo(self) -> None:
        """Undo the latest :meth:`apply` now (for a result read as the difference after/before an update).

        Raises
        ------
        ScratchError
            Nothing to undo.
        """
        self._check_open()
        if not self._journal:
            raise ScratchError("scratch", "has no update to undo", "call apply() first")
        self._undo_last()

    def _undo_last(self) -> None:
        entry = self._journal[-1]
        target = self._lent[entry.buffer].array
        if buffer_digest(target) != entry.before:
            entry.backward(target)
        self._journal.pop()

    # --- restoring ----------------------------------------------------------------------------------

    def _restore_all(self) -> None:
        """Idempotent: each step rewrites lent bytes from the saved chunks or pops one journal entry."""
        self.release()
        self._open = False
        t0 = time.perf_counter()
        while self._journal:
            self._undo_last()
        self.stats.undo_s += time.perf_counter() - t0
        t0 = time.perf_counter()
        for item in self._lent:
            if item.how != "compressed":
                continue
            view = _byte_view(item.array)
            offset = 0
            for packed, data, size in item.chunks:
                chunk = lz4.block.decompress(data, uncompressed_size=size) if packed else data
                view[offset : offset + size] = np.frombuffer(chunk, dtype=np.uint8)
                offset += size
        self.stats.decompress_s += time.perf_counter() - t0

    def _finish(self) -> None:
        interrupt: BaseException | None = None
        for attempt in range(_RESTORE_ATTEMPTS):
            try:
                self._restore_all()
                break
            except BaseException as exc:  # a Ctrl-C during restore must not leave lent bytes half-written
                interrupt = interrupt or exc
                logger.warning("restore attempt %d interrupted by %r; retrying", attempt + 1, exc)
        else:
            raise RestoreError(f"lent buffers could not be restored after {_RESTORE_ATTEMPTS} attempts") from interrupt
        for item in self._lent:
            item.chunks = []
        self._regions.clear()
        if self._verify:
            t0 = time.perf_counter()
            bad = [item.name for item in self._lent if buffer_digest(item.array) != item.digest]
            self.stats.verify_s = time.perf_counter() - t0
            if bad:
                raise RestoreError(f"{', '.join(bad)} did not come back bit for bit (xxh3-128 digest differs)")
            self.stats.verified = True
        if interrupt is not None:
            raise interrupt


def _validate_buffers(buffers: tuple[Any, ...]) -> list[_Lent]:
    allowed = "a writable, C- or F-contiguous numpy array (or np.memmap) of a non-object dtype, not aliased"
    lent: list[_Lent] = []
    for position, array in enumerate(buffers):
        name = f"buffers[{position}]"
        if not isinstance(array, np.ndarray):
            raise InvalidTypeError(name, f"{type(array).__name__} is not a numpy array", allowed)
        if array.dtype.hasobject:
            raise ScratchError(name, f"dtype {array.dtype} holds Python object references", allowed)
        if not array.flags.writeable:
            raise ScratchError(name, "is read-only", allowed)
        if not (array.flags.c_contiguous or array.flags.f_contiguous):
            raise ScratchError(name, "is not contiguous", allowed)
        for earlier in lent:
            if np.shares_memory(earlier.array, array):
                raise ScratchError(name, f"shares memory with {earlier.name}", allowed)
        lent.append(_Lent(array, name))
    return lent


@contextmanager
def borrow(
    *buffers: np.ndarray,
    verify: bool = True,
    budget: int | None = None,
    mode: str = "auto",
    max_ratio: float = DEFAULT_MAX_RATIO,
) -> Iterator[Scratch]:
    """Lend buffers that hold other data to a computation as scratch memory, restored bit for bit on exit.

    Parameters
    ----------
    *buffers : numpy.ndarray
        Writable contiguous arrays (a ``np.memmap`` too), pairwise disjoint.
    verify : bool
        Digest every buffer (xxh3-128) on entry and compare on exit.
    budget : int, optional
        Most bytes of fresh memory the scratch may allocate, compressed copies included. None: unlimited.
    mode : {"auto", "compress", "reversible"}
        How buffers are lent (see the module docstring).
    max_ratio : float
        A buffer is compressed only if its compressed copy is at most this fraction of its size, in (0, 1].

    Yields
    ------
    Scratch
        Pass it to kernels as ``scratch=``.

    Raises
    ------
    ScratchError
        A buffer is read-only, non-contiguous, of object dtype or aliased with another; or a bad ``mode``,
        ``budget`` or ``max_ratio``.
    InvalidTypeError
        A buffer is not a numpy array.
    RestoreError
        With ``verify``, a lent buffer's digest differs after restoring.

    Examples
    --------
    >>> lent = np.zeros(1 << 20, dtype=np.float64)
    >>> lent[::7] = 3.0
    >>> with borrow(lent) as scratch:
    ...     tmp = scratch.array(1000, np.int64, fill=7)
    ...     int(tmp.sum())
    7000
    >>> float(lent[7]), scratch.stats.verified
    (3.0, True)
    """
    if mode not in MODES:
        raise ScratchError("mode", f"{mode!r} is not a lending mode", ", ".join(MODES))
    if budget is not None and (isinstance(budget, bool) or not isinstance(budget, int | np.integer) or budget < 0):
        raise ScratchError("budget", f"{budget!r} is not a byte count", "None or an integer >= 0")
    if isinstance(max_ratio, bool) or not isinstance(max_ratio, int | float) or not 0.0 < max_ratio <= 1.0:
        raise ScratchError("max_ratio", f"{max_ratio!r} is out of range", "a number in (0, 1]")
    scratch = Scratch(
        _validate_buffers(buffers), mode, None if budget is None else int(budget), float(max_ratio), verify
    )
    scratch._enter()
    try:
        yield scratch
    finally:
        scratch._finish()


# --- memory accounting ------------------------------------------------------------------------------


def exact_edge_count(lattice: Any, *, scratch: Any = None) -> int:
    """The number of edges between open vertices: what an explicit graph of the lattice would store.

    Per axis of length n it counts open pairs ``(c, c + 1)``; on a periodic axis it adds the wrap pair
    ``(n - 1, 0)`` only when n >= 3 (for n == 2 the wrap pair is the same edge, for n == 1 a self loop).

    Parameters
    ----------
    lattice : Lattice
        Anything with ``vertices``, ``shape``, ``periodic`` and ``open_mask_flat()``.
    scratch : Scratch, optional
        Lent memory for the one temporary of up to N bytes; the count is identical either way.

    Returns
    -------
    int
        The exact edge count.

    Examples
    --------
    >>> from catalytic.lattice import Lattice
    >>> exact_edge_count(Lattice((3, 3), periodic=[True, False]))
    15
    """
    shape = tuple(lattice.shape)
    open_mask = lattice.open_mask_flat().reshape(shape)
    longest = max(lattice.vertices - lattice.vertices // n for n in shape)
    # One buffer serves every axis: the pair flags of one axis are counted before the next overwrites them.
    flags = np.empty(longest, dtype=np.bool_) if scratch is None else scratch.array(longest, np.bool_)
    total = 0
    for axis, n in enumerate(shape):
        if n < 2:
            continue
        low = open_mask[(slice(None),) * axis + (slice(0, n - 1),)]
        high = open_mask[(slice(None),) * axis + (slice(1, n),)]
        pairs = flags[: low.size].reshape(low.shape)
        np.logical_and(low, high, out=pairs)
        total += int(np.count_nonzero(pairs))
        if lattice.periodic[axis] and n >= 3:
            first = open_mask[(slice(None),) * axis + (0,)]
            last = open_mask[(slice(None),) * axis + (n - 1,)]
            total += int(np.count_nonzero(first & last))
    return total


def memory_baselines(vertices: int, edges: int) -> dict[str, dict[str, Any]]:
    """Bytes an explicit graph of ``vertices`` and ``edges`` (undirected) takes in three representations.

    Parameters
    ----------
    vertices, edges : int
        Vertex and undirected edge counts.

    Returns
    -------
    dict
        ``igraph`` (32 B per edge + 16 B per vertex), ``csr`` (float64 data and indices for both directions,
        indptr of V + 1; index dtype int32 when nnz and V fit, else int64, as SciPy chooses) and
        ``dense_bitmap`` (ceil(V² / 8)); each with ``bytes`` and ``formula``.

    Examples
    --------
    >>> memory_baselines(4, 4)["igraph"]["bytes"]
    192
    """
    nnz = 2 * edges
    index_bytes = 4 if max(nnz, vertices) <= _INT32_MAX else 8
    index_name = "int32" if index_bytes == 4 else "int64"
    return {
        "igraph": {"bytes": 32 * edges + 16 * vertices, "formula": "32 B × edges + 16 B × vertices"},
        "csr": {
            "bytes": 8 * nnz + index_bytes * nnz + index_bytes * (vertices + 1),
            "formula": f"float64 data + {index_name} indices (2 × edges entries) + {index_name} indptr (V + 1)",
            "index_dtype": index_name,
        },
        "dense_bitmap": {"bytes": (vertices * vertices + 7) // 8, "formula": "ceil(V² / 8)"},
    }


def _ratio(baseline: int, measured: int) -> float | None:
    return baseline / measured if measured > 0 else None


def lattice_memory_report(lattice: Any) -> dict[str, Any]:
    """Bytes a lattice really holds, against what an explicit graph of it would take.

    The open mask is materialised first (any computation needs it), so the measured bytes include it.

    Parameters
    ----------
    lattice : Lattice
        Anything with ``vertices``, ``shape``, ``periodic``, ``blocked``, ``weights``, ``obstacles`` and
        ``open_mask_flat()``.

    Returns
    -------
    dict
        ``vertices``, ``edges``, ``measured`` (``arrays``: nbytes of the blocked mask, weights and cached open
        mask; ``object``: shallow sizes of the object and its small attributes; ``bytes``: their sum),
        ``baselines`` (see :func:`memory_baselines`) and ``memory_efficiency_ratio`` = igraph bytes / measured.

    Examples
    --------
    >>> from catalytic.lattice import Lattice
    >>> report = lattice_memory_report(Lattice((8, 8)))
    >>> report["edges"], report["measured"]["arrays"]["open_mask"]
    (112, 64)
    """
    was_cached = getattr(lattice, "_open_mask", None) is not None
    edges = exact_edge_count(lattice)
    arrays = {}
    for name, array in (
        ("blocked", lattice.blocked),
        ("weights", lattice.weights),
        ("open_mask", getattr(lattice, "_open_mask", None)),
    ):
        arrays[name] = 0 if array is None else int(array.nbytes)
    small = [lattice, lattice.shape, lattice.periodic, lattice.obstacles, *lattice.obstacles]
    object_bytes = sum(sys.getsizeof(part) for part in small)
    measured = sum(arrays.values()) + object_bytes
    baselines = memory_baselines(int(lattice.vertices), edges)
    return {
        "vertices": int(lattice.vertices),
        "edges": edges,
        "open_mask_was_cached": was_cached,
        "measured": {"arrays": arrays, "object": object_bytes, "bytes": measured},
        "baselines": baselines,
        "memory_efficiency_ratio": _ratio(baselines["igraph"]["bytes"], measured),
    }


def search_memory_report(measured_bytes: int, lattice: Any, what: str = "search") -> dict[str, Any]:
    """A computation's measured bytes against the three explicit-graph baselines of its lattice.

    Parameters
    ----------
    measured_bytes : int
        Bytes the computation allocated (for instance ``MemoryMeter.measured_bytes``), >= 0.
    lattice : Lattice
        The lattice it ran on (duck-typed as in :func:`lattice_memory_report`).
    what : str
        A label for the computation.

    Returns
    -------
    dict
        ``what``, ``measured_bytes``, ``vertices``, ``edges``, ``baselines`` and ``ratios`` (baseline bytes /
        measured bytes for each; None when nothing was measured).

    Raises
    ------
    InvalidTypeError
        ``measured_bytes`` is not an integer.
    InvalidInputError
        ``measured_bytes`` is negative.

    Examples
    --------
    >>> from catalytic.lattice import Lattice
    >>> search_memory_report(100, Lattice((10, 10)))["ratios"]["igraph"]
    73.6
    """
    if isinstance(measured_bytes, bool) or not isinstance(measured_bytes, int | np.integer):
        raise InvalidTypeError("measured_bytes", f"{measured_bytes!r} is not an integer", "an integer >= 0")
    if measured_bytes < 0:
        raise InvalidInputError("measured_bytes", f"{measured_bytes} is negative", "an integer >= 0")
    edges = exact_edge_count(lattice)
    baselines = memory_baselines(int(lattice.vertices), edges)
    return {
        "what": what,
        "measured_bytes": int(measured_bytes),
        "vertices": int(lattice.vertices),
        "edges": edges,
        "baselines": baselines,
        "ratios": {name: _ratio(b["bytes"], int(measured_bytes)) for name, b in baselines.items()},
    }


class MemoryMeter:
    """Measure what a computation allocates: the tracemalloc peak plus explicitly tracked arrays.

    tracemalloc sees NumPy's allocations; arrays it cannot see (numba or CuPy allocations, memory maps,
    lent scratch) are added with :meth:`track`. Track only those, or they count twice. Meters nest; they
    are meant for one thread at a time, as tracemalloc's peak is process-wide.

    Attributes
    ----------
    traced_peak : int
        Peak traced bytes above the level on entry.
    tracked : int
        Sum of the tracked arrays' nbytes.
    seconds : float
        Wall time inside the block.

    Examples
    --------
    >>> with MemoryMeter() as meter:
    ...     block = np.ones(1 << 20, dtype=np.uint8)
    >>> meter.measured_bytes >= 1 << 20
    True
    """

    _active: ClassVar[list[MemoryMeter]] = []

    def __init__(self) -> None:
        self.traced_peak = 0
        self.tracked = 0
        self.seconds = 0.0
        self._started_here = False
        self._base = 0
        self._peak_seen = 0
        self._t0 = 0.0

    def __enter__(self) -> MemoryMeter:
        if not tracemalloc.is_tracing():
            tracemalloc.start()
            self._started_here = True
        current, peak = tracemalloc.get_traced_memory()
        # Resetting the peak would hide the enclosing meters' peak so far: hand it to them first.
        for outer in MemoryMeter._active:
            outer._peak_seen = max(outer._peak_seen, peak)
        tracemalloc.reset_peak()
        self._base = current
        self._peak_seen = current
        MemoryMeter._active.append(self)
        self._t0 = time.perf_counter()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.seconds = time.perf_counter() - self._t0
        peak = max(self._peak_seen, tracemalloc.get_traced_memory()[1])
        self.traced_peak = max(0, peak - self._base)
        MemoryMeter._active.remove(self)
        for outer in MemoryMeter._active:
            outer._peak_seen = max(outer._peak_seen, peak)
        if self._started_here:
            tracemalloc.stop()

    def track(self, *arrays: Any) -> None:
        """Add arrays tracemalloc cannot see (anything with ``nbytes``)."""
        self.tracked += sum(int(a.nbytes) for a in arrays if a is not None)

    @property
    def measured_bytes(self) -> int:
        """Traced peak plus tracked bytes."""
        return self.traced_peak + self.tracked

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able summary."""
        return {
            "traced_peak": self.traced_peak,
            "tracked": self.tracked,
            "measured_bytes": self.measured_bytes,
            "seconds": self.seconds,
        }
