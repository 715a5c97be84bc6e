"""The service's hand-off to Ray: one operation of one lattice, run as a Ray task."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from catalytic.distributed._runtime import RETRIES, ErrorCarrier, connect, explicit_arrays, lattice_from
from catalytic.errors import CatalyticError
from catalytic.operations import MAX_SIZES, Answer, check_operation, run_operation

__all__ = ["run_job_on_ray"]


def _task(
    operation: str,
    spec: Mapping[str, Any],
    params: Mapping[str, Any],
    arrays: Mapping[str, Any] | None,
    options: Mapping[str, Any],
) -> Answer | ErrorCarrier:
    """The body of the Ray task: rebuild the lattice, then the one operation runner."""
    try:
        return run_operation(lattice_from(spec, arrays), operation, params, **options)
    except CatalyticError as exc:
        return ErrorCarrier.of(exc)


def run_job_on_ray(
    operation: str,
    lattice_spec: Mapping[str, Any],
    params: Mapping[str, Any],
    arrays: Mapping[str, Any] | None = None,
    address: str | None = None,
    *,
    backend: str | None = None,
    memory: str = "auto",
    max_sizes: int = MAX_SIZES,
) -> Answer:
    """Run one operation as a Ray task; the same answer :func:`catalytic.operations.run_operation` gives.

    Parameters
    ----------
    operation : {"shortest_path", "distance_field", "components", "analyze"}
    lattice_spec : dict
        ``Lattice.spec()``.
    params : dict
        ``start``, ``goal``, ``method`` for paths; ``sources`` for distance fields.
    arrays : dict, optional
        Explicit ``blocked`` / ``weights`` arrays (NumPy arrays or the stored bytes).
    address : str, optional
        Ray address; defaults to ``RAY_ADDRESS``, else a local Ray.
    backend, memory, max_sizes
        As for :func:`catalytic.operations.run_operation`.

    Returns
    -------
    (dict, numpy.ndarray or None)
        The answer and the array (distance field or component labels), as the local run returns them;
        ``elapsed_ms`` is measured on the Ray worker.

    Raises
    ------
    InvalidInputError
        The same errors, with the same fields, as the local call (raised again on the caller's side); an
        unknown operation is refused before anything reaches Ray.

    Examples
    --------
    >>> run_job_on_ray("shortest_path", Lattice((3, 3)).spec(), {"start": [0, 0], "goal": [2, 2]})[0]["length"]
    ... # doctest: +SKIP
    4
    """
    check_operation(operation)
    ray = connect(address)
    remote = ray.remote(_task).options(max_retries=RETRIES, num_cpus=1)
    options = {"backend": backend, "memory": memory, "max_sizes": max_sizes}
    arrays = explicit_arrays(lattice_spec, arrays)
    answer = ray.get(remote.remote(operation, dict(lattice_spec), dict(params), arrays, options))
    if isinstance(answer, ErrorCarrier):
        raise answer.error()
    result: Answer = answer
    return result
