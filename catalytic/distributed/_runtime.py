"""What every distributed entry point shares: connecting to Ray, rebuilding lattices, carrying errors home.

Ray is imported here lazily, inside functions, so that ``import catalytic.distributed`` works (and stays
fast) without Ray installed.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from catalytic import errors
from catalytic.errors import InvalidTypeError, MaskError, WeightsError
from catalytic.lattice import Lattice

__all__ = ["RETRIES", "ErrorCarrier", "connect", "explicit_arrays", "lattice_from", "rows_of", "slab_arrays"]

log = logging.getLogger("catalytic.distributed")

RETRIES = 3
"""How often Ray retries a task lost to a dead worker, and restarts a dead actor."""


def connect(address: str | None = None) -> Any:
    """Connect to Ray once per process and return the ``ray`` module.

    ``address`` wins; else ``RAY_ADDRESS`` when set; else a local Ray is started (or the one this process
    already started is used).

    Raises
    ------
    ImportError
        Ray is not installed (``pip install 'catalytic[distributed]'``).
    """
    import ray

    if ray.is_initialized():
        return ray
    target = address or os.environ.get("RAY_ADDRESS") or None
    log.info("connecting to Ray at %s", target or "a new local instance")
    ray.init(address=target, log_to_driver=False, logging_level=logging.WARNING)
    return ray


def _decode(name: str, value: Any, shape: tuple[int, ...]) -> np.ndarray:
    """An explicit array from a NumPy array or its stored bytes (packed little-endian bits, or float64)."""
    if isinstance(value, np.ndarray):
        return value
    if not isinstance(value, bytes | bytearray | memoryview):
        raise InvalidTypeError(f"arrays.{name}", f"{type(value).__name__} is neither an array nor bytes", "ndarray")
    vertices = math.prod(shape)
    raw = np.frombuffer(value, dtype=np.uint8)
    if name == "blocked":
        if raw.size != (vertices + 7) // 8:
            raise MaskError("arrays.blocked", f"{raw.size} bytes", f"{(vertices + 7) // 8} bytes of packed bits")
        return np.unpackbits(raw, count=vertices, bitorder="little").astype(bool).reshape(shape)
    if raw.size != 8 * vertices:
        raise WeightsError("arrays.weights", f"{raw.size} bytes", f"{8 * vertices} bytes of float64")
    return raw.view("<f8").reshape(shape)


def explicit_arrays(spec: Mapping[str, Any], arrays: Mapping[str, Any] | None) -> dict[str, np.ndarray]:
    """The explicit ``blocked`` / ``weights`` arrays of a spec as NumPy arrays of the lattice's shape."""
    shape = tuple(int(n) for n in spec.get("shape", ()))
    given = dict(arrays or {})
    unknown = set(given) - {"blocked", "weights"}
    if unknown:
        raise InvalidTypeError("arrays", f"unknown keys {sorted(unknown)}", "blocked, weights")
    return {name: _decode(name, value, shape) for name, value in given.items() if value is not None}


def lattice_from(spec: Mapping[str, Any], arrays: Mapping[str, Any] | None = None) -> Lattice:
    """Rebuild a lattice from its spec and explicit arrays (digests are checked by :meth:`Lattice.from_spec`)."""
    explicit = explicit_arrays(spec, arrays)
    return Lattice.from_spec(spec, blocked=explicit.get("blocked"), weights=explicit.get("weights"))


def rows_of(explicit: Mapping[str, np.ndarray], rows: Sequence[int]) -> dict[str, np.ndarray]:
    """Rows ``rows`` (axis 0, in that order) of each explicit array, as contiguous copies."""
    return {name: np.take(array, np.asarray(rows, dtype=np.int64), axis=0) for name, array in explicit.items()}


def slab_arrays(explicit: Mapping[str, np.ndarray], lo: int, hi: int) -> dict[str, np.ndarray]:
    """Rows ``lo .. hi - 1`` (axis 0) of each explicit array, as contiguous copies."""
    return rows_of(explicit, range(lo, hi))


@dataclass(frozen=True)
class ErrorCarrier:
    """A catalytic error returned (not raised) by a worker, and raised again by the driver.

    Returned rather than raised so Ray hands it back as it is instead of wrapping it in a task error; the
    library's errors pickle with their fields (see :mod:`catalytic.errors`).
    """

    exc: errors.CatalyticError

    @classmethod
    def of(cls, exc: errors.CatalyticError) -> ErrorCarrier:
        """Wrap an error raised in a worker."""
        return cls(exc)

    def error(self) -> errors.CatalyticError:
        """The original error, with its message and attributes."""
        return self.exc
