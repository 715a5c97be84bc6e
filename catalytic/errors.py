"""The exception tree of catalytic.

::

    CatalyticError
    ├── FieldError                                 one input field: its name, the fault, the allowed range
    │   ├── InvalidInputError (ValueError)         bad input: names the field and the allowed range
    │   │   ├── ShapeError                         shape / periodic
    │   │   ├── CoordinateError                    start, goal, sources: wrong length or out of range
    │   │   ├── BlockedVertexError                 a start, goal or source on a blocked vertex
    │   │   ├── ObstacleError                      obstacle generators (p, seed, box bounds)
    │   │   ├── MaskError                          the explicit blocked mask (shape, dtype)
    │   │   ├── WeightsError                       weights (shape, dtype, NaN, <= 0, inf)
    │   │   ├── SpecError                          a lattice spec that cannot be rebuilt
    │   │   ├── MethodError                        an unknown method, or one that does not fit the lattice
    │   │   ├── VertexBudgetError                  a lattice over the configured vertex budget
    │   │   └── ScratchError                       a lent buffer that cannot be borrowed
    │   └── InvalidTypeError (TypeError)           a field of the wrong type
    ├── NoPathError (LookupError)                  the goal is not reachable from the start
    ├── MemoryBudgetError (MemoryError)            the work does not fit the memory budget
    ├── BackendUnavailableError (RuntimeError)     an explicitly requested backend cannot run here
    └── RestoreError (RuntimeError)                borrowed memory did not come back bit for bit
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "BackendUnavailableError",
    "BlockedVertexError",
    "CatalyticError",
    "CoordinateError",
    "FieldError",
    "InvalidInputError",
    "InvalidTypeError",
    "MaskError",
    "MemoryBudgetError",
    "MethodError",
    "NoPathError",
    "ObstacleError",
    "RestoreError",
    "ScratchError",
    "ShapeError",
    "SpecError",
    "VertexBudgetError",
    "WeightsError",
]


class CatalyticError(Exception):
    """Base class of every error raised on purpose by catalytic."""


class FieldError(CatalyticError):
    """An error about one input field: ``field`` names it, ``detail`` says what is wrong, ``allowed`` the range."""

    def __init__(self, field: str, message: str, allowed: str | None = None) -> None:
        self.field = field
        self.detail = message
        self.allowed = allowed
        text = f"{field}: {message}"
        if allowed:
            text += f" (allowed: {allowed})"
        super().__init__(text)

    def __reduce__(self) -> tuple[Any, ...]:
        # Rebuilt from its fields when pickled (worker processes and Ray tasks hand errors back).
        return type(self), (self.field, self.detail, self.allowed)

    def to_dict(self) -> dict[str, str | None]:
        """A JSON-able description, used by the HTTP layer for 422 bodies."""
        return {"field": self.field, "message": str(self), "allowed": self.allowed}


class InvalidInputError(FieldError, ValueError):
    """Bad input. ``field`` names the offending field, ``allowed`` the accepted range."""


class ShapeError(InvalidInputError):
    """The lattice shape or its periodic flags are out of range."""


class CoordinateError(InvalidInputError):
    """A coordinate has the wrong length or lies outside the lattice."""


class BlockedVertexError(InvalidInputError):
    """A start, goal or source lies on a blocked vertex."""


class ObstacleError(InvalidInputError):
    """An obstacle generator is malformed or out of range."""


class MaskError(InvalidInputError):
    """The explicit blocked mask has the wrong shape or dtype."""


class WeightsError(InvalidInputError):
    """Weights have the wrong shape or dtype, or are NaN, infinite or not positive."""


class SpecError(InvalidInputError):
    """A lattice spec is malformed or its arrays do not match their digests."""


class MethodError(InvalidInputError):
    """An unknown method, or a method that does not fit the lattice."""


class VertexBudgetError(InvalidInputError):
    """The lattice has more vertices than the configured budget allows."""


class ScratchError(InvalidInputError):
    """A lent buffer is read-only, non-contiguous or aliased with an output."""


class InvalidTypeError(FieldError, TypeError):
    """A field has the wrong type."""


class NoPathError(CatalyticError, LookupError):
    """The goal cannot be reached from the start."""

    def __init__(self, start: tuple[int, ...], goal: tuple[int, ...]) -> None:
        self.start = start
        self.goal = goal
        super().__init__(f"no path from {list(start)} to {list(goal)}")

    def __reduce__(self) -> tuple[Any, ...]:
        return type(self), (self.start, self.goal)


class MemoryBudgetError(CatalyticError, MemoryError):
    """The computation needs more memory than the budget allows."""

    def __init__(self, needed: int, budget: int, what: str = "computation") -> None:
        self.needed = needed
        self.budget = budget
        self.what = what
        super().__init__(f"{what} needs {needed} bytes, over the memory budget of {budget} bytes")

    def __reduce__(self) -> tuple[Any, ...]:
        return type(self), (self.needed, self.budget, self.what)


class BackendUnavailableError(CatalyticError, RuntimeError):
    """An explicitly requested backend cannot run on this machine."""


class RestoreError(CatalyticError, RuntimeError):
    """Borrowed memory did not come back bit for bit (its digest changed)."""
