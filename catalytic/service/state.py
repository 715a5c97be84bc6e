"""The per-process service state shared by the routes: database, caches, pools, job runner, limits."""

from __future__ import annotations

import asyncio
import functools
import math
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from starlette.requests import Request

from catalytic.lattice import Lattice
from catalytic.operations import run_operation
from catalytic.service import compute, uploads
from catalytic.service import db as queries
from catalytic.service.bodies import BodyParser
from catalytic.service.cache import LRU, ResultCache
from catalytic.service.errors import BackendUnavailable, NotFound, PayloadTooLarge, Timeout, invalid_body
from catalytic.service.freshness import ExistenceCache
from catalytic.service.jobs import Emit, JobRunner
from catalytic.service.pool import Outcome, ProcessPool
from catalytic.service.schemas import LatticeCreate
from catalytic.service.settings import Settings

__all__ = ["ResolvedLattice", "ServiceState", "read_body", "read_model", "service"]

T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)


@dataclass
class ResolvedLattice:
    """A lattice named by a request: stored (``lattice_id``) or inline, with its cache key and stored arrays."""

    lattice: Lattice
    key: str
    lattice_id: str | None
    arrays: dict[str, bytes] = field(default_factory=dict)


@dataclass
class ServiceState:
    """Everything a route needs; one instance per process, kept on ``app.state.service``."""

    settings: Settings
    db: Any
    cache: ResultCache
    runner: JobRunner
    threads: ThreadPoolExecutor
    emit: Emit | None
    lattices: LRU[Lattice]
    existing: ExistenceCache
    pool: ProcessPool | None = None
    bodies: BodyParser | None = None
    """Validates request bodies, the large ones in parse processes (:mod:`catalytic.service.bodies`)."""
    warm_up: asyncio.Future[None] | None = None
    sweeper: Any = None
    """The results sweeper (:class:`catalytic.service.results.ResultSweeper`), started with the app."""
    memory_limit: tuple[int, str] = (0, "unknown")
    """The memory limit jobs are admitted against, and its source (:func:`catalytic.service.admission.memory_limit`)."""

    async def compute(self, fn: Callable[..., T], *args: Any) -> T:
        """Run blocking work on the thread pool within the request time limit (504 past it)."""
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self.settings.request_timeout_s):
                return await loop.run_in_executor(self.threads, fn, *args)
        except TimeoutError:
            raise self._timeout() from None

    async def run_inline(
        self, resolved: ResolvedLattice, operation: str, params: dict[str, Any], backend: str | None
    ) -> Outcome:
        """Run one operation within the request time limit (504 past it).

        It runs in the compute processes (:mod:`catalytic.service.pool`), or on the thread pool when
        ``CATALYTIC_COMPUTE_POOL=thread``; either way the answer comes back as its JSON bodies.
        """
        options: dict[str, Any] = {
            "backend": backend or self.settings.backend,
            "memory": self.settings.lattice_memory_optimization,
            "max_sizes": self.settings.max_inline_sizes,
        }
        if self.pool is None:
            run = functools.partial(run_operation, resolved.lattice, operation, params, **options)
            answer, _ = await self.compute(run)
            return Outcome(*compute.answer_bodies(answer), answer.get("backend"), 0)
        try:
            return await self.pool.run(
                resolved.key, resolved.lattice, operation, params, options, self.settings.request_timeout_s
            )
        except TimeoutError:
            raise self._timeout() from None

    def _timeout(self) -> Timeout:
        return Timeout(
            f"the computation ran past the request time limit of {self.settings.request_timeout_s} s; "
            "submit it as a job (POST /api/jobs)"
        )

    async def check_backend(self, backend: str | None, *, job: bool) -> None:
        """Refuse (503 with Retry-After) a backend asked for by name that this server cannot run.

        Another replica may have it (GPU pods behind the same Service), hence 503 and not 422. A job runs on the
        Ray cluster when ``RAY_ADDRESS`` is set, where the workers' backends count, not this server's.
        """
        if backend is None or backend == "auto" or (job and os.environ.get("RAY_ADDRESS")):
            return
        from catalytic.kernels.backend import backends

        available = await asyncio.to_thread(backends)  # probes once per process; a probe may import CuPy
        if backend not in available:
            raise BackendUnavailable(
                f"the {backend} backend cannot run on this server (it has: {', '.join(available)})",
                self.settings.retry_after_s,
                fields=[
                    {"field": "backend", "message": "not available here", "allowed": ", ".join(["auto", *available])}
                ],
            )

    def check_size(self, vertices: int, weighted: bool) -> None:
        """Refuse (413) a lattice over the per-request vertex or memory budget."""
        if vertices > self.settings.max_vertices:
            raise PayloadTooLarge(
                f"{vertices} vertices exceed the per-request budget",
                fields=[
                    {
                        "field": "shape",
                        "message": f"{vertices} vertices",
                        "allowed": f"at most {self.settings.max_vertices} vertices",
                    }
                ],
            )
        needed = compute.estimate_bytes(vertices, weighted)
        if needed > self.settings.max_request_memory_bytes:
            raise PayloadTooLarge(
                f"the computation would need about {needed} bytes, over the per-request memory budget",
                fields=[
                    {
                        "field": "shape",
                        "message": f"about {needed} bytes",
                        "allowed": f"at most {self.settings.max_request_memory_bytes} bytes",
                    }
                ],
            )

    @property
    def arrays(self) -> uploads.ArrayStore:
        """The uploaded arrays (ARRAYS_DIR)."""
        return uploads.ArrayStore(uploads.arrays_dir(self.settings))

    async def build(self, body: LatticeCreate, tenant: str) -> Lattice:
        """Materialise a lattice from a create body after the size checks (arrays decode on the thread pool).

        Arrays the body names by digest are ``tenant``'s uploads, memory-mapped (404 for another's).
        """
        self.check_size(math.prod(body.shape), body.weights is not None)
        # The arrays go to the decoders as they are: a large body's come packed (catalytic.service.bodies).
        spec = {**body.model_dump(exclude={"blocked", "weights"}), "blocked": body.blocked, "weights": body.weights}
        if body.blocked is None and body.weights is None:
            return compute.build_lattice(spec, self.settings.max_vertices)
        opened = await self.compute(uploads.open_references, spec, self.arrays, tenant)
        return await self.compute(compute.build_lattice, spec, self.settings.max_vertices, opened)

    async def stored(self, lattice_id: str, tenant: str, *, known_to_exist: bool = False) -> ResolvedLattice:
        """A stored lattice of ``tenant``, checked against the database on every call so a deleted id (or another
        tenant's) is never served.

        A lattice already materialised in L1 needs only the existence check (free while the embedded database
        is unchanged, one indexed read otherwise); the stored record is read only to materialise it.
        """
        cached = self.lattices.get(lattice_id)
        if cached is not None and (known_to_exist or await self.exists(lattice_id, tenant)):
            return ResolvedLattice(cached, f"id:{lattice_id}", lattice_id, {})
        record = await queries.get_lattice(self.db, lattice_id, tenant)
        if record is None:
            raise NotFound(
                f"no lattice {lattice_id!r}", fields=[{"field": "lattice_id", "message": "unknown id", "allowed": None}]
            )
        lattice = self.lattices.get(lattice_id)
        arrays: dict[str, bytes] = {}
        if lattice is None:
            spec = record["spec"]
            if spec.get("blocked") or spec.get("weights"):
                arrays = await queries.fetch_arrays(self.db, lattice_id)
            lattice = await self.compute(
                compute.materialise, spec, arrays, self.settings.max_vertices, uploads.arrays_dir(self.settings)
            )
            self.lattices.put(lattice_id, lattice)
        return ResolvedLattice(lattice, f"id:{lattice_id}", lattice_id, arrays)

    async def exists(self, lattice_id: str, tenant: str) -> bool:
        """Whether ``tenant`` has a lattice stored under this id now: one indexed read, skipped while the embedded
        database is unchanged."""
        token = self.existing.token()
        # Remembered per tenant: another tenant's id is unknown here, exactly as a missing one.
        held = f"{tenant}/{lattice_id}"
        if self.existing.known(held, token):
            return True
        found = await queries.lattice_exists(self.db, lattice_id, tenant)
        if found:
            self.existing.remember(held, token)
        return found

    async def resolve(
        self, lattice_id: str | None, inline: LatticeCreate | None, tenant: str, *, known_to_exist: bool = False
    ) -> ResolvedLattice:
        """The lattice a computation request of ``tenant`` names (``known_to_exist``: this request has just run
        :meth:`exists`)."""
        if lattice_id is not None:
            return await self.stored(lattice_id, tenant, known_to_exist=known_to_exist)
        assert inline is not None
        lattice = await self.build(inline, tenant)
        return ResolvedLattice(lattice, f"spec:{lattice.digest()}", None, compute.array_bytes(lattice))


def service(request: Request) -> ServiceState:
    """The state of the app serving ``request``."""
    state: ServiceState = request.app.state.service
    return state


async def read_body(request: Request) -> bytes:
    """The body as sent, read within MAX_BODY_BYTES (413 past it)."""
    limit = service(request).settings.max_body_bytes
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"the body of {declared} bytes is over the limit of {limit} bytes")
    chunks = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"the body is over the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def read_model(request: Request, model: type[M]) -> M:
    """Read the body within MAX_BODY_BYTES (413 past it) and validate it against ``model`` (422 on error).

    Only the reading happens on the event loop; a large body is validated in a parse process.
    """
    st = service(request)
    raw = await read_body(request) or b"{}"
    try:
        if st.bodies is None:
            return model.model_validate_json(raw)
        return await st.bodies.parse(model, raw)
    except ValidationError as exc:
        raise invalid_body(exc, model) from None
