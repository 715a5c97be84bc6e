"""The service's hand-off to Ray: one operation of one lattice, run as a Ray task."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import numpy as np

from catalytic.distributed._runtime import RETRIES, ErrorCarrier, connect, explicit_arrays, lattice_from
from catalytic.errors import CatalyticError, MethodError, NoPathError
from catalytic.kernels import analyze, components, distance_field, shortest_path

__all__ = ["OPERATIONS", "run_job_on_ray", "run_operation"]

OPERATIONS = ("shortest_path", "distance_field", "components", "analyze")


def run_operation(
    operation: str, spec: Mapping[str, Any], params: Mapping[str, Any], arrays: Mapping[str, Any] | None
) -> dict[str, Any]:
    """Run one operation locally and return its result dict (the body of the Ray task)."""
    t0 = time.perf_counter()
    lattice = lattice_from(spec, arrays)
    backend = params.get("backend")
    if operation == "shortest_path":
        try:
            path = shortest_path(
                lattice,
                params["start"],
                params["goal"],
                method=params.get("method", "auto"),
                backend=backend,
                memory=params.get("memory", "auto"),
            )
        except NoPathError:
            return {"found": False, "elapsed_ms": (time.perf_counter() - t0) * 1e3}
        return {
            "found": True,
            "path": path.coords.tolist(),
            "length": int(path.length),
            "cost": float(path.cost),
            "expanded": int(path.expanded),
            "method": path.method,
            "backend": path.backend,
            "elapsed_ms": (time.perf_counter() - t0) * 1e3,
        }
    if operation == "distance_field":
        field = distance_field(lattice, params["sources"], backend=backend)
        reached = np.isfinite(field) if field.dtype.kind == "f" else field >= 0
        return {
            "field": field,
            "shape": list(field.shape),
            "dtype": str(field.dtype),
            "reached": int(np.count_nonzero(reached)),
            "max": float(field[reached].max()) if reached.any() else None,
            "elapsed_ms": (time.perf_counter() - t0) * 1e3,
        }
    if operation == "components":
        labels, count = components(lattice, backend=backend)
        sizes = np.bincount(labels.ravel(), minlength=count + 1)[1:]
        return {
            "labels": labels,
            "count": int(count),
            "sizes": sizes.tolist(),
            "largest": int(sizes.max()) if sizes.size else 0,
            "elapsed_ms": (time.perf_counter() - t0) * 1e3,
        }
    if operation == "analyze":
        report = dict(analyze(lattice, backend=backend))
        report["degree_histogram"] = {str(k): int(v) for k, v in report["degree_histogram"].items()}
        report["elapsed_ms"] = (time.perf_counter() - t0) * 1e3
        return report
    raise MethodError("operation", f"unknown operation {operation!r}", ", ".join(OPERATIONS))


def _task(
    operation: str, spec: Mapping[str, Any], params: Mapping[str, Any], arrays: Mapping[str, Any] | None
) -> dict[str, Any] | ErrorCarrier:
    try:
        return run_operation(operation, spec, params, arrays)
    except CatalyticError as exc:
        return ErrorCarrier.of(exc)


def run_job_on_ray(
    operation: str,
    lattice_spec: Mapping[str, Any],
    params: Mapping[str, Any],
    arrays: Mapping[str, Any] | None = None,
    address: str | None = None,
) -> dict[str, Any]:
    """Run one service operation as a Ray task and return the result the local run would give.

    Parameters
    ----------
    operation : {"shortest_path", "distance_field", "components", "analyze"}
    lattice_spec : dict
        ``Lattice.spec()``.
    params : dict
        ``start``, ``goal``, ``method``, ``memory`` for paths; ``sources`` for distance fields; ``backend``
        (optional) for all.
    arrays : dict, optional
        Explicit ``blocked`` / ``weights`` arrays (NumPy arrays or the stored bytes).
    address : str, optional
        Ray address; defaults to ``RAY_ADDRESS``, else a local Ray.

    Returns
    -------
    dict
        ``shortest_path``: ``found``, ``path``, ``length``, ``cost``, ``expanded``, ``method``, ``backend``
        (only ``found: False`` when unreachable); ``distance_field``: ``field`` (the ndarray), ``shape``,
        ``dtype``, ``reached``, ``max``; ``components``: ``labels`` (the ndarray), ``count``, ``sizes``,
        ``largest``; ``analyze``: the :func:`catalytic.analyze` report (histogram keys as strings). Every
        answer has ``elapsed_ms``, measured on the worker.

    Raises
    ------
    InvalidInputError
        The same errors, with the same fields, as the local call (raised again on the caller's side).
    MethodError
        An unknown operation.

    Examples
    --------
    >>> run_job_on_ray("shortest_path", Lattice((3, 3)).spec(), {"start": [0, 0], "goal": [2, 2]})["length"]
    ... # doctest: +SKIP
    4
    """
    if operation not in OPERATIONS:
        raise MethodError("operation", f"unknown operation {operation!r}", ", ".join(OPERATIONS))
    ray = connect(address)
    remote = ray.remote(_task).options(max_retries=RETRIES, num_cpus=1)
    answer = ray.get(remote.remote(operation, dict(lattice_spec), dict(params), explicit_arrays(lattice_spec, arrays)))
    if isinstance(answer, ErrorCarrier):
        raise answer.error()
    result: dict[str, Any] = answer
    return result
