"""catalytic: exact shortest paths, distance fields and components on implicit d-dimensional lattices.

Public API: :class:`Lattice`, :func:`shortest_path`, :func:`distance_field`, :func:`components`,
:func:`analyze`, :func:`backends`, :func:`transform`, :func:`inverse`, :func:`borrow` and the error classes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from catalytic import errors
from catalytic.errors import *  # noqa: F403  (the whole error tree is public)
from catalytic.kernels import Path, analyze, backends, components, distance_field, shortest_path
from catalytic.lattice import Lattice

if TYPE_CHECKING:  # loaded on first use (below); named here for type checkers
    from catalytic.memory import borrow
    from catalytic.transforms import inverse, transform

__version__ = "0.1.0"

__all__ = [
    "Lattice",
    "Path",
    "__version__",
    "analyze",
    "backends",
    "borrow",
    "components",
    "distance_field",
    "inverse",
    "shortest_path",
    "transform",
]
__all__ += errors.__all__

# borrow, transform and inverse load compiled kernels and codecs: import them on first use so that
# `import catalytic` stays fast for callers that only need the model or the searches.
_LAZY = {"borrow": "catalytic.memory", "transform": "catalytic.transforms", "inverse": "catalytic.transforms"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'catalytic' has no attribute {name!r}")
