"""The peers: other libraries timed on the kernels suite's lattices, in one registry, and how their rows are timed.

Adding a peer: write a module here that declares ``PEERS = (Peer(name, {key: Query(...)}, build),)`` (see
:mod:`bench.kernels.peers.base`), list the module in ``MODULES`` below, and name the peer in the cases that should
run it (``add_rows(case, name, ...)``). A new route of an existing peer (another build, another query) is a
change to that peer's module only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from bench.kernels.lattices import Ends
from bench.kernels.peers import cc3d, dijkstra3d, igraph, networkx, scipy, skimage
from bench.kernels.peers.base import Peer
from bench.kernels.rows import Case, Row
from bench.kernels.timing import per_query, timed

MODULES = (igraph, scipy, networkx, skimage, dijkstra3d, cc3d)
REGISTRY: dict[str, Peer] = {peer.name: peer for module in MODULES for peer in module.PEERS}


class Repeats(NamedTuple):
    """Timed repeats of a peer's build and of each of its queries."""

    build: int
    query: int


@dataclass(frozen=True)
class Built:
    """What one peer built from one lattice's open mask, and the timing of that build (None: nothing built)."""

    peer: Peer
    value: Any
    stats: dict[str, float] | None
    ndim: int


def build(name: str, open_grid: np.ndarray, repeat: int) -> Built:
    """Time the build of peer ``name`` on the mask (a peer that queries the mask itself builds nothing)."""
    peer = REGISTRY[name]
    make = peer.build
    if make is None:
        return Built(peer, open_grid, None, open_grid.ndim)
    stats, value = timed(lambda: make(open_grid), repeat)
    return Built(peer, value, stats, open_grid.ndim)


def add_row(case: Case, built: Built, key: str, ends: Ends, repeat: int, note: str | None = None) -> Row:
    """Time query ``key`` of a built peer and add its row (``note`` replaces the query's own)."""
    query = built.peer.queries[key]
    stats, found = timed(query.prepare(built.value, ends), repeat)
    impl, answer = query.impl_for(built.ndim), query.answer(found)
    return case.add(Row(case.name, query.task, impl, built.stats, stats, answer, query.note if note is None else note))


def add_rows(
    case: Case,
    name: str,
    open_grid: np.ndarray,
    ends: Ends,
    keys: Sequence[str],
    repeats: Repeats,
    note: str | None = None,
) -> None:
    """Build peer ``name`` once, then one row per query in ``keys``; what was built is dropped afterwards."""
    built = build(name, open_grid, repeats.build)
    for key in keys:
        add_row(case, built, key, ends, repeats.query, note)


def component_call(name: str, open_grid: np.ndarray, ends: Ends) -> tuple[str, Any]:
    """The row name and the timed call of the components query of a peer that works on the mask itself."""
    query = REGISTRY[name].queries["components"]
    return query.impl_for(open_grid.ndim), query.prepare(open_grid, ends)


def pair_lengths(
    name: str, key: str, open_grid: np.ndarray, pairs: Sequence[Ends], warm: bool
) -> tuple[str, list[float], list[Any]]:
    """Peer ``name`` built untimed, then its path query ``key`` timed pair by pair (after one untimed call when
    ``warm``).

    Returns the row name, the time of each query and each answer.
    """
    peer = REGISTRY[name]
    value = open_grid if peer.build is None else peer.build(open_grid)
    query = peer.queries[key]
    calls = [query.prepare(value, ends) for ends in pairs]
    if warm:
        calls[0]()
    times, found = per_query(calls)
    return query.impl_for(open_grid.ndim), times, [query.answer(f) for f in found]
