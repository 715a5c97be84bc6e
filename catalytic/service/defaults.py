"""Every default of the service, as named constants (the settings object and docs/configuration.md use them)."""

from __future__ import annotations

from typing import Final

HOST: Final = "127.0.0.1"
PORT: Final = 8080
METRICS_PORT: Final = 8082
METRICS_HOST: Final = "127.0.0.1"
WORKERS: Final = 1
LOG_LEVEL: Final = "INFO"

LATTICE_MEMORY_OPTIMIZATION: Final = "auto"
PARALLEL_CORES: Final = 2
CACHE_SIZE: Final = 64
RESULT_CACHE_SIZE: Final = 4096
MAX_LATTICES: Final = 10_000
BACKEND: Final = "auto"
COMPUTE_POOL: Final = "process"
SQLITE_PATH: Final = "catalytic.db"
SQLITE_SYNCHRONOUS: Final = "FULL"

MAX_BODY_BYTES: Final = 64 * 2**20
MAX_UPLOAD_BYTES: Final = 4 * 2**30
ARRAY_TTL_S: Final = 7 * 24 * 3600
PARSE_OFFLOAD_BYTES: Final = 32 * 2**10
LOOPBACK_HOSTS: Final = ("localhost", "127.0.0.1", "::1")
MAX_VERTICES: Final = 2**28
MAX_REQUEST_MEMORY_BYTES: Final = 4 * 2**30
INLINE_MAX_VERTICES: Final = 2**21
REQUEST_TIMEOUT_S: Final = 30.0
JOB_TIMEOUT_S: Final = 600.0
MAX_QUEUED_JOBS: Final = 64
RETRY_AFTER_S: Final = 5
PAGE_LIMIT: Final = 50
MAX_PAGE_LIMIT: Final = 500
MAX_INLINE_SIZES: Final = 10_000

CACHE_TTL_DYNAMIC_S: Final = 300
CACHE_TTL_COMPUTED_S: Final = 3600
REDIS_TIMEOUT_S: Final = 0.25
REDIS_RETRY_S: Final = 5.0
JOB_POLL_S: Final = 0.25
JOB_LEASE_SECONDS: Final = 30.0
JOB_MAX_ATTEMPTS: Final = 3
JOB_RECLAIM_S: Final = 5.0
JOB_CLAIM_POLL_S: Final = 1.0
WORKER_CAPABILITY: Final = "auto"
GPU_MIN_VERTICES: Final = 2**20
GPU_WAIT_S: Final = 30.0
GPU_CONTEXTS: Final = 1
DEVICE_MEMORY_RESERVED_BYTES: Final = 512 * 2**20
READY_TIMEOUT_S: Final = 2.0
PROBE_INTERVAL_S: Final = 5.0
STORE_GAUGES_INTERVAL_S: Final = 30.0

CACHE_MAX_BYTES: Final = 256 * 2**20
RESULT_DB_MAX_BYTES: Final = 8 * 2**20
RESULTS_DIR: Final = "catalytic-results"
RESULT_TTL_S: Final = 7 * 24 * 3600
RESULT_SWEEP_S: Final = 300.0
JOB_WORKER_MAX_RSS_BYTES: Final = 768 * 2**20
JOB_WORKER_MAX_JOBS: Final = 100
MEMORY_RESERVED_BYTES: Final = 512 * 2**20

# Idempotent submissions (catalytic.service.idempotency; docs/api.md).
IDEMPOTENCY_TTL_S: Final = 24 * 3600
IDEMPOTENCY_SWEEP_S: Final = 300.0
IDEMPOTENCY_ABANDONED_S: Final = 300.0

# Quotas per tenant (catalytic.service.quotas; docs/configuration.md).
TENANT_MAX_LATTICES: Final = 1000
TENANT_MAX_VERTICES: Final = 2**28
TENANT_MAX_QUEUED_JOBS: Final = 32
TENANT_MAX_CONCURRENT_JOBS: Final = 4
TENANT_MAX_RESULT_BYTES: Final = 20 * 2**30
TENANT_MAX_REQUESTS_PER_SECOND: Final = 100.0
