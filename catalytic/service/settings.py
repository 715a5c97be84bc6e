"""One typed, frozen settings object read from the environment (names and defaults: docs/configuration.md)."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from catalytic.service import defaults

__all__ = ["SettingError", "Settings", "is_loopback"]


def _env(name: str) -> AliasChoices:
    return AliasChoices(name, name.lower())


class Settings(BaseSettings):
    """Service configuration; every field has a default from :mod:`catalytic.service.defaults`.

    The object is frozen: a value read once cannot change under a running service.

    Examples
    --------
    >>> Settings(PARALLEL_CORES=4).parallel_cores
    4
    """

    model_config = SettingsConfigDict(frozen=True, extra="ignore", populate_by_name=True)

    lattice_memory_optimization: Literal["auto", "full", "frugal"] = Field(
        default=defaults.LATTICE_MEMORY_OPTIMIZATION, validation_alias=_env("LATTICE_MEMORY_OPTIMIZATION")
    )
    parallel_cores: int = Field(default=defaults.PARALLEL_CORES, ge=1, le=1024, validation_alias=_env("PARALLEL_CORES"))
    web_workers: int = Field(default=1, ge=1, le=1024, validation_alias=_env("WEB_CONCURRENCY"))
    cache_size: int = Field(default=defaults.CACHE_SIZE, ge=1, validation_alias=_env("CACHE_SIZE"))
    cache_max_bytes: int = Field(default=defaults.CACHE_MAX_BYTES, ge=0, validation_alias=_env("CACHE_MAX_BYTES"))
    """Bytes the materialised lattices of one process's L1 may hold (with CACHE_SIZE, whichever binds first)."""
    result_cache_size: int = Field(default=defaults.RESULT_CACHE_SIZE, ge=1, validation_alias=_env("RESULT_CACHE_SIZE"))
    max_lattices: int = Field(default=defaults.MAX_LATTICES, ge=1, validation_alias=_env("MAX_LATTICES"))
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = Field(
        default=defaults.LOG_LEVEL, validation_alias=_env("LOG_LEVEL")
    )
    metrics_port: int = Field(default=defaults.METRICS_PORT, ge=0, le=65535, validation_alias=_env("METRICS_PORT"))
    metrics_host: str = Field(default=defaults.METRICS_HOST, validation_alias=_env("METRICS_HOST"))
    database_url: str | None = Field(default=None, validation_alias=_env("DATABASE_URL"))
    sqlite_path: str = Field(
        default=defaults.SQLITE_PATH,
        validation_alias=AliasChoices("CATALYTIC_SQLITE_PATH", "SQLITE_PATH", "sqlite_path"),
    )
    sqlite_synchronous: Literal["OFF", "NORMAL", "FULL", "EXTRA"] = Field(
        default=defaults.SQLITE_SYNCHRONOUS,
        validation_alias=AliasChoices("CATALYTIC_SQLITE_SYNCHRONOUS", "SQLITE_SYNCHRONOUS", "sqlite_synchronous"),
    )
    """SQLite's ``PRAGMA synchronous`` for the embedded file (WAL mode): FULL syncs at each commit, NORMAL at
    checkpoints only (a power cut may lose the last commits; a crashed process loses nothing)."""
    redis_url: str | None = Field(default=None, validation_alias=_env("REDIS_URL"))
    backend: Literal["auto", "numpy", "numba", "cupy"] = Field(
        default=defaults.BACKEND, validation_alias=_env("CATALYTIC_BACKEND")
    )
    compute_pool: Literal["process", "thread"] = Field(
        default=defaults.COMPUTE_POOL, validation_alias=_env("CATALYTIC_COMPUTE_POOL")
    )
    api_keys_raw: str = Field(default="", validation_alias=_env("CATALYTIC_API_KEYS"), repr=False)
    api_keys_file: str | None = Field(default=None, validation_alias=_env("CATALYTIC_API_KEYS_FILE"))
    cors_allow_origins_raw: str = Field(default="", validation_alias=_env("CORS_ALLOW_ORIGINS"))
    """Comma-separated origins (``https://app.example``) allowed to send state-changing requests; ``*``: any."""
    allowed_hosts_raw: str | None = Field(default=None, validation_alias=_env("CATALYTIC_ALLOWED_HOSTS"))
    """Comma-separated ``Host`` names served; unset: loopback names when keyless, any host with keys."""
    parse_offload_bytes: int = Field(
        default=defaults.PARSE_OFFLOAD_BYTES, ge=0, validation_alias=_env("CATALYTIC_PARSE_OFFLOAD_BYTES")
    )
    """Request bodies larger than this are parsed and validated in a separate process, off the event loop."""
    max_body_bytes: int = Field(
        default=defaults.MAX_BODY_BYTES, ge=1024, validation_alias=_env("CATALYTIC_MAX_BODY_BYTES")
    )
    max_upload_bytes: int = Field(
        default=defaults.MAX_UPLOAD_BYTES, ge=1024, validation_alias=_env("CATALYTIC_MAX_UPLOAD_BYTES")
    )
    """The largest array upload (POST /api/arrays), .npy header included; checked as the bytes arrive (413)."""
    arrays_dir: str | None = Field(default=None, validation_alias=_env("ARRAYS_DIR"))
    """Where uploaded arrays are kept (a volume every replica shares); unset: ``arrays`` under RESULTS_DIR."""
    array_ttl_s: float = Field(default=defaults.ARRAY_TTL_S, gt=0, validation_alias=_env("CATALYTIC_ARRAY_TTL_S"))
    """Seconds an uploaded array no tenant uploaded or used is kept before the results sweeper deletes it."""
    max_vertices: int = Field(
        default=defaults.MAX_VERTICES, ge=1, validation_alias=_env("CATALYTIC_MAX_REQUEST_VERTICES")
    )
    max_request_memory_bytes: int = Field(
        default=defaults.MAX_REQUEST_MEMORY_BYTES, ge=1, validation_alias=_env("CATALYTIC_MAX_REQUEST_MEMORY_BYTES")
    )
    inline_max_vertices: int = Field(
        default=defaults.INLINE_MAX_VERTICES, ge=1, validation_alias=_env("CATALYTIC_INLINE_MAX_VERTICES")
    )
    request_timeout_s: float = Field(
        default=defaults.REQUEST_TIMEOUT_S, gt=0, validation_alias=_env("CATALYTIC_REQUEST_TIMEOUT_S")
    )
    job_timeout_s: float = Field(default=defaults.JOB_TIMEOUT_S, gt=0, validation_alias=_env("CATALYTIC_JOB_TIMEOUT_S"))
    job_lease_seconds: float = Field(
        default=defaults.JOB_LEASE_SECONDS, gt=0, validation_alias=_env("JOB_LEASE_SECONDS")
    )
    job_max_attempts: int = Field(default=defaults.JOB_MAX_ATTEMPTS, ge=1, validation_alias=_env("JOB_MAX_ATTEMPTS"))
    worker_capability: Literal["auto", "gpu", "cpu"] = Field(
        default=defaults.WORKER_CAPABILITY, validation_alias=_env("CATALYTIC_WORKER_CAPABILITY")
    )
    """Which jobs this process claims first: ``gpu`` (GPU-sized ones), ``cpu``; auto: gpu when CuPy finds a device."""
    gpu_min_vertices: int = Field(
        default=defaults.GPU_MIN_VERTICES, ge=1, validation_alias=_env("CATALYTIC_GPU_MIN_VERTICES")
    )
    """Jobs of BFS, distance fields and components on at least this many vertices are GPU jobs (backend auto)."""
    gpu_wait_s: float = Field(default=defaults.GPU_WAIT_S, ge=0, validation_alias=_env("CATALYTIC_GPU_WAIT_S"))
    """How long a GPU job waits for a GPU worker before a CPU worker may take it."""
    gpu_contexts: int = Field(default=defaults.GPU_CONTEXTS, ge=1, validation_alias=_env("CATALYTIC_GPU_CONTEXTS"))
    """Job worker processes of one server process that may use the GPU (each holds a CUDA context)."""
    device_memory_bytes: int | None = Field(default=None, ge=1, validation_alias=_env("CATALYTIC_DEVICE_MEMORY_BYTES"))
    """Device memory GPU jobs may use; unset: what CuPy reports free."""
    device_memory_reserved_bytes: int = Field(
        default=defaults.DEVICE_MEMORY_RESERVED_BYTES,
        ge=0,
        validation_alias=_env("CATALYTIC_DEVICE_MEMORY_RESERVED_BYTES"),
    )
    """Of the free device memory, what GPU job admission leaves unused."""
    max_queued_jobs: int = Field(
        default=defaults.MAX_QUEUED_JOBS, ge=1, validation_alias=_env("CATALYTIC_MAX_QUEUED_JOBS")
    )
    retry_after_s: int = Field(default=defaults.RETRY_AFTER_S, ge=1, validation_alias=_env("CATALYTIC_RETRY_AFTER_S"))
    idempotency_ttl_s: float = Field(
        default=defaults.IDEMPOTENCY_TTL_S, gt=0, validation_alias=_env("CATALYTIC_IDEMPOTENCY_TTL_S")
    )
    """Seconds an ``Idempotency-Key`` and the answer recorded under it are kept; past it the key may be reused."""
    cache_ttl_dynamic_s: int = Field(
        default=defaults.CACHE_TTL_DYNAMIC_S, ge=1, validation_alias=_env("CATALYTIC_CACHE_TTL_DYNAMIC_S")
    )
    cache_ttl_computed_s: int = Field(
        default=defaults.CACHE_TTL_COMPUTED_S, ge=1, validation_alias=_env("CATALYTIC_CACHE_TTL_COMPUTED_S")
    )
    max_inline_sizes: int = Field(
        default=defaults.MAX_INLINE_SIZES, ge=1, validation_alias=_env("CATALYTIC_MAX_INLINE_SIZES")
    )
    max_page_limit: int = Field(
        default=defaults.MAX_PAGE_LIMIT, ge=1, validation_alias=_env("CATALYTIC_MAX_PAGE_LIMIT")
    )
    result_db_max_bytes: int = Field(
        default=defaults.RESULT_DB_MAX_BYTES, ge=0, validation_alias=_env("RESULT_DB_MAX_BYTES")
    )
    """Array results (.npy) larger than this go to the results store; smaller ones stay in the database."""
    results_dir: str = Field(default=defaults.RESULTS_DIR, validation_alias=_env("RESULTS_DIR"))
    results_s3_bucket: str | None = Field(default=None, validation_alias=_env("RESULTS_S3_BUCKET"))
    """An S3-compatible bucket for the results store; when set, RESULTS_DIR is not used."""
    results_s3_prefix: str = Field(default="results/", validation_alias=_env("RESULTS_S3_PREFIX"))
    results_s3_endpoint_url: str | None = Field(default=None, validation_alias=_env("RESULTS_S3_ENDPOINT_URL"))
    results_s3_region: str | None = Field(default=None, validation_alias=_env("RESULTS_S3_REGION"))
    result_ttl_s: float = Field(default=defaults.RESULT_TTL_S, gt=0, validation_alias=_env("RESULT_TTL"))
    result_sweep_s: float = Field(default=defaults.RESULT_SWEEP_S, gt=0, validation_alias=_env("RESULT_SWEEP_S"))
    results_store_max_bytes: int = Field(default=0, ge=0, validation_alias=_env("RESULTS_STORE_MAX_BYTES"))
    """The size the results store may reach (the RESULTS_DIR volume, or the bucket's budget); 0: none declared. At
    the limit new jobs are refused (503) until the sweeper frees space; ``results_store_limit_bytes`` shows it."""
    job_worker_max_rss_bytes: int = Field(
        default=defaults.JOB_WORKER_MAX_RSS_BYTES, ge=0, validation_alias=_env("JOB_WORKER_MAX_RSS_BYTES")
    )
    """A job worker process whose resident memory is above this after a job is replaced (0: never)."""
    job_worker_max_jobs: int = Field(
        default=defaults.JOB_WORKER_MAX_JOBS, ge=0, validation_alias=_env("JOB_WORKER_MAX_JOBS")
    )
    """A job worker process is replaced after this many jobs (0: never)."""
    memory_limit_bytes: int | None = Field(default=None, ge=1, validation_alias=_env("CATALYTIC_MEMORY_LIMIT_BYTES"))
    """Memory the work of this service may use; unset: the cgroup limit, else the machine's physical memory."""
    memory_reserved_bytes: int = Field(
        default=defaults.MEMORY_RESERVED_BYTES, ge=0, validation_alias=_env("CATALYTIC_MEMORY_RESERVED_BYTES")
    )
    """Of the memory limit, what admission keeps for the server processes themselves (caches, pools, code)."""
    tenant_max_lattices: int = Field(
        default=defaults.TENANT_MAX_LATTICES, ge=1, validation_alias=_env("TENANT_MAX_LATTICES")
    )
    """Lattices one tenant may keep stored (403 past it)."""
    tenant_max_vertices: int = Field(
        default=defaults.TENANT_MAX_VERTICES, ge=1, validation_alias=_env("TENANT_MAX_VERTICES")
    )
    """Vertices of one lattice a tenant stores or submits as a job (413 past it)."""
    tenant_max_queued_jobs: int = Field(
        default=defaults.TENANT_MAX_QUEUED_JOBS, ge=1, validation_alias=_env("TENANT_MAX_QUEUED_JOBS")
    )
    """Jobs of one tenant queued or running at once, on all replicas together (429 past it)."""
    tenant_max_concurrent_jobs: int = Field(
        default=defaults.TENANT_MAX_CONCURRENT_JOBS, ge=1, validation_alias=_env("TENANT_MAX_CONCURRENT_JOBS")
    )
    """Jobs of one tenant running at once, on all replicas together; the others wait queued for a free turn."""
    tenant_max_result_bytes: int = Field(
        default=defaults.TENANT_MAX_RESULT_BYTES, ge=0, validation_alias=_env("TENANT_MAX_RESULT_BYTES")
    )
    """Bytes of job results one tenant holds (JSON and arrays, wherever kept); a new job waits (429) past it."""
    tenant_max_requests_per_second: float = Field(
        default=defaults.TENANT_MAX_REQUESTS_PER_SECOND, gt=0, validation_alias=_env("TENANT_MAX_REQUESTS_PER_SECOND")
    )
    """Requests per second of one tenant: across replicas with REDIS_URL, per server process without (429)."""
    webhook_worker: bool | None = Field(default=None, validation_alias=_env("CATALYTIC_WEBHOOK_WORKER"))
    migrate_on_start: bool = Field(default=True, validation_alias=_env("CATALYTIC_MIGRATE_ON_START"))
    """Whether ``serve`` applies migrations as it starts; off where a ``catalytic migrate`` Job runs first."""

    @field_validator(
        "database_url",
        "redis_url",
        "api_keys_file",
        "results_s3_bucket",
        "results_s3_endpoint_url",
        "arrays_dir",
        mode="before",
    )
    @classmethod
    def _blank_is_none(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @property
    def api_keys(self) -> tuple[str, ...]:
        """The configured API keys, from CATALYTIC_API_KEYS and CATALYTIC_API_KEYS_FILE together."""
        raw = self.api_keys_raw
        if self.api_keys_file:
            try:
                raw += "," + Path(self.api_keys_file).read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
                raise SettingError("CATALYTIC_API_KEYS_FILE", f"cannot read {self.api_keys_file}: {reason}") from None
        keys = (part.strip() for part in raw.replace("\n", ",").split(","))
        return tuple(dict.fromkeys(k for k in keys if k))

    @property
    def cors_allow_origins(self) -> tuple[str, ...]:
        """The origins of CORS_ALLOW_ORIGINS, normalised (lower case, no trailing slash).

        Examples
        --------
        >>> Settings(CORS_ALLOW_ORIGINS="https://App.example/, http://localhost:3000").cors_allow_origins
        ('https://app.example', 'http://localhost:3000')
        """
        return _items(self.cors_allow_origins_raw, lambda origin: origin.lower().rstrip("/"))

    @property
    def allowed_hosts(self) -> tuple[str, ...] | None:
        """The ``Host`` names served (ports stripped), or None for any host.

        Unset, a keyless service serves only loopback names (against DNS rebinding) and a service with keys
        serves any host; ``*`` in the list also allows any host.

        Examples
        --------
        >>> Settings().allowed_hosts
        ('localhost', '127.0.0.1', '::1')
        >>> Settings(CATALYTIC_ALLOWED_HOSTS="api.example, [::1]").allowed_hosts
        ('api.example', '::1')
        """
        if self.allowed_hosts_raw is None:
            return None if self.api_keys else defaults.LOOPBACK_HOSTS
        hosts = _items(self.allowed_hosts_raw, lambda host: host.lower().strip("[]"))
        return None if "*" in hosts else hosts

    @property
    def cores_per_process(self) -> int:
        """This process's share of PARALLEL_CORES when several server processes run (``WEB_CONCURRENCY``).

        Examples
        --------
        >>> Settings(PARALLEL_CORES=4, WEB_CONCURRENCY=2).cores_per_process
        2
        """
        return max(1, self.parallel_cores // self.web_workers)

    @property
    def embedded(self) -> bool:
        """Whether the service runs on the embedded defaults (SQLite, no Redis)."""
        return self.database_url is None

    @property
    def run_webhook_worker(self) -> bool:
        """Whether ``serve`` runs the webhook worker in-process (default: on the embedded database only)."""
        return self.embedded if self.webhook_worker is None else self.webhook_worker


class SettingError(ValueError):
    """A setting whose value cannot be used; ``str()`` is one line that names it."""

    def __init__(self, name: str, message: str) -> None:
        super().__init__(f"{name}: {message}")
        self.name = name


def _items(raw: str, normalise: Callable[[str], str]) -> tuple[str, ...]:
    items = (normalise(part.strip()) for part in raw.split(","))
    return tuple(dict.fromkeys(item for item in items if item))


def is_loopback(host: str) -> bool:
    """Whether ``host`` only accepts connections from this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
