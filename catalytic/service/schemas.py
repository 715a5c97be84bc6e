"""Request and response models: they validate bodies and are the source of the OpenAPI document."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, model_validator

__all__ = [
    "AnalyzeRequest",
    "AnalyzeResponse",
    "ComponentsRequest",
    "ComponentsResponse",
    "DistanceFieldRequest",
    "ErrorResponse",
    "HealthResponse",
    "JobAccepted",
    "JobRequest",
    "JobStatus",
    "LatticeCreate",
    "LatticeInfo",
    "LatticeList",
    "PathRequest",
    "PathResponse",
    "ReadyResponse",
    "TransformRequest",
    "TransformResponse",
]

Coordinate = Annotated[list[StrictInt], Field(min_length=1, max_length=10)]
Method = Literal["auto", "bfs", "bidirectional", "astar", "dijkstra"]
BackendName = Literal["auto", "numpy", "numba", "cupy"]
Operation = Literal["shortest_path", "distance_field", "components", "analyze"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RandomObstacles(_Model):
    """Random obstacles: vertex ``i`` is blocked with probability ``p`` (SplitMix64 of ``seed`` and ``i``)."""

    kind: Literal["random"]
    p: Annotated[float, Field(ge=0.0, le=1.0, allow_inf_nan=False)]
    seed: Annotated[StrictInt, Field(ge=0, le=2**64 - 1)] = 0


class BoxObstacle(_Model):
    """An axis-aligned box of blocked vertices, bounds inclusive."""

    kind: Literal["box"]
    lo: Coordinate
    hi: Coordinate


Obstacle = Annotated[RandomObstacles | BoxObstacle, Field(discriminator="kind")]


class LatticeCreate(_Model):
    """A lattice: shape, periodic axes, obstacle generators, an optional explicit mask and weights."""

    shape: Annotated[list[Annotated[StrictInt, Field(ge=1)]], Field(min_length=1, max_length=10)]
    periodic: StrictBool | Annotated[list[StrictBool], Field(min_length=1, max_length=10)] = False
    obstacles: Annotated[list[Obstacle], Field(max_length=1024)] = []
    blocked: list[Coordinate] | str | None = Field(
        None,
        description="Blocked vertices as a list of coordinates, or base64 of the C-order flat mask "
        "packed 8 vertices a byte, least significant bit first.",
    )
    weights: list[Any] | str | None = Field(
        None, description="Per-vertex entry costs: a nested list of the lattice's shape, or base64 of C-order float64."
    )


class LatticeInfo(BaseModel):
    """A stored lattice."""

    id: str
    vertices: int
    open_vertices: int
    edges: int
    memory: dict[str, Any]
    created_at: float
    spec: dict[str, Any] | None = None


class LatticeList(BaseModel):
    """One page of lattices, oldest first; pass ``next_cursor`` as ``cursor`` for the next page."""

    items: list[LatticeInfo]
    next_cursor: str | None


class _LatticeRef(_Model):
    lattice_id: str | None = Field(None, max_length=64)
    lattice: LatticeCreate | None = None
    backend: BackendName | None = None

    @model_validator(mode="after")
    def _one_lattice(self) -> _LatticeRef:
        if (self.lattice_id is None) == (self.lattice is None):
            raise ValueError("give exactly one of lattice_id and lattice")
        return self


class PathRequest(_LatticeRef):
    """A shortest-path query on a stored (``lattice_id``) or inline (``lattice``) lattice."""

    start: Coordinate
    goal: Coordinate
    method: Method = "auto"


class PathResponse(BaseModel):
    """The path, start to goal inclusive, or ``found: false`` when the goal is unreachable."""

    found: bool
    path: list[list[int]] | None = None
    length: int | None = None
    cost: float | None = None
    expanded: int | None = None
    method: str | None = None
    backend: str | None = None
    elapsed_ms: float | None = None
    cached: bool = False


class AnalyzeRequest(_LatticeRef):
    """Structure of a lattice: counts, components, degree histogram, diameter."""


class AnalyzeResponse(BaseModel):
    """The analysis of a lattice."""

    model_config = ConfigDict(extra="allow")

    vertices: int
    open_vertices: int
    edges: int
    components: int
    largest_component: int
    degree_histogram: list[int]
    diameter: dict[str, Any]
    backend: str | None = None
    elapsed_ms: float | None = None


class ComponentsRequest(_LatticeRef):
    """Connected components of the open vertices."""


class ComponentsResponse(BaseModel):
    """Component count and sizes (label ``k`` has size ``sizes[k-1]``); the labels array comes from a job."""

    count: int
    sizes: list[int]
    sizes_truncated: bool
    largest: int
    backend: str | None = None
    elapsed_ms: float | None = None


class DistanceFieldRequest(_LatticeRef):
    """A multi-source distance field; always runs as a job (the field is an array)."""

    sources: Annotated[list[Coordinate], Field(min_length=1, max_length=100_000)]


class JobRequest(_Model):
    """A job: an operation on a stored or inline lattice, with the operation's parameters."""

    operation: Operation
    lattice_id: str | None = Field(None, max_length=64)
    lattice: LatticeCreate | None = None
    params: dict[str, Any] = {}
    backend: BackendName | None = None

    @model_validator(mode="after")
    def _one_lattice(self) -> JobRequest:
        if (self.lattice_id is None) == (self.lattice is None):
            raise ValueError("give exactly one of lattice_id and lattice")
        return self


