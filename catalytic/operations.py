"""The one operation runner: an operation name, a lattice and its parameters in, a JSON answer out.

The HTTP service (inline calls, compute processes, job workers), the command line and Ray tasks all call
:func:`run_operation`, so an answer has the same fields, the same truncation and the same reported backend
whichever of them ran it. Callers add only where it ran (``executor``) and whether it came from a cache.

Answers, by operation (every one has ``elapsed_ms``, measured where the operation ran):

``backend`` is always the backend that ran: after a GPU failure under ``auto``, ``numba``.

* ``shortest_path``: ``found``, ``path`` (coordinates), ``length``, ``cost``, ``expanded``, ``method`` (``auto``
  resolved: :func:`catalytic.kernels.auto_method`), ``algorithm_version``
  (:data:`catalytic.kernels.ALGORITHM_VERSION`), ``backend``; only ``found: false`` when the goal is unreachable.
* ``distance_field``: ``shape``, ``dtype``, ``reached``, ``max``, ``backend``; the field is the array.
* ``components``: ``count``, ``sizes`` (the first ``max_sizes`` component sizes, by label), ``sizes_truncated``,
  ``largest``, ``backend``; the labels are the array.
* ``analyze``: the :func:`catalytic.analyze` report, its degree histogram keyed by strings (JSON object keys).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from catalytic.errors import MethodError, NoPathError
from catalytic.kernels import (
    Progress,
    analyze,
    auto_method,
    check_method,
    components,
    distance_field,
    shortest_path,
)
from catalytic.lattice import Lattice

__all__ = ["MAX_SIZES", "OPERATIONS", "check_operation", "component_sizes", "path_method", "run_operation"]

OPERATIONS = ("shortest_path", "distance_field", "components", "analyze")
"""Every operation :func:`run_operation` knows, in the order the API documents them."""

MAX_SIZES = 10_000
"""How many component sizes an answer lists by default."""

Answer = tuple[dict[str, Any], np.ndarray | None]
Options = Mapping[str, Any]


def check_operation(operation: str) -> str:
    """``operation`` itself when it is known.

    Raises
    ------
    MethodError
        Any other name (field ``operation``).

    Examples
    --------
    >>> check_operation("components")
    'components'
    """
    if operation not in OPERATIONS:
        raise MethodError("operation", f"unknown operation {operation!r}", ", ".join(OPERATIONS))
    return operation


def component_sizes(labels: np.ndarray, count: int, max_sizes: int = MAX_SIZES) -> dict[str, Any]:
    """``count``, the first ``max_sizes`` sizes by label, whether they were cut, and the largest size.

    Examples
    --------
    >>> component_sizes(np.array([1, 1, 0, 2]), 2, max_sizes=1)
    {'count': 2, 'sizes': [2], 'sizes_truncated': True, 'largest': 2}
    """
    sizes = np.bincount(labels.ravel(), minlength=count + 1)[1:]
    return {
        "count": int(count),
        "sizes": sizes[:max_sizes].tolist(),
        "sizes_truncated": bool(sizes.size > max_sizes),
        "largest": int(sizes.max()) if sizes.size else 0,
    }


def path_method(lattice: Lattice, params: Mapping[str, Any]) -> str:
    """The method a shortest-path request runs: ``params["method"]`` (default ``auto``) with ``auto`` resolved.

    Raises
    ------
    MethodError, VertexError
        An unknown method, BFS on a weighted lattice, or an endpoint outside the lattice.

    Examples
    --------
    >>> path_method(Lattice((8, 8)), {"start": [0, 0], "goal": [7, 7], "method": "bidirectional"})
    'bidirectional'
    """
    method = params.get("method", "auto")
    check_method(lattice, method)
    lattice.check_vertex(params["start"], "start")
    lattice.check_vertex(params["goal"], "goal")
    return auto_method(lattice, params["start"], params["goal"]) if method == "auto" else method


def _memory_for(lattice: Lattice, params: Mapping[str, Any], memory: str) -> str:
    """``frugal`` where the method that runs has a frugal mode (unweighted BFS), ``auto`` elsewhere.

    The runner's memory mode is a deployment's preference (LATTICE_MEMORY_OPTIMIZATION), not part of the request:
    it never changes the method, so a pod set to frugal answers with the path every other pod gives.
    """
    if memory != "frugal" or lattice.weighted:
        return "auto" if memory == "frugal" else memory
    return "frugal" if path_method(lattice, params) == "bfs" else "auto"


def _path(lattice: Lattice, params: Mapping[str, Any], options: Options) -> Answer:
    try:
        path = shortest_path(
            lattice,
            params["start"],
            params["goal"],
            method=params.get("method", "auto"),
            backend=options["backend"],
            memory=_memory_for(lattice, params, options["memory"]),
            progress=options["progress"],
        )
    except NoPathError:
        return {"found": False}, None
    answer = {
        "found": True,
        "path": path.coords.tolist(),
        "length": int(path.length),
        "cost": float(path.cost),
        "expanded": int(path.expanded),
        "method": path.method,
        "algorithm_version": path.algorithm_version,
        "backend": path.backend,
    }
    return answer, None


def _distance_field(lattice: Lattice, params: Mapping[str, Any], options: Options) -> Answer:
    ran: dict[str, Any] = {}
    field = distance_field(
        lattice, params["sources"], backend=options["backend"], report=ran, progress=options["progress"]
    )
    reached = np.isfinite(field) if field.dtype.kind == "f" else field >= 0
    answer = {
        "shape": list(field.shape),
        "dtype": str(field.dtype),
        "reached": int(np.count_nonzero(reached)),
        "max": float(field[reached].max()) if reached.any() else None,
        "backend": ran["backend"],
    }
    return answer, field


def _components(lattice: Lattice, params: Mapping[str, Any], options: Options) -> Answer:
    ran: dict[str, Any] = {}
    labels, count = components(lattice, backend=options["backend"], report=ran, progress=options["progress"])
    answer = component_sizes(labels, count, options["max_sizes"])
    answer["backend"] = ran["backend"]
    return answer, labels


def _analyze(lattice: Lattice, params: Mapping[str, Any], options: Options) -> Answer:
    report = dict(analyze(lattice, backend=options["backend"]))
    report["degree_histogram"] = {str(k): int(v) for k, v in report["degree_histogram"].items()}
    return report, None


_RUNNERS: dict[str, Callable[[Lattice, Mapping[str, Any], Options], Answer]] = {
    "shortest_path": _path,
    "distance_field": _distance_field,
    "components": _components,
    "analyze": _analyze,
}


def run_operation(
    lattice: Lattice,
    operation: str,
    params: Mapping[str, Any],
    *,
    backend: str | None = None,
    memory: str = "auto",
    max_sizes: int = MAX_SIZES,
    progress: Progress | None = None,
) -> Answer:
    """Run one operation; returns its JSON answer and, for array results, the array.

    Parameters
    ----------
    lattice : Lattice
    operation : {"shortest_path", "distance_field", "components", "analyze"}
    params : mapping
        ``start``, ``goal`` and ``method`` (default ``auto``) for paths; ``sources`` for distance fields.
    backend : str, optional
        Backend request passed to the kernels (None: ``CATALYTIC_BACKEND`` or auto).
    memory : {"auto", "full", "frugal"}
        Memory mode for paths, a deployment's preference: ``frugal`` keeps BFS's state in 2 bits per vertex and
        leaves every other method (A*, Dijkstra, bidirectional, weighted lattices) on its full state. The method,
        and so the path, never depends on it.
    max_sizes : int
        How many component sizes the answer lists (``sizes_truncated`` says when more exist).
    progress : callable, optional
        Called with the share of the work done, rising, then 1.0 (the kernels' :data:`catalytic.kernels.Progress`);
        ``analyze`` reports only its end.

    Returns
    -------
    (dict, numpy.ndarray or None)
        The answer (fields in the module docstring) and the distance field or component labels.

    Raises
    ------
    InvalidInputError
        Bad coordinates, blocked endpoints, a method that does not fit, an unknown operation.
    MemoryBudgetError
        The work does not fit the memory budget.

    Examples
    --------
    >>> answer, _ = run_operation(Lattice((3, 3)), "shortest_path", {"start": [0, 0], "goal": [2, 2]})
    >>> answer["found"], answer["length"]
    (True, 4)
    """
    runner = _RUNNERS[check_operation(operation)]
    t0 = time.perf_counter()
    options = {"backend": backend, "memory": memory, "max_sizes": max_sizes, "progress": progress}
    answer, array = runner(lattice, params, options)
    if progress is not None and operation == "analyze":
        progress(1.0)
    answer["elapsed_ms"] = (time.perf_counter() - t0) * 1e3
    return answer, array
