"""Every Prometheus metric of the service, defined here and nowhere else.

Under several uvicorn workers the metrics live in ``PROMETHEUS_MULTIPROC_DIR`` (prometheus-client's
multiprocess mode) and the metrics port serves their aggregate; gauges declare how processes combine:

* ``livesum``: a per-process quantity (in-flight requests, queued jobs, cache bytes), summed;
* ``mostrecent``: a reading of something outside the process (the database, Redis), which every process
  takes on its own; the latest reading wins, so a process that died never pins a stale value.

The exposition (the port, the registry it serves, the multiprocess directory) is in
:mod:`catalytic.service.exposition`, which defines no metric: the supervising process of ``catalytic serve``
serves the aggregate without adding samples of its own.

The alert rules, dashboards and runbooks in ``k8s/components/monitoring/`` and ``docs/runbooks.md`` are held
against what this module emits by ``tests/deploy/test_monitoring_contract.py``.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from catalytic.service.exposition import scrape_registry, start_metrics_server

__all__ = [
    "ACTIVE_LATTICES",
    "BACKEND_FALLBACKS",
    "CACHE_CONFIGURED",
    "CACHE_HITS",
    "CACHE_MISSES",
    "CACHE_UP",
    "DATABASE_PING_DURATION",
    "DATABASE_UP",
    "HTTP_REQUESTS",
    "HTTP_REQUESTS_IN_FLIGHT",
    "HTTP_REQUEST_DURATION",
    "IDEMPOTENT_REPLAYS",
    "JOBS",
    "JOBS_TAKEN_OVER",
    "JOB_OLDEST_QUEUED_AGE",
    "JOB_PLACEMENTS",
    "JOB_QUEUE_CAPACITY",
    "JOB_QUEUE_SIZE",
    "LATTICE_CACHE_BYTES",
    "LATTICE_OPERATIONS",
    "LATTICE_OPERATION_DURATION",
    "MEMORY_EFFICIENCY_RATIO",
    "PATH_REQUEST_DURATION",
    "RESULTS_STORE_BYTES",
    "RESULTS_STORE_LIMIT_BYTES",
    "RESULTS_STORE_UP",
    "SIZE_CLASSES",
    "scrape_registry",
    "size_class",
    "start_metrics_server",
]

# The latency objective's thresholds (50 ms warning, 100 ms objective) are bucket bounds, so the burn rates
# and quantiles the rules compute are exact at them.
_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

SIZE_CLASSES = ((10**4, "up_to_1e4"), (10**6, "up_to_1e6"))
"""Vertex-count classes of path queries: (inclusive upper bound, label); larger lattices are ``over_1e6``.

