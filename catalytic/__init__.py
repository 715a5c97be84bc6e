"""catalytic: exact shortest paths, distance fields and components on implicit d-dimensional lattices.

Public API: :class:`Lattice`, :func:`shortest_path`, :func:`distance_field`, :func:`components`,
:func:`analyze`, :func:`backends`, :func:`transform`, :func:`inverse`, :func:`borrow` and the error classes.
"""

from __future__ import annotations

from catalytic.errors import (
    BackendUnavailableError,
    BlockedVertexError,
    CatalyticError,
    CoordinateError,
    InvalidInputError,
    InvalidTypeError,
    MaskError,
    MemoryBudgetError,
    MethodError,
    NoPathError,
    ObstacleError,
    RestoreError,
    ScratchError,
    ShapeError,
    SpecError,
    VertexBudgetError,
    WeightsError,
)
from catalytic.kernels import Path, analyze, backends, components, distance_field, shortest_path
from catalytic.lattice import Lattice

__version__ = "0.1.0"

__all__ = [
    "BackendUnavailableError",
    "BlockedVertexError",
    "CatalyticError",
    "CoordinateError",
    "InvalidInputError",
    "InvalidTypeError",
    "Lattice",
    "MaskError",
    "MemoryBudgetError",
    "MethodError",
    "NoPathError",
    "ObstacleError",
    "Path",
    "RestoreError",
    "ScratchError",
    "ShapeError",
    "SpecError",
    "VertexBudgetError",
    "WeightsError",
    "__version__",
    "analyze",
    "backends",
    "components",
    "distance_field",
    "shortest_path",
]
