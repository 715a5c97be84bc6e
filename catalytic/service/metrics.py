"""Every Prometheus metric of the service, defined here and nowhere else.

Under several uvicorn workers the metrics live in ``PROMETHEUS_MULTIPROC_DIR`` (prometheus-client's
multiprocess mode) and the metrics port serves their aggregate; gauges declare how processes combine.
"""

from __future__ import annotations

import logging
import os
import threading
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.multiprocess import MultiProcessCollector

__all__ = [
    "ACTIVE_LATTICES",
    "BACKEND_FALLBACKS",
    "CACHE_HITS",
    "CACHE_MISSES",
    "CACHE_UP",
    "HTTP_REQUESTS",
    "HTTP_REQUEST_DURATION",
    "JOBS",
    "JOB_QUEUE_SIZE",
    "LATTICE_OPERATIONS",
    "LATTICE_OPERATION_DURATION",
    "MEMORY_EFFICIENCY_RATIO",
    "scrape_registry",
    "start_metrics_server",
]

log = logging.getLogger("catalytic.service")

HTTP_REQUEST_DURATION = Histogram(
    "http_request_duration_seconds",
    "Time to answer an HTTP request.",
    ["method", "route", "status"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)
HTTP_REQUESTS = Counter("http_requests", "HTTP requests answered.", ["method", "route", "status"])
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
CACHE_HITS = Counter("cache_hits", "Cache hits by layer.", ["layer"])
CACHE_MISSES = Counter("cache_misses", "Cache misses by layer.", ["layer"])
CACHE_UP = Gauge(
    "cache_redis_up", "1 while the Redis cache answers, 0 while the service runs without it.", multiprocess_mode="min"
)
JOB_QUEUE_SIZE = Gauge("job_queue_size", "Jobs queued or running in this process.", multiprocess_mode="livesum")
JOBS = Counter("jobs", "Jobs finished, by final status.", ["status"])
BACKEND_FALLBACKS = Counter("backend_fallbacks", "Calls that fell back from the GPU to numba.")

_server_lock = threading.Lock()
_server_started = False


def scrape_registry() -> Any:
    """The registry the metrics port serves: the multiprocess aggregate when configured, else the default."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        MultiProcessCollector(registry)
        return registry
    from prometheus_client import REGISTRY

    return REGISTRY


def start_metrics_server(port: int, host: str = "0.0.0.0") -> bool:
    """Serve ``/metrics`` on its own port in a daemon thread, once per process.

    Returns False when the port is taken (another worker of this server already serves the aggregate).
    """
    global _server_started
    with _server_lock:
        if _server_started:
            return True
        try:
            start_http_server(port, addr=host, registry=scrape_registry())
        except OSError as exc:
            log.info("metrics port %d not bound by this process: %s", port, exc)
            return False
        _server_started = True
        log.info("metrics served on %s:%d", host, port)
        return True