class JobAccepted(BaseModel):
    """A job was queued; poll ``Location``."""

    id: str
    status: str
    location: str


class JobStatus(BaseModel):
    """A job's state."""

    id: str
    operation: str
    status: Literal["queued", "running", "succeeded", "failed", "cancelled"]
    progress: float
    error: dict[str, Any] | None
    lattice_id: str | None
    timings: dict[str, float | None]
    result_url: str | None


TransformOp = Literal["xor", "add", "rotate", "permute"]


class TransformRequest(_Model):
    """An array (base64 of its C-order bytes, with dtype and shape) and the reversible operation(s) to apply."""

    data: str
    dtype: str = Field(max_length=32)
    shape: Annotated[list[Annotated[StrictInt, Field(ge=0)]], Field(max_length=32)]
    op: TransformOp | Annotated[list[TransformOp], Field(min_length=1, max_length=16)]
    seed: Annotated[StrictInt, Field(ge=0, le=2**64 - 1)] = 0


class TransformResponse(BaseModel):
    """The transformed (or restored) array, in the request's form."""

    data: str
    dtype: str
    shape: list[int]
    op: str | list[str]
    seed: int


class ErrorResponse(BaseModel):
    """Every error: a code, a message and the offending fields with their allowed ranges."""

    error: str
    message: str
    fields: list[dict[str, Any]]


class HealthResponse(BaseModel):
    """Liveness."""

    status: str


class ReadyResponse(BaseModel):
    """Readiness: database reachable and capacity left."""

    ready: bool
    database: bool
    kernels_loaded: bool
    queue: dict[str, int]
    cache: dict[str, Any]


class ShortestPathParams(_Model):
    """``params`` of a ``shortest_path`` job."""

    start: Coordinate
    goal: Coordinate
    method: Method = "auto"


class DistanceFieldParams(_Model):
    """``params`` of a ``distance_field`` job."""

    sources: Annotated[list[Coordinate], Field(min_length=1, max_length=100_000)]


class NoParams(_Model):
    """``params`` of ``components`` and ``analyze`` jobs (none)."""


PARAMS_MODELS: dict[str, type[BaseModel]] = {
    "shortest_path": ShortestPathParams,
    "distance_field": DistanceFieldParams,
    "components": NoParams,
    "analyze": NoParams,
}
