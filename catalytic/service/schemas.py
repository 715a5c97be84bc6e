"""Request and response models: they validate bodies and are the source of the OpenAPI document."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StringConstraints, model_validator

__all__ = [
    "AnalyzeRequest",
    "AnalyzeResponse",
    "ArrayRef",
    "ArrayUploaded",
    "ComponentsRequest",
    "ComponentsResponse",
    "DistanceFieldRequest",
    "FieldProblem",
    "HealthResponse",
    "JobAccepted",
    "JobRequest",
    "JobResult",
    "JobStatus",
    "LatticeCreate",
    "LatticeDeleted",
    "LatticeInfo",
    "LatticeList",
    "PathRequest",
    "PathResponse",
    "Problem",
    "ReadyResponse",
    "TransformRequest",
    "TransformResponse",
]

INT64_MAX = 2**63 - 1
DIGEST_PATTERN = r"^sha256:[0-9a-f]{64}$"
"""How an uploaded array is named: the SHA-256 of its .npy file."""
MAX_AXES = 10
"""A lattice has 1 to 10 axes."""

# "x-limit" marks a bound that comes from the settings: the API document states the configured value there
# (catalytic.service.openapi); the models themselves check only what holds whatever the settings say.
CoordinateValue = Annotated[StrictInt, Field(ge=0, le=INT64_MAX, json_schema_extra={"x-limit": "coordinate"})]
Coordinate = Annotated[
    list[CoordinateValue],
    Field(
        min_length=1,
        max_length=MAX_AXES,
        description="A vertex: one integer per axis, 0 <= c[k] < shape[k].",
    ),
]
AxisLength = Annotated[StrictInt, Field(ge=1, le=INT64_MAX, json_schema_extra={"x-limit": "axis"})]
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


class ArrayRef(_Model):
    """An array uploaded with POST /api/arrays, named by the digest its upload answered."""

    array: str = Field(pattern=DIGEST_PATTERN, description="sha256:<hex> of the uploaded .npy file.")


class ArrayUploaded(BaseModel):
    """An uploaded array: its digest (use it as ``{"array": digest}``), dtype, shape and value summary."""

    digest: str
    dtype: str
    shape: list[int]
    nbytes: int = Field(description="Bytes of the stored .npy file (GET url downloads it).")
    minimum: float | None
    maximum: float | None
    nan: bool
    infinite: bool
    created_at: float
    url: str


class LatticeCreate(_Model):
    """A lattice: shape, periodic axes, obstacle generators, an optional explicit mask and weights."""

    shape: Annotated[
        list[AxisLength],
        Field(
            min_length=1,
            max_length=MAX_AXES,
            description="Axis lengths, 1 to 10 axes; their product, the vertex count, is within the vertex budget "
            "(413 past it).",
            json_schema_extra={"x-limit": "vertices"},
        ),
    ]
    periodic: StrictBool | Annotated[list[StrictBool], Field(min_length=1, max_length=MAX_AXES)] = False
    obstacles: Annotated[list[Obstacle], Field(max_length=1024)] = []
    blocked: list[Coordinate] | str | ArrayRef | None = Field(
        None,
        description="Blocked vertices as a list of coordinates, or base64 of the C-order flat mask "
        "packed 8 vertices a byte, least significant bit first, or an uploaded bool/uint8 array.",
    )
    weights: list[Any] | str | ArrayRef | None = Field(
        None,
        description="Per-vertex entry costs: a nested list of the lattice's shape, base64 of C-order float64, "
        "or an uploaded float64/float32/uint8 array.",
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
    method: str | None = Field(default=None, description="The method that ran: `auto` resolved by a fixed rule.")
    algorithm_version: int | None = Field(
        default=None, description="Version of the methods' tie-breaking and of `auto`'s rule that found the path."
    )
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
    degree_histogram: dict[Annotated[str, StringConstraints(pattern=r"^[0-9]+$")], int] = Field(
        description="Open vertices by degree: the degree (as a JSON object key) and how many open vertices have it."
    )
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
    params: dict[str, Any] = Field(
        default_factory=dict,
        description="shortest_path: ShortestPathParams; distance_field: DistanceFieldParams; components and "
        "analyze: none ({}).",
    )
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


class JobPlacement(BaseModel):
    """Where a job runs and why: the worker it wanted, the one that ran it (null until it starts), the reason when
    they differ (a GPU job no GPU worker took within CATALYTIC_GPU_WAIT_S, or none was alive)."""

    wanted: Literal["gpu", "cpu"]
    ran_on: Literal["gpu", "cpu"] | None
    reason: str | None


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
    placement: JobPlacement


TransformOp = Literal["xor", "add", "rotate", "permute"]
DTYPE_PATTERN = (
    r"^[<>=|]?(?:[biufc][0-9]{1,2}|[?bBhHiIlLqQpPefdgFDG]|bool|u?int(?:8|16|32|64)?|float(?:16|32|64|96|128)?"
    r"|complex(?:64|128|192|256)?|half|single|double|longdouble)$"
)


class TransformRequest(_Model):
    """An array (base64 of its C-order bytes, with dtype and shape) and the reversible operation(s) to apply."""

    data: str
    dtype: str = Field(
        max_length=32,
        pattern=DTYPE_PATTERN,
        description="A NumPy dtype of booleans, integers, floats or complex numbers: float64, <u4, |b1, ...",
    )
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


class FieldProblem(BaseModel):
    """One bad field of a request."""

    field: str = Field(description="Its full path in the request: params.goal, obstacles[0].p; body for the body.")
    message: str
    allowed: str | None = Field(description="What the field may hold, when that can be said.")


class Problem(BaseModel):
    """Every error: RFC 9457 problem details (application/problem+json) with a code, the request id and fields."""

    type: str = Field(description="urn:catalytic:problem:<code>")
    title: str
    status: Annotated[int, Field(ge=400, le=599)]
    detail: str
    instance: str | None = Field(description="The request's path.")
    code: str = Field(description="Stable and machine-readable: invalid_input, too_large, not_found, ...")
    request_id: str | None = Field(description="Also in the X-Request-ID header, and in the server's log lines.")
    errors: list[FieldProblem]


class LatticeDeleted(BaseModel):
    """The lattice is gone, with its arrays."""

    id: str
    deleted: bool


class JobResult(BaseModel):
    """A succeeded job's answer; an array result is downloaded from ``array.url`` (.npy)."""

    id: str
    operation: str
    result: dict[str, Any]
    array_url: str | None
    array: dict[str, Any] | None
    expires_at: float | None
    placement: JobPlacement


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
