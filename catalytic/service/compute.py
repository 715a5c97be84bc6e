"""The synchronous side of the service: decoding uploaded arrays, materialising lattices, running operations.

Everything here is plain blocking code. The event loop never calls it directly: inline requests run it in
the compute processes of :mod:`catalytic.service.pool` (or on the thread pool), decoding and materialising
run on the thread pool, and jobs run in the worker processes of :mod:`catalytic.service.jobs`.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from catalytic.errors import BlockedVertexError, InvalidTypeError, MaskError, SpecError, WeightsError
from catalytic.lattice import Lattice
from catalytic.operations import run_operation

__all__ = [
    "answer_bodies",
    "array_bytes",
    "build_lattice",
    "check_open_vertices",
    "decode_blocked",
    "decode_weights",
    "estimate_bytes",
    "execute_task",
    "json_key",
    "lattice_counts",
    "materialise",
    "serve_tasks",
]


def _b64(text: str, field: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidTypeError(field, "is not valid base64", "base64 text (RFC 4648, with padding)") from None


def decode_blocked(value: Any, shape: tuple[int, ...]) -> np.ndarray | None:
    """The explicit blocked mask from a list of coordinates or base64 packbits (little bit order, C order)."""
    if value is None:
        return None
    vertices = math.prod(shape)
    if isinstance(value, str | bytes):
        # bytes: the base64 already decoded, by a parse process (catalytic.service.bodies).
        packed = np.frombuffer(value if isinstance(value, bytes) else _b64(value, "blocked"), dtype=np.uint8)
        expected = (vertices + 7) // 8
        if packed.size != expected:
            raise MaskError("blocked", f"{packed.size} bytes decoded", f"{expected} bytes ({vertices} bits, C order)")
        return np.unpackbits(packed, count=vertices, bitorder="little").astype(bool).reshape(shape)
    mask = np.zeros(shape, dtype=bool)
    if len(value):
        coords = _coordinate_rows(value, shape)
        bounds = np.asarray(shape, dtype=np.int64)
        outside = (coords < 0) | (coords >= bounds)
        if outside.any():
            row = int(np.flatnonzero(outside.any(axis=1))[0])
            raise MaskError(
                f"blocked[{row}]", f"{coords[row].tolist()} lies outside the lattice", f"0 <= c[k] < {shape}"
            )
        mask[tuple(coords.T)] = True
    return mask


def _coordinate_rows(value: Any, shape: tuple[int, ...]) -> np.ndarray:
    """Blocked coordinates as an ``(n, d)`` int64 array; a ragged row or an out-of-range number is named."""
    try:
        coords = np.asarray(value, dtype=np.int64)
    except (ValueError, OverflowError, TypeError):
        coords = None
    if coords is not None and coords.ndim == 2 and coords.shape[1] == len(shape):
        return coords
    allowed = f"lists of {len(shape)} integers with 0 <= c[k] < {list(shape)}"
    for row, coord in enumerate(value):
        if not isinstance(coord, list | tuple | np.ndarray) or len(coord) != len(shape):
            raise MaskError(f"blocked[{row}]", f"{coord!r} is not a coordinate of {len(shape)} integers", allowed)
        for k, c in enumerate(coord):
            if not isinstance(c, int | np.integer) or not 0 <= c < shape[k]:
                raise MaskError(f"blocked[{row}][{k}]", f"{c!r} lies outside the lattice", allowed)
    raise MaskError("blocked", "is not a list of coordinates", allowed)


def decode_weights(value: Any, shape: tuple[int, ...]) -> np.ndarray | None:
    """Per-vertex weights from a nested list or base64 little-endian float64 (C order)."""
    if value is None:
        return None
    allowed = f"a nested list of shape {list(shape)} or base64 of {math.prod(shape)} float64 values"
    if isinstance(value, str | bytes):
        raw = value if isinstance(value, bytes) else _b64(value, "weights")
        if len(raw) != 8 * math.prod(shape):
            raise WeightsError("weights", f"{len(raw)} bytes decoded", allowed)
        return np.frombuffer(raw, dtype="<f8").reshape(shape)
    try:
        weights = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError, OverflowError):
        raise WeightsError("weights", "is not a rectangular list of numbers", allowed) from None
    if weights.shape != shape:
        raise WeightsError("weights", f"shape {list(weights.shape)} does not match the lattice", allowed)
    return weights


def check_open_vertices(lattice: Lattice, coords: list[list[int]], field: str) -> None:
    """Refuse coordinates outside ``lattice`` or on a blocked vertex, naming ``field[i]`` of the first bad one.

    Each vertex is looked up alone, so that checking a job's sources never materialises a large lattice's mask
    in the server process.

    Raises
    ------
    CoordinateError, InvalidTypeError
        A coordinate of the wrong length or outside the lattice.
    BlockedVertexError
        A blocked vertex.
    """
    indices = lattice.index_of(coords, field).tolist()
    for i, index in enumerate(indices):
        if not lattice.is_open(index):
            raise BlockedVertexError(f"{field}[{i}]", f"{coords[i]} is blocked", "an open vertex")


def array_bytes(lattice: Lattice, *, with_uploaded: bool = False) -> dict[str, bytes]:
    """The explicit arrays of a lattice in their stored form (packed mask bits, float64 weights).

    Arrays uploaded on their own (``lattice.uploaded``) are left out, as the spec names them by digest, unless
    ``with_uploaded`` (a small lattice shipped whole to a compute process).
    """
    out = {}
    if lattice.blocked is not None and (with_uploaded or "blocked" not in lattice.uploaded):
        out["blocked"] = np.packbits(lattice.blocked.ravel(), bitorder="little").tobytes()
    if lattice.weights is not None and (with_uploaded or "weights" not in lattice.uploaded):
        out["weights"] = np.ascontiguousarray(lattice.weights, dtype="<f8").tobytes()
    return out


def materialise(
    spec: Mapping[str, Any],
    arrays: Mapping[str, bytes],
    max_vertices: int | None = None,
    arrays_dir: str | None = None,
) -> Lattice:
    """Rebuild a lattice from its spec and stored arrays (digests are checked by :meth:`Lattice.from_spec`).

    An array the spec names as uploaded (``{"array": digest}``) and ``arrays`` lacks is memory-mapped from
    ``arrays_dir`` (:mod:`catalytic.service.uploads`).
    """
    shape = tuple(int(n) for n in spec["shape"])
    blocked = weights = None
    if "blocked" in arrays:
        blocked = decode_blocked(base64.b64encode(arrays["blocked"]).decode(), shape)
    if "weights" in arrays:
        weights = np.frombuffer(arrays["weights"], dtype="<f8").reshape(shape)
    for field in ("blocked", "weights"):
        ref = spec.get(field)
        if field in arrays or not isinstance(ref, Mapping) or "array" not in ref:
            continue
        if arrays_dir is None:
            raise SpecError(field, f"names the uploaded array {ref['array']}, but no ARRAYS_DIR is known here", "")
        from catalytic.service.uploads import load_uploaded

        loaded = load_uploaded(arrays_dir, str(ref["array"]), field, shape)
        blocked, weights = (loaded, weights) if field == "blocked" else (blocked, loaded)
    return Lattice.from_spec(spec, blocked=blocked, weights=weights, max_vertices=max_vertices)


def lattice_counts(lattice: Lattice) -> dict[str, Any]:
    """Vertices, open vertices, edges and the memory report (measured bytes against graph baselines)."""
    report = lattice.memory_report()
    return {
        "vertices": lattice.vertices,
        "open_vertices": lattice.open_vertices,
        "edges": int(report["edges"]),
        "memory": json.loads(json.dumps(report, default=float)),
    }


def build_lattice(
    body: Mapping[str, Any], max_vertices: int, uploaded: Mapping[str, tuple[str, np.ndarray]] | None = None
) -> Lattice:
    """A lattice from a validated create body (shape, periodic, obstacles, blocked, weights).

    ``uploaded`` holds the arrays the body names by digest, opened already (``field -> (digest, array)``,
    :func:`catalytic.service.uploads.open_references`).
    """
    shape = tuple(body["shape"])
    uploaded = uploaded or {}
    arrays = {field: array for field, (_, array) in uploaded.items()}
    return Lattice(
        shape,
        periodic=body.get("periodic", False),
        obstacles=body.get("obstacles") or [],
        blocked=arrays["blocked"] if "blocked" in arrays else decode_blocked(body.get("blocked"), shape),
        weights=arrays["weights"] if "weights" in arrays else decode_weights(body.get("weights"), shape),
        max_vertices=max_vertices,
        uploaded={field: digest for field, (digest, _) in uploaded.items()},
    )


def estimate_bytes(vertices: int, weighted: bool) -> int:
    """Upper estimate of the bytes one computation holds: mask, distances, labels, weights."""
    per_vertex = 1 + 8 + 8 + (8 if weighted else 0)
    return vertices * per_vertex


def answer_bodies(answer: dict[str, Any]) -> tuple[bytes, bytes]:
    """The JSON bodies of a fresh answer and of its later cache hits, encoded once.

    Examples
    --------
    >>> answer_bodies({"found": False})
    (b'{"found":false,"cached":false}', b'{"found":false,"cached":true}')
    """
    encoded = json.dumps(answer, separators=(",", ":")).encode()
    head = encoded[:-1] + (b"," if answer else b"")
    return head + b'"cached":false}', head + b'"cached":true}'


def _error_answer(exc: BaseException) -> dict[str, Any]:
    from catalytic.errors import InvalidInputError, MemoryBudgetError, VertexBudgetError
    from catalytic.service.results import ResultNotStored

    if isinstance(exc, ResultNotStored):
        return {"status": 507, "error": "result_not_stored", "message": str(exc), "fields": []}
    if isinstance(exc, MemoryError):
        message = "the computation ran out of memory" + (f": {exc}" if str(exc) else "")
        return {"status": 507, "error": "out_of_memory", "message": message, "fields": []}
    if isinstance(exc, VertexBudgetError | MemoryBudgetError):
        fields = [exc.to_dict()] if isinstance(exc, VertexBudgetError) else []
        return {"status": 413, "error": "too_large", "message": str(exc), "fields": fields}
    if isinstance(exc, InvalidInputError | InvalidTypeError):
        return {"status": 422, "error": "invalid_input", "message": str(exc), "fields": [exc.to_dict()]}
    return {"status": 500, "error": "internal", "message": f"{type(exc).__name__}: {exc}", "fields": []}


def execute_task(
    task: Mapping[str, Any],
    lattice: Lattice | None = None,
    ray_address: str | None = None,
    progress: Callable[[float], None] | None = None,
) -> Any:
    """Run one job task here, or as a Ray task when ``ray_address`` is given; same answer either way.

    Returns ``(answer, array_or_None)`` like :func:`catalytic.operations.run_operation`. ``progress`` gets the
    kernels' progress of a task run here.
    """
    options = {"backend": task["backend"], "memory": task["memory"], "max_sizes": task["max_sizes"]}
    if ray_address:
        from catalytic.distributed import run_job_on_ray

        answer, array = run_job_on_ray(
            task["operation"], task["spec"], task["params"], task["arrays"] or None, ray_address, **options
        )
        answer["executor"] = "ray"
        return answer, array
    if lattice is None:
        lattice = materialise(task["spec"], task["arrays"], arrays_dir=(task.get("results") or {}).get("arrays_dir"))
    answer, array = run_operation(lattice, task["operation"], task["params"], progress=progress, **options)
    answer["executor"] = "local"
    return answer, array


def serve_tasks(conn: Any) -> None:
    """Body of a job worker process: run tasks from ``conn`` one at a time until the pipe closes.

    Each task is a dict (operation, spec, arrays, params, backend, memory, max_sizes, and for array results
    ``results``, a :func:`catalytic.service.results.store_config`, and ``result_name``). The process sends
    ``("progress", fraction)`` messages as the kernels report them (rising), then
    ``("ok", answer, stored_array_or_None, backend, fallbacks)`` or ``("error", error_dict)``;
    the array result is written here, to the store when large (:func:`catalytic.service.results.write_result`),
    and sent as its reference or as .npy bytes. The parent
    terminates the process to cancel a task. When ``RAY_ADDRESS`` is set, each task runs on that Ray cluster
    instead (the job record here stays the source of truth).
    """
    import os

    from catalytic.kernels.backend import fallback_count
    from catalytic.service.results import write_result

    ray_address = os.environ.get("RAY_ADDRESS") or None
    cached: dict[str, Lattice] = {}
    while True:
        try:
            task = conn.recv()
        except EOFError:
            return
        try:
            lattice = None
            if ray_address is None:
                key = json_key(task["spec"])
                lattice = cached.get(key)
                if lattice is None:
                    cached.clear()  # before the next one is made: a large lattice is never held twice
                    arrays_dir = (task.get("results") or {}).get("arrays_dir")
                    lattice = materialise(task["spec"], task["arrays"], arrays_dir=arrays_dir)
                    cached[key] = lattice
            before = fallback_count()

            def progress(fraction: float) -> None:
                conn.send(("progress", fraction))

            answer, array = execute_task(task, lattice, ray_address, progress)
            stored = None
            if array is not None:
                name = task.get("result_name") or "result.npy"
                stored = write_result(array, task.get("results"), name).to_message()
                del array
            conn.send(("ok", answer, stored, answer.get("backend"), fallback_count() - before))
        except Exception as exc:  # every failure becomes the job's error; the worker lives on
            conn.send(("error", _error_answer(exc)))


def json_key(spec: Mapping[str, Any]) -> str:
    """A canonical text form of a spec (a cache key)."""
    return json.dumps(spec, sort_keys=True, separators=(",", ":"))