The latency objective covers ``up_to_1e4`` and ``up_to_1e6``: with the classes apart, a burst of large
lattices cannot hide slow answers on small ones, nor the reverse.
"""


def size_class(vertices: int) -> str:
    """The ``size_class`` label of a lattice of ``vertices`` vertices.

    Examples
    --------
    >>> size_class(64), size_class(10**6), size_class(10**6 + 1)
    ('up_to_1e4', 'up_to_1e6', 'over_1e6')
    """
    for bound, label in SIZE_CLASSES:
        if vertices <= bound:
            return label
    return "over_1e6"


HTTP_REQUEST_DURATION = Histogram(
    "http_request_duration_seconds",
    "Time to answer an HTTP request.",
    ["method", "route", "status"],
    buckets=_LATENCY_BUCKETS,
)
HTTP_REQUESTS = Counter("http_requests", "HTTP requests answered.", ["method", "route", "status"])
HTTP_REQUESTS_IN_FLIGHT = Gauge(
    "http_requests_in_flight", "HTTP requests received and not yet answered.", multiprocess_mode="livesum"
)
PATH_REQUEST_DURATION = Histogram(
    "path_request_duration_seconds",
    "Time to answer POST /api/lattice/path, by the vertex count of the lattice queried (size_class: up_to_1e4, "
    "up_to_1e6, over_1e6, or unknown for a cache hit on a stored lattice this process does not hold).",
    ["size_class"],
    buckets=_LATENCY_BUCKETS,
)
LATTICE_OPERATIONS = Counter(
    "lattice_operations",
    "Lattice computations run, by operation and the backend that ran them.",
    ["operation", "backend"],
)
LATTICE_OPERATION_DURATION = Histogram(
    "lattice_operation_duration_seconds",
    "Compute time of lattice operations (excluding queueing).",
    ["operation"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0, 30.0, 120.0, 600.0),
)
MEMORY_EFFICIENCY_RATIO = Gauge(
    "memory_efficiency_ratio",
    "Baseline (igraph) bytes over bytes actually held, from the memory report of the latest lattice created.",
    multiprocess_mode="mostrecent",
)
ACTIVE_LATTICES = Gauge(
    "active_lattices", "Lattices stored in the database (all replicas).", multiprocess_mode="mostrecent"
)
LATTICE_CACHE_BYTES = Gauge(
    "lattice_cache_bytes",
    "Bytes of the arrays held by the materialised lattices in the serving processes' L1 cache.",
    multiprocess_mode="livesum",
)
CACHE_HITS = Counter("cache_hits", "Cache hits by layer.", ["layer"])
CACHE_MISSES = Counter("cache_misses", "Cache misses by layer.", ["layer"])
CACHE_UP = Gauge(
    "cache_redis_up",
    "1 while the Redis cache answers, 0 while the service runs without it (read every few seconds).",
    multiprocess_mode="mostrecent",
)
CACHE_CONFIGURED = Gauge(
    "cache_redis_configured", "1 when REDIS_URL names a Redis cache, 0 when the service runs without one.",
    multiprocess_mode="max",
)  # fmt: skip
DATABASE_UP = Gauge(
    "database_up", "1 while the database answers a probe query, 0 while it does not.", multiprocess_mode="mostrecent"
)
DATABASE_PING_DURATION = Histogram(
    "database_ping_duration_seconds",
    "Round trip of the database probe query (SELECT 1), including a connection from the pool.",
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)
RESULTS_STORE_BYTES = Gauge(
    "results_store_bytes",
    "Bytes of stored job results, all replicas, by location: database (JSON bodies and the .npy arrays kept "
    "in rows) and store (the .npy files of the results store, RESULTS_DIR or RESULTS_S3_BUCKET).",
    ["location"],
    multiprocess_mode="mostrecent",
)
RESULTS_STORE_LIMIT_BYTES = Gauge(
    "results_store_limit_bytes",
    "The size the results store may reach (RESULTS_STORE_MAX_BYTES: the RESULTS_DIR volume or the bucket's "
    "budget), by location; 0 when no limit is declared.",
    ["location"],
    multiprocess_mode="mostrecent",
)
RESULTS_STORE_UP = Gauge(
    "results_store_up",
    "1 when the latest sweep of the results store (RESULTS_DIR or RESULTS_S3_BUCKET) could list it, 0 when not.",
    multiprocess_mode="mostrecent",
)
JOB_QUEUE_SIZE = Gauge("job_queue_size", "Jobs queued or running in this process.", multiprocess_mode="livesum")
JOB_QUEUE_CAPACITY = Gauge(
    "job_queue_capacity",
    "Jobs a process queues or runs before it refuses submissions (CATALYTIC_MAX_QUEUED_JOBS), summed.",
    multiprocess_mode="livesum",
)
JOB_OLDEST_QUEUED_AGE = Gauge(
    "job_oldest_queued_age_seconds",
    "Age of the oldest job still waiting to start, all replicas (0 when none waits).",
    multiprocess_mode="mostrecent",
)
JOBS = Counter("jobs", "Jobs finished, by final status.", ["status"])
TENANT_QUOTA_USED = Gauge(
    "tenant_quota_used",
    "A tenant's use of a quota, as last checked (stored lattices, queued jobs, result bytes, requests this second).",
    ["tenant", "quota"],
    multiprocess_mode="mostrecent",
)
TENANT_QUOTA_LIMIT = Gauge(
    "tenant_quota_limit", "The value of each per-tenant quota.", ["quota"], multiprocess_mode="mostrecent"
)
JOBS_TAKEN_OVER = Counter(
    "jobs_taken_over", "Jobs this process took over after their owner stopped renewing its lease."
)
JOB_PLACEMENTS = Counter(
    "job_placements",
    "Jobs started, by the worker they wanted (gpu, cpu) and the one that ran them (a gpu job on cpu: none took it).",
    ["wanted", "ran_on"],
)
BACKEND_FALLBACKS = Counter("backend_fallbacks", "Calls that fell back from the GPU to numba.")
IDEMPOTENT_REPLAYS = Counter(
    "idempotent_replays",
    "Answers replayed from the record of an earlier request with the same Idempotency-Key, by route.",
    ["route"],
)
