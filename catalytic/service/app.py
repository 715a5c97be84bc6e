"""The Starlette application: every route in one table, start-up and shut-down, the webhook doors.

This is the only module of the service that imports :mod:`catalytic.webhooks`: it mounts the webhook
management API under ``/api/webhooks`` (behind the same API keys), hands the outbox ``emit`` to the routes
and the job runner (so an event is written in the transaction that records the state change), and starts
the webhook worker in-process when configured to.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from starlette.applications import Starlette
from starlette.datastructures import State
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import BaseRoute, Route

from catalytic.service import db as queries
from catalytic.service.admission import memory_limit
from catalytic.service.auth import ApiKeyMiddleware
from catalytic.service.bodies import BodyParser
from catalytic.service.cache import ResultCache, lattice_lru
from catalytic.service.crosssite import CrossSiteMiddleware
from catalytic.service.errors import NotFound, UnexpectedErrors, exception_handlers
from catalytic.service.freshness import ExistenceCache
from catalytic.service.idempotency import KeySweeper, idempotent
from catalytic.service.jobs import JobRunner, replica_id, worker_capability
from catalytic.service.keys import KeyRing
from catalytic.service.lifeline import die_with_parent
from catalytic.service.logs import configure_logging
from catalytic.service.metrics import ACTIVE_LATTICES, BACKEND_FALLBACKS, start_metrics_server
from catalytic.service.openapi import DOCS_HTML, DOCS_INIT_JS, Endpoint, Limits, docs_asset, openapi_document
from catalytic.service.pool import ProcessPool
from catalytic.service.probes import Probes
from catalytic.service.quotas import RateLimitMiddleware
from catalytic.service.results import ResultSweeper, store_config
from catalytic.service.routes import arrays, health, jobs, lattices, transforms
from catalytic.service.schemas import (
    AnalyzeRequest,
    AnalyzeResponse,
    ArrayUploaded,
    ComponentsRequest,
    ComponentsResponse,
    DistanceFieldRequest,
    HealthResponse,
    JobAccepted,
    JobRequest,
    JobResult,
    JobStatus,
    LatticeCreate,
    LatticeDeleted,
    LatticeInfo,
    LatticeList,
    PathRequest,
    PathResponse,
    ReadyResponse,
    TransformRequest,
    TransformResponse,
)
from catalytic.service.settings import Settings
from catalytic.service.state import ServiceState
from catalytic.service.telemetry import RequestMiddleware
from catalytic.service.uploads import DTYPES, NPY_MEDIA_TYPE, RAW_MEDIA_TYPE
from catalytic.tenancy import parse_key_lines

__all__ = ["ENDPOINTS", "create_app"]

log = logging.getLogger("catalytic.service")

_JOB_ERRORS = (404, 413, 503)
_WEBHOOKS_PREFIX = "/api/webhooks"
_HOT_PATHS = ("/api/lattice/path", "/api/lattice/analyze", "/api/lattice/components")
_RANGE_HEADERS = (
    ("Range", "string", "bytes=a-b, bytes=a- or bytes=-n: that part only (206), to resume a download"),
    ("If-Range", "string", "the ETag the part must come from; another sends the whole body"),
)
ENDPOINTS: list[Endpoint] = [
    Endpoint("GET", "/health", health.health, "Liveness", responses={200: HealthResponse}, open=True, tag="operations"),
    Endpoint(
        "GET",
        "/ready",
        health.ready,
        "Readiness",
        responses={200: ReadyResponse, 503: ReadyResponse},
        open=True,
        tag="operations",
    ),
    Endpoint(
        "POST",
        "/api/lattice/create",
        idempotent(lattices.create_lattice),
        "Create a lattice",
        LatticeCreate,
        {201: LatticeInfo},
        (404, 413, 503),
    ),
    Endpoint(
        "GET",
        "/api/lattices",
        lattices.list_lattices,
        "List lattices",
        responses={200: LatticeList},
        errors=(422,),
        query=(
            ("limit", {"type": "integer", "minimum": 1, "x-limit": "page_limit"}, "page size"),
            ("cursor", "string", "next_cursor of the last page"),
        ),
    ),
    Endpoint(
        "GET",
        "/api/lattice/{lattice_id}",
        lattices.get_lattice,
        "Get a lattice",
        responses={200: LatticeInfo},
        errors=(404,),
    ),
    Endpoint(
        "DELETE",
        "/api/lattice/{lattice_id}",
        lattices.delete_lattice,
        "Delete a lattice",
        responses={200: LatticeDeleted},
        errors=(404,),
    ),
    Endpoint(
        "POST",
        "/api/lattice/path",
        idempotent(lattices.shortest_path),
        "Shortest path (202 + job when large)",
        PathRequest,
        {200: PathResponse, 202: JobAccepted},
        (*_JOB_ERRORS, 504),
    ),
    Endpoint(
        "POST",
        "/api/lattice/analyze",
        idempotent(lattices.analyze),
        "Structure report",
        AnalyzeRequest,
        {200: AnalyzeResponse, 202: JobAccepted},
        (*_JOB_ERRORS, 504),
    ),
    Endpoint(
        "POST",
        "/api/lattice/components",
        idempotent(lattices.components),
        "Component count and sizes",
        ComponentsRequest,
        {200: ComponentsResponse, 202: JobAccepted},
        (*_JOB_ERRORS, 504),
    ),
    Endpoint(
        "POST",
        "/api/lattice/distance-field",
        idempotent(lattices.distance_field),
        "Distance field (a job)",
        DistanceFieldRequest,
        {202: JobAccepted},
        _JOB_ERRORS,
    ),
    Endpoint(
        "POST",
        "/api/lattice/transform",
        transforms.transform,
        "Reversible transform of array bytes",
        TransformRequest,
        {200: TransformResponse},
        (413, 504),
    ),
    Endpoint(
        "POST",
        "/api/lattice/inverse",
        transforms.inverse,
        "Inverse of a transform",
        TransformRequest,
        {200: TransformResponse},
        (413, 504),
    ),
    Endpoint(
        "POST",
        "/api/jobs",
        idempotent(jobs.create_job),
        "Submit a job",
        JobRequest,
        {202: JobAccepted},
        _JOB_ERRORS,
        tag="jobs",
    ),
    Endpoint(
        "GET", "/api/jobs/{job_id}", jobs.get_job, "Job status", responses={200: JobStatus}, errors=(404,), tag="jobs"
    ),
    Endpoint(
        "GET",
        "/api/jobs/{job_id}/result",
        jobs.get_job_result,
        "Job result (JSON, or .npy with ?format=npy)",
        responses={200: JobResult},
        errors=(404, 409, 410),
        query=(("format", "string", "npy for the array result"),),
        tag="jobs",
        media_types={200: "application/x-npy", 206: "application/x-npy"},
        headers=_RANGE_HEADERS,
    ),
    Endpoint(
        "POST",
        "/api/arrays",
        arrays.upload_array,
        "Upload an array (.npy, or raw bytes with dtype and shape) for blocked or weights",
        responses={201: ArrayUploaded},
        errors=(),
        query=(
            ("dtype", {"type": "string", "enum": list(DTYPES)}, "dtype of a raw body"),
            ("shape", {"type": "string", "pattern": r"^[0-9]+(,[0-9]+)*$"}, "shape of a raw body: 100,200"),
        ),
        tag="arrays",
        body_media_types=(NPY_MEDIA_TYPE, RAW_MEDIA_TYPE),
    ),
    Endpoint(
        "GET",
        "/api/arrays/{digest}",
        arrays.get_array,
        "Download an uploaded array (.npy; Range for a part)",
        responses={200: None, 206: None},
        errors=(404, 416),
        tag="arrays",
        media_types={200: NPY_MEDIA_TYPE, 206: NPY_MEDIA_TYPE},
        headers=_RANGE_HEADERS,
    ),
    Endpoint(
        "DELETE",
        "/api/arrays/{digest}",
        arrays.delete_array,
        "Delete an uploaded array (this tenant's claim; the file once no tenant holds it)",
        responses={200: arrays.ArrayDeleted},
        errors=(404, 409),
        tag="arrays",
    ),
    Endpoint(
        "DELETE",
        "/api/jobs/{job_id}",
        jobs.cancel_job,
        "Cancel a job",
        responses={200: JobStatus},
        errors=(404, 409),
        tag="jobs",
    ),
]


async def _docs(request: Request) -> Response:
    return HTMLResponse(DOCS_HTML)


async def _docs_asset(request: Request) -> Response:
    name = request.path_params["name"]
    if name == "init.js":
        return Response(DOCS_INIT_JS, media_type="text/javascript")
    try:
        content, media_type = docs_asset(name)
    except KeyError:
        raise NotFound(f"no asset {name!r}") from None
    return Response(content, media_type=media_type, headers={"Cache-Control": "public, max-age=86400"})


def _routes(document: dict[str, Any], webhook_routes: list[BaseRoute]) -> list[BaseRoute]:
    async def openapi(request: Request) -> Response:
        return JSONResponse(document)

    # Routing tries routes in order: the hottest ones go first.
    ordered = sorted(ENDPOINTS, key=lambda ep: ep.path not in _HOT_PATHS)
    routes: list[BaseRoute] = [Route(ep.path, ep.endpoint, methods=[ep.method]) for ep in ordered]
    routes += [
        Route("/openapi.json", openapi, methods=["GET"]),
        Route("/docs", _docs, methods=["GET"]),
        Route("/docs/assets/{name}", _docs_asset, methods=["GET"]),
    ]
    return routes + webhook_routes


def _webhook_endpoints(prefix: str) -> list[Endpoint]:
    """The webhook routes as the API document describes them (their tables live in catalytic.webhooks.api)."""
    from catalytic.webhooks.api import OPERATIONS, ROUTES

    described = []
    for path, methods in ROUTES.items():
        for method, endpoint in methods.items():
            operation = OPERATIONS[path][method]
            summary = (endpoint.__doc__ or "").strip().splitlines()[0].partition(": ")[2] or endpoint.__name__
            described.append(
                Endpoint(
                    method,
                    prefix + path,
                    endpoint,
                    summary,
                    operation.request,
                    operation.responses,
                    operation.errors,
                    tag="webhooks",
                    query_model=operation.query,
                    operation_id=f"webhooks_{endpoint.__name__}",
                    body_optional=operation.body_optional,
                    max_body_bytes=operation.max_body_bytes,
                )
            )
    return described


def _limits(settings: Settings) -> Limits:
    return Limits(
        max_body_bytes=settings.max_body_bytes,
        max_vertices=settings.max_vertices,
        inline_max_vertices=settings.inline_max_vertices,
        max_request_memory_bytes=settings.max_request_memory_bytes,
        max_page_limit=settings.max_page_limit,
        max_upload_bytes=settings.max_upload_bytes,
    )


def _webhook_routes(app_state: Any, settings: Settings) -> list[BaseRoute]:
    import catalytic.webhooks.metrics  # noqa: F401  (the metrics port exposes the webhook metrics too)
    from catalytic.webhooks.api import routes
    from catalytic.webhooks.config import WebhookConfig

    config = WebhookConfig(database_url=settings.database_url, sqlite_path=settings.sqlite_path)
    return routes(lambda: app_state.service.db, config=config, prefix=_WEBHOOKS_PREFIX)


def _outbox() -> Any:
    from catalytic.webhooks.store import emit

    async def record(conn: Any, event_type: str, data: dict[str, Any], *, tenant: str) -> None:
        await emit(conn, event_type, data, tenant=tenant)

    return record


async def _webhook_worker(settings: Settings) -> asyncio.Task[Any]:
    from catalytic.webhooks.config import WebhookConfig
    from catalytic.webhooks.worker import run_worker

    config = WebhookConfig(database_url=settings.database_url, sqlite_path=settings.sqlite_path)
    return asyncio.create_task(run_worker(config, handle_signals=False), name="catalytic-webhook-worker")


def _cross_site(settings: Settings) -> list[Middleware]:
    """The ``Host``, ``Origin`` and media-type checks, behind CORS headers for the listed origins (if any)."""
    origins = settings.cors_allow_origins
    guard = Middleware(CrossSiteMiddleware, allowed_hosts=settings.allowed_hosts, allowed_origins=origins)
    if not origins:
        return [guard]
    cors = Middleware(
        CORSMiddleware,
        allow_origins=list(origins),
        allow_methods=["GET", "POST", "PATCH", "DELETE"],
        allow_headers=["Authorization", "Content-Type", "X-API-Key", "X-Request-Id", "Idempotency-Key"],
        expose_headers=["Location", "Retry-After", "X-Request-Id", "Idempotent-Replayed"],
    )
    return [cors, guard]


def _warm_up(backend: str) -> None:
    from catalytic.warmup import warm_start

    warm_start(backend)


def _freeze_heap(_: object) -> None:
    """Exempt the objects of start-up (modules, compiled kernels, app) from the cyclic collector's full passes.

    A process that has loaded numba, pydantic and the app tracks close to 200,000 container objects, and every
    full (oldest-generation) collection walks them all. Under load on a 2-core node such a pass was measured
    at about 100 ms with the event loop stalled, several times a second, and it set the latency tail; frozen,
    the same pass takes about 2 ms. What requests allocate afterwards is collected as usual, and the heap is
    unfrozen when the app stops. Only the young generations are collected first: a full pass here would
    itself stall the loop just as the first requests arrive.
    """
    gc.collect(1)
    gc.freeze()


_fallback_listener_installed = False


def _count_fallbacks() -> None:
    global _fallback_listener_installed
    if _fallback_listener_installed:
        return
    from catalytic.kernels.backend import on_fallback

    on_fallback(BACKEND_FALLBACKS.inc)
    _fallback_listener_installed = True


def _job_runner(settings: Settings, database: Any, emit: Any, limit_bytes: int) -> JobRunner:
    """The job runner of one server process; job memory is its share of the limit less the reserve."""
    job_memory = max(0, limit_bytes - settings.memory_reserved_bytes) // settings.web_workers
    return JobRunner(
        database,
        settings.cores_per_process,
        settings.max_queued_jobs,
        settings.job_timeout_s,
        emit,
        replica_id(),
        lease_s=settings.job_lease_seconds,
        max_attempts=settings.job_max_attempts,
        task_defaults={
            "backend": settings.backend,
            "memory": settings.lattice_memory_optimization,
            "max_sizes": settings.max_inline_sizes,
        },
        results=store_config(settings),
        result_ttl_s=settings.result_ttl_s,
        worker_max_rss=settings.job_worker_max_rss_bytes,
        worker_max_jobs=settings.job_worker_max_jobs,
        memory_budget=job_memory,
        capability=worker_capability(settings.worker_capability, settings.backend),
        gpu_min_vertices=settings.gpu_min_vertices,
        gpu_wait_s=settings.gpu_wait_s,
        gpu_contexts=settings.gpu_contexts,
        device_memory_bytes=settings.device_memory_bytes,
        device_reserved_bytes=settings.device_memory_reserved_bytes,
        tenant_running_max=settings.tenant_max_concurrent_jobs,
    )


def _service_state(settings: Settings, database: Any, runner: JobRunner, emit: Any) -> ServiceState:
    """The per-process state a request uses: database, caches, compute threads and processes, the job runner."""
    from catalytic.storage import sqlite_file

    state = ServiceState(
        settings=settings,
        db=database,
        cache=ResultCache(settings.result_cache_size, settings.redis_url),
        runner=runner,
        threads=ThreadPoolExecutor(settings.cores_per_process, thread_name_prefix="catalytic-compute"),
        emit=emit,
        lattices=lattice_lru(settings.cache_size, settings.cache_max_bytes),
        existing=ExistenceCache(
            None if database.dialect == "postgresql" else sqlite_file(settings.database_url, settings.sqlite_path)
        ),
    )
    if settings.compute_pool == "process":
        state.pool = ProcessPool(
            settings.cores_per_process,
            settings.cache_size,
            state.threads,
            settings.max_vertices,
            cache_max_bytes=settings.cache_max_bytes,
        )
    return state


def create_app(settings: Settings | None = None) -> Starlette:
    """Build the service.

    Parameters
    ----------
    settings : Settings, optional
        Configuration; read from the environment when omitted.

    Returns
    -------
    starlette.applications.Starlette
        The ASGI app; its lifespan migrates and opens the database, starts the job runner and the metrics port.

    Examples
    --------
    >>> app = create_app(Settings(METRICS_PORT=0))
    >>> sorted(r.path for r in app.routes)[:2]
    ['/api/jobs', '/api/jobs/{job_id}']
    """
    settings = settings or Settings()
    configure_logging(settings.log_level)
    keys = KeyRing(parse_key_lines(",".join(settings.api_keys)))
    closers: list[Any] = []  # what middleware opened and the shut-down closes
    document = openapi_document([*ENDPOINTS, *_webhook_endpoints(_WEBHOOKS_PREFIX)], _limits(settings))

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        from catalytic.storage import migrate, open_database

        # A server process of `catalytic serve --workers N` ends with its supervisor, as it would otherwise
        # go on serving the shared socket unsupervised (a no-op in a process not started by multiprocessing).
        die_with_parent()
        if settings.migrate_on_start:
            await asyncio.to_thread(migrate, settings.database_url, sqlite_path=settings.sqlite_path)
        database = await open_database(
            settings.database_url, sqlite_path=settings.sqlite_path, sqlite_synchronous=settings.sqlite_synchronous
        )
        emit = _outbox()
        limit = memory_limit(settings.memory_limit_bytes)
        runner = _job_runner(settings, database, emit, limit[0])
        state = _service_state(settings, database, runner, emit)
        state.bodies = BodyParser(settings.cores_per_process, settings.parse_offload_bytes, settings.max_vertices)
        app.state.service = state
        await keys.attach(database)
        runner.start()
        _count_fallbacks()
        # Loads the compiled kernels off the event loop now, so the first request does not pay for it.
        warm_up = asyncio.get_running_loop().run_in_executor(state.threads, _warm_up, settings.backend)
        warm_up.add_done_callback(_freeze_heap)
        state.warm_up = warm_up
        ACTIVE_LATTICES.set(await queries.count_lattices(database))
        probes = Probes(database, state.cache, settings.max_queued_jobs)
        probes.start()
        sweeper = ResultSweeper(
            database,
            store_config(settings),
            settings.result_ttl_s,
            settings.result_sweep_s,
            max_bytes=settings.results_store_max_bytes,
            array_ttl_s=settings.array_ttl_s,
        )
        sweeper.start()
        state.sweeper = sweeper
        state.memory_limit = limit
        if settings.metrics_port:
            start_metrics_server(settings.metrics_port, settings.metrics_host)
        idempotency_sweeper = KeySweeper(database, settings.idempotency_ttl_s)
        idempotency_sweeper.start()
        worker = await _webhook_worker(settings) if settings.run_webhook_worker else None
        if keys.required:
            log.info("API keys required (%d configured, %d in the table)", len(keys.configured), len(keys.table))
        else:
            log.warning("no API keys configured: serving without authentication (loopback only)")
        log.info(
            "service ready",
            extra={
                "database": database.dialect,
                "redis": bool(settings.redis_url),
                "webhook_worker": worker is not None,
            },
        )
        try:
            yield
        finally:
            # A warm-up failure (say, an unusable backend) resurfaces on the first request that needs it.
            with contextlib.suppress(Exception):
                await warm_up
            if worker is not None:
                worker.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await worker
            await probes.close()
            await sweeper.close()
            await idempotency_sweeper.close()
            await runner.close()
            if state.pool is not None:
                await state.pool.close()
            state.bodies.close()
            state.threads.shutdown(wait=False, cancel_futures=True)
            await state.cache.close()
            await database.close()
            state.existing.close()  # after the connection: see catalytic.service.freshness
            for close in closers:
                await close()
            gc.unfreeze()

    app_state = State()
    webhook_routes = _webhook_routes(app_state, settings)
    templates = {ep.endpoint: ep.path for ep in ENDPOINTS}
    templates.update({r.endpoint: r.path for r in webhook_routes if isinstance(r, Route)})
    app = Starlette(
        routes=_routes(document, webhook_routes),
        middleware=[
            Middleware(RequestMiddleware, templates=templates),
            Middleware(UnexpectedErrors),
            *_cross_site(settings),
            Middleware(ApiKeyMiddleware, keys=keys),
            Middleware(RateLimitMiddleware, settings=settings, closers=closers),
        ],
        exception_handlers=exception_handlers(),
        lifespan=lifespan,
    )
    app.state = app_state
    return app
