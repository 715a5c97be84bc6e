"""The job runner: worker processes that can be terminated, a bounded local queue, cancel and time limits.

Job records live in the database, so any replica answers status, result and cancel for any job. The
replica that accepted a job owns it and renews its lease (``JOB_LEASE_SECONDS``) every third of a lease
while the job is queued or running here. Every replica runs a reclaimer: a queued or running job whose lease
expired (its replica died) is taken over atomically, re-queued here from its stored spec and params, and run
again; after ``JOB_MAX_ATTEMPTS`` started attempts it fails instead, with job.failed written in the same
transaction like every other completion. Cancelled and finished jobs are never taken over.

A database outage fails no job. While the database cannot be reached a running job runs on: its progress
writes and status polls are skipped, its end is recorded once the database answers again, and the reclaimer
of its own replica renews (never takes over) the leases that lapsed meanwhile. A job whose claim met the
outage is queued here again.

Jobs are claimed by capability. A job on a large lattice whose operation runs on the device (BFS, distance
fields, components; :func:`wants_gpu`) is a ``gpu`` job: it goes to the shared queue (the database), where GPU
workers claim it first, each within its free device memory, and any worker may take it once
``CATALYTIC_GPU_WAIT_S`` has passed (or at once when no GPU worker has been seen alive for a lease). Every other
job is a ``cpu`` job, held and run by the replica that accepted it, as before. A GPU server process runs GPU
jobs in at most ``CATALYTIC_GPU_CONTEXTS`` of its worker processes (each holds a CUDA context); its other
workers run the numba kernels. Each job records where it ran and why (``placement``).

Every ``JOB_POLL_S`` a running job's record is re-read: a cancel sent to any replica shows up there and the
worker process running it is killed (and replaced), so a cancelled job stops mid-computation. Inline
requests use the compute processes of :mod:`catalytic.service.pool` instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import multiprocessing
import os
import random
import secrets
import socket
import time
from collections.abc import Awaitable, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from catalytic.service import db as queries
from catalytic.service import defaults
from catalytic.service.admission import MemoryGate, device_job_bytes, device_memory, spec_job_bytes
from catalytic.service.compute import serve_tasks
from catalytic.service.lifeline import run_child
from catalytic.service.metrics import (
    BACKEND_FALLBACKS,
    JOB_PLACEMENTS,
    JOB_QUEUE_SIZE,
    JOBS,
    JOBS_TAKEN_OVER,
    LATTICE_OPERATION_DURATION,
    LATTICE_OPERATIONS,
)
from catalytic.service.results import open_store, result_name
from catalytic.storage import DatabaseUnavailable

__all__ = [
    "Emit",
    "JobRunner",
    "WorkerLost",
    "WorkerSlot",
    "job_event",
    "job_placement",
    "job_task",
    "job_timings",
    "process_rss",
    "replica_id",
    "serve_device_tasks",
    "wants_gpu",
    "worker_capability",
]

log = logging.getLogger("catalytic.service")

PROGRESS_WRITE_S = 0.5
"""A running job's progress row is written at most this often, however fast its kernels report."""

END_RETRY_S = (0.25, 5.0)
"""The first and the longest wait between tries to record a job's end while the database cannot be reached."""

Emit = Callable[..., Awaitable[Any]]
"""``emit(conn, event_type, data, tenant=...)``: records an event for ``tenant``'s webhook endpoints in the same
transaction as the state change."""


def replica_id() -> str:
    """A fresh owner id for this process: ``hostname:pid:random`` (a restarted process never reuses one)."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


def wants_gpu(
    operation: str, method: str | None, spec: Mapping[str, Any], backend: str | None, min_vertices: int
) -> bool:
    """Whether a job is GPU work: it runs on the device and the lattice is large enough.

    Every operation runs on the device, weighted lattices included, except the path methods the GPU backend
    hands to the host (:attr:`catalytic.kernels.cupy_backend.CupyBackend.host_methods`: A\\*, which ``auto``
    resolves to on weighted and sparse lattices); those queue for any worker, as a CPU pod answers them as fast.

    Parameters
    ----------
    operation, spec
        The job.
    method : str or None
        The path method it runs, ``auto`` resolved (:func:`catalytic.operations.path_method`); None for the
        other operations.
    backend : str or None
        The backend the request named (None or ``auto``: any; ``cupy`` asks for the GPU whatever the size).
    min_vertices : int
        CATALYTIC_GPU_MIN_VERTICES.

    Examples
    --------
    >>> wants_gpu("components", None, {"shape": [2048, 1024]}, None, 2**20)
    True
    >>> wants_gpu("shortest_path", "astar", {"shape": [2048, 1024]}, None, 2**20)
    False
    """
    from catalytic.kernels.cupy_backend import CupyBackend

    if backend == "cupy":
        return True
    if backend not in (None, "auto") or method in CupyBackend.host_methods:
        return False
    vertices = 1
    for n in spec["shape"]:
        vertices *= int(n)
    return vertices >= min_vertices


def worker_capability(setting: str, backend: str) -> str:
    """This process's capability: ``gpu`` or ``cpu``; auto (the setting) is gpu when CATALYTIC_BACKEND allows
    the GPU and the cupy backend can run here."""
    if setting != "auto":
        return setting
    if backend not in ("auto", "cupy"):
        return "cpu"
    from catalytic.kernels.backend import backends

    return "gpu" if "cupy" in backends() else "cpu"


def job_task(job: Mapping[str, Any], backend: str, memory: str, max_sizes: int) -> dict[str, Any]:
    """The worker task of a stored job record (what a replica taking the job over runs).

    Parameters
    ----------
    job : mapping
        A record from :func:`catalytic.service.db.get_job`.
    backend, memory, max_sizes
        This replica's defaults (CATALYTIC_BACKEND, LATTICE_MEMORY_OPTIMIZATION, CATALYTIC_MAX_INLINE_SIZES).

    Returns
    -------
    dict
        The task, with its uploaded arrays still to be fetched by their owner id.
    """
    return {
        "operation": job["operation"],
        "spec": job["spec"],
        "params": job["params"],
        "backend": job["backend"] or backend,
        "memory": memory,
        "max_sizes": max_sizes,
        "arrays_owner": job["lattice_id"] or job["id"],
        **_queue_fields(job),
    }


def _queue_fields(job: Mapping[str, Any]) -> dict[str, Any]:
    """What a worker needs of a job's queueing to place it: capability, wait, device bytes, placement noted."""
    return {key: job.get(key) for key in ("capability", "cpu_after", "created_at", "device_bytes", "placement")}


def serve_device_tasks(conn: Any) -> None:
    """Body of a job worker process that may use the GPU: :func:`catalytic.service.compute.serve_tasks`.

    Under numba's CUDA simulator (``NUMBA_ENABLE_CUDASIM=1``, no device) the ``cupy`` backend runs its kernels
    on host arrays, so a process standing for a GPU pod runs the GPU code path.
    """
    if os.environ.get("NUMBA_ENABLE_CUDASIM") == "1":
        import numpy as np

        from catalytic.kernels.backend import register_backend
        from catalytic.kernels.cupy_backend import CupyBackend

        class SimulatedDevice(CupyBackend):
            @classmethod
            def probe(cls) -> str | None:
                return None

            def __init__(self) -> None:
                super().__init__(xp=np)

        register_backend(SimulatedDevice)
    serve_tasks(conn)


class WorkerLost(RuntimeError):
    """The worker process died (killed on cancel or time limit, or crashed)."""


def process_rss(pid: int) -> int | None:
    """Resident bytes of process ``pid`` (Linux ``/proc``), or None where that cannot be read."""
    try:
        with open(f"/proc/{pid}/statm", encoding="ascii") as handle:
            return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


class WorkerSlot:
    """One worker process running one task at a time; :meth:`kill` stops it mid-task.

    Parameters
    ----------
    io : ThreadPoolExecutor
        Where the blocking pipe reads and writes run.
    max_rss : int
        Replace the process when its resident bytes stay above this after a job (0: never).
    max_jobs : int
        Replace the process after this many jobs (0: never).
    device : bool
        Whether the process may use the GPU (it runs :func:`serve_device_tasks`).
    """

    def __init__(self, io: ThreadPoolExecutor, max_rss: int = 0, max_jobs: int = 0, device: bool = False) -> None:
        self._io = io
        self.device = device
        self._process: Any = None
        self._conn: Any = None
        self.max_rss = max_rss
        self.max_jobs = max_jobs
        self.jobs = 0
        self.recycled = 0

    def _ensure(self) -> None:
        if self._process is not None and self._process.is_alive():
            return
        ctx = multiprocessing.get_context("spawn")
        parent, child = ctx.Pipe()
        target = serve_device_tasks if self.device else serve_tasks
        process = ctx.Process(target=run_child, args=(target, child), daemon=True, name="catalytic-job-worker")
        process.start()
        child.close()
        self._process, self._conn = process, parent

    async def run(self, task: dict[str, Any], on_progress: Callable[[float], Awaitable[None]]) -> tuple[Any, ...]:
        """Send ``task`` to the process and wait for its answer, reporting progress messages on the way."""
        loop = asyncio.get_running_loop()
        self._ensure()
        conn = self._conn
        try:
            await loop.run_in_executor(self._io, conn.send, task)
            while True:
                message = await loop.run_in_executor(self._io, conn.recv)
                if message[0] != "progress":
                    return tuple(message)
                await on_progress(message[1])
        except (EOFError, OSError, BrokenPipeError) as exc:
            raise WorkerLost("the worker process ended") from exc

    @property
    def pid(self) -> int | None:
        """The worker process id while one is alive."""
        return self._process.pid if self._process is not None and self._process.is_alive() else None

    def exit_reason(self) -> str:
        """Why the process ended, as far as its exit status tells (for the job's error)."""
        process = self._process
        if process is None:
            return "the worker process ended"
        process.join(1)
        code = process.exitcode
        if code is not None and code < 0:
            if -code == 9:
                return "the worker process was killed (signal 9: the system's out-of-memory killer, or an operator)"
            return f"the worker process was killed by signal {-code}"
        return f"the worker process ended (exit status {code})"

    def after_job(self) -> str | None:
        """Replace the process when it ran ``max_jobs`` jobs or its RSS is over ``max_rss``; why, or None."""
        self.jobs += 1
        pid = self.pid
        if pid is None:
            return None
        reason = None
        if self.max_jobs and self.jobs >= self.max_jobs:
            reason = f"it ran {self.jobs} jobs (JOB_WORKER_MAX_JOBS={self.max_jobs})"
        elif self.max_rss and (rss := process_rss(pid) or 0) > self.max_rss:
            reason = f"it holds {rss} bytes after a job (JOB_WORKER_MAX_RSS_BYTES={self.max_rss})"
        if reason is not None:
            log.info("job worker process %d replaced: %s", pid, reason)
            self.kill()
            self.recycled += 1
        return reason

    def kill(self) -> None:
        """Terminate the process (a fresh one starts with the next task)."""
        if self._process is None:
            return
        self._process.kill()
        self._process.join(5)
        self._conn.close()
        self._process = self._conn = None
        self.jobs = 0


class JobRunner:
    """Queue and run jobs of this replica in ``slots`` worker processes.

    Parameters
    ----------
    database : catalytic.storage.Database
    slots : int
        Worker processes (PARALLEL_CORES).
    max_queued : int
        Jobs queued or running here before submissions are refused (503).
    timeout_s : float
        Run-time limit of one job.
    emit : callable, optional
        Outbox call recording job.succeeded / job.failed / job.cancelled in the finishing transaction.
    owner : str
        This replica's id, stored on its jobs (:func:`replica_id`).
    lease_s : float
        Lease of a job on its owner (JOB_LEASE_SECONDS); renewed every third of it.
    max_attempts : int
        Started attempts after which an orphaned job fails instead of being taken over (JOB_MAX_ATTEMPTS).
    task_defaults : mapping, optional
        ``backend``, ``memory`` and ``max_sizes`` for the tasks of taken-over jobs (see :func:`job_task`).
    results : mapping, optional
        Where array results over the database threshold go (:func:`catalytic.service.results.store_config`);
        without it every array result is kept in the database.
    result_ttl_s : float
        How long a result is kept after its job finished (RESULT_TTL).
    worker_max_rss, worker_max_jobs : int
        When a worker process is replaced (JOB_WORKER_MAX_RSS_BYTES, JOB_WORKER_MAX_JOBS; 0: never).
    memory_budget : int, optional
        Bytes the jobs running here may need together (:mod:`catalytic.service.admission`): a job waits in
        the queue until its estimate fits beside the running ones. None: no gate.
    capability : str
        ``gpu`` or ``cpu`` (:func:`worker_capability`): which shared jobs this process claims first.
    gpu_min_vertices, gpu_wait_s
        When a job is GPU work (CATALYTIC_GPU_MIN_VERTICES) and how long it waits for a GPU worker
        (CATALYTIC_GPU_WAIT_S).
    gpu_contexts : int
        Worker processes of a GPU process that may use the GPU (CATALYTIC_GPU_CONTEXTS).
    device_memory_bytes, device_reserved_bytes
        The device memory GPU jobs may use (None: what CuPy reports free) and what admission leaves unused.
    claim_poll_s : float
        How often an idle worker looks in the shared queue (a job submitted here wakes it at once).
    tenant_running_max : int, optional
        TENANT_MAX_CONCURRENT_JOBS: a job whose tenant runs that many jobs (on any replica) waits queued, and is
        tried again every ``claim_poll_s`` behind the jobs queued after it.
    clock : callable
        Epoch seconds; tests inject their own.
    """

    def __init__(
        self,
        database: Any,
        slots: int,
        max_queued: int,
        timeout_s: float,
        emit: Emit | None,
        owner: str,
        *,
        lease_s: float = defaults.JOB_LEASE_SECONDS,
        max_attempts: int = defaults.JOB_MAX_ATTEMPTS,
        task_defaults: Mapping[str, Any] | None = None,
        results: Mapping[str, Any] | None = None,
        result_ttl_s: float = defaults.RESULT_TTL_S,
        worker_max_rss: int = 0,
        worker_max_jobs: int = 0,
        memory_budget: int | None = None,
        capability: str = "cpu",
        gpu_min_vertices: int = defaults.GPU_MIN_VERTICES,
        gpu_wait_s: float = defaults.GPU_WAIT_S,
        gpu_contexts: int = defaults.GPU_CONTEXTS,
        device_memory_bytes: int | None = None,
        device_reserved_bytes: int = defaults.DEVICE_MEMORY_RESERVED_BYTES,
        claim_poll_s: float = defaults.JOB_CLAIM_POLL_S,
        tenant_running_max: int | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.db = database
        self.max_queued = max_queued
        self.timeout_s = timeout_s
        self.emit = emit
        self.owner = owner
        self.lease_s = float(lease_s)
        self.max_attempts = max_attempts
        self.task_defaults: dict[str, Any] = {
            "backend": "auto",
            "memory": "auto",
            "max_sizes": defaults.MAX_INLINE_SIZES,
        }
        self.task_defaults.update(task_defaults or {})
        self.clock = clock
        self.results = None if results is None else dict(results)
        self.result_ttl_s = float(result_ttl_s)
        self.memory = None if memory_budget is None else MemoryGate(memory_budget)
        # Jobs queued or running here, whose leases this process renews; _lost: leases found ended or taken.
        self._owned: set[str] = set()
        self._lost: set[str] = set()
        self._io = ThreadPoolExecutor(max_workers=2 * slots + 1, thread_name_prefix="catalytic-job-io")
        self.capability = capability
        self.gpu_min_vertices = gpu_min_vertices
        self.gpu_wait_s = float(gpu_wait_s)
        self.device_memory_bytes = device_memory_bytes
        self.device_reserved_bytes = device_reserved_bytes
        self.claim_poll_s = float(claim_poll_s)
        self.tenant_running_max = tenant_running_max
        self._waiting_turn: set[str] = set()
        self.device_held = 0
        self._device_lock = asyncio.Lock()
        self._wake = asyncio.Event()
        device_slots = min(gpu_contexts, slots) if capability == "gpu" else 0
        self._slots = [
            WorkerSlot(self._io, worker_max_rss, worker_max_jobs, device=i < device_slots) for i in range(slots)
        ]
        self._queue: asyncio.Queue[tuple[str, dict[str, Any]]] = asyncio.Queue()
        self._running: dict[str, WorkerSlot] = {}
        self._cancelled: set[str] = set()
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def pending(self) -> int:
        """Jobs queued or running in this process (those it holds, from submission or claim to their end)."""
        return len(self._owned)

    def worker_pids(self) -> dict[str, int]:
        """Job id → pid of the worker process running it, for the jobs running in this process now."""
        return {job_id: pid for job_id, slot in self._running.items() if (pid := slot.pid) is not None}

    def idle_worker_pids(self) -> list[int]:
        """The pids of every live worker process, idle ones included."""
        return [pid for slot in self._slots if (pid := slot.pid) is not None]

    @property
    def workers_recycled(self) -> int:
        """Worker processes replaced for their RSS or job count since start."""
        return sum(slot.recycled for slot in self._slots)

    def has_capacity(self) -> bool:
        """Whether one more job fits in the queue."""
        return self.pending < self.max_queued

    @property
    def device_slots(self) -> int:
        """Worker processes here that may use the GPU (at most CATALYTIC_GPU_CONTEXTS)."""
        return sum(slot.device for slot in self._slots)

    def start(self) -> None:
        """Start one consumer per worker slot, the lease renewer, the reclaimer and the heartbeat."""
        self._tasks = [asyncio.create_task(self._consume(slot)) for slot in self._slots]
        self._tasks.append(asyncio.create_task(self._renew_leases(), name="catalytic-job-leases"))
        self._tasks.append(asyncio.create_task(self._reclaim_loop(), name="catalytic-job-reclaimer"))
        self._tasks.append(asyncio.create_task(self._heartbeat_loop(), name="catalytic-job-heartbeat"))

    async def place(
        self, operation: str, method: str | None, spec: Mapping[str, Any], backend: str | None
    ) -> dict[str, Any]:
        """Where a job about to be recorded waits: the fields of its record that :func:`queries.insert_job` takes.

        A GPU job goes to the shared queue (owner :data:`queries.SHARED`) with its device bytes and the time after
        which a CPU worker may take it (none when it named the cupy backend); when no GPU worker has been seen
        alive within a lease it is a CPU job at once, and its placement says why. Every other job is held here.
        """
        if not wants_gpu(operation, method, spec, backend, self.gpu_min_vertices):
            return {"owner": self.owner, "capability": "cpu"}
        now = self.clock()
        alone = backend != "cupy" and self.capability != "gpu"
        if alone and not await queries.workers_seen(self.db, "gpu", now - self.lease_s):
            reason = f"no GPU worker was seen alive in the {self.lease_s:g} s before it was submitted"
            return {"owner": self.owner, "capability": "cpu", "placement": {"wanted": "gpu", "reason": reason}}
        return {
            "owner": queries.SHARED,
            "created_at": now,
            "capability": "gpu",
            "cpu_after": None if backend == "cupy" else now + self.gpu_wait_s,
            "device_bytes": device_job_bytes(operation, dict(spec)),
            "placement": {"wanted": "gpu", "reason": None},
        }

    def submit(self, job_id: str, task: dict[str, Any], placed: Mapping[str, Any] | None = None) -> None:
        """Queue a job already recorded as ``queued`` in the database and owned by this replica, or, when
        ``placed`` (:meth:`place`) put it in the shared queue, wake this process's idle workers to claim it."""
        if placed is not None and placed["owner"] == queries.SHARED:
            self._wake.set()
            return
        if placed is not None:
            task = {**task, **_queue_fields(placed)}
        self._owned.add(job_id)
        self._queue.put_nowait((job_id, task))
        JOB_QUEUE_SIZE.set(self.pending)
        self._wake.set()

    def _wait_turn(self, job_id: str, task: dict[str, Any]) -> None:
        """Queue again, after ``claim_poll_s``, a job whose tenant runs TENANT_MAX_CONCURRENT_JOBS jobs now."""
        self._waiting_turn.add(job_id)

        def again() -> None:
            self._waiting_turn.discard(job_id)
            self._queue.put_nowait((job_id, task))
            self._wake.set()

        asyncio.get_running_loop().call_later(self.claim_poll_s, again)

    def cancel(self, job_id: str) -> None:
        """Stop a local job now (the database already says cancelled); no-op for other replicas' jobs."""
        self._cancelled.add(job_id)
        slot = self._running.get(job_id)
        if slot is not None:
            slot.kill()

    async def close(self) -> None:
        """Stop consumers and worker processes."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for slot in self._slots:
            slot.kill()
        self._io.shutdown(wait=False, cancel_futures=True)

    async def _consume(self, slot: WorkerSlot) -> None:
        while True:
            job_id, task, device_bytes = await self._next(slot)
            needed = spec_job_bytes(task["operation"], task["spec"]) if self.memory is not None else 0
            try:
                if self.memory is not None:
                    await self.memory.acquire(needed)
                try:
                    await self._run(slot, job_id, task)
                finally:
                    if self.memory is not None:
                        await self.memory.release(needed)
            except asyncio.CancelledError:
                raise
            except DatabaseUnavailable as exc:
                # Before its run (claim, arrays): nothing ran, so the job is queued here again and tried later. Had
                # the claim committed unseen, the next claim refuses it and its lease hands it to the reclaimer.
                log.warning("job %s not started: %s; queued again", job_id, exc, extra={"job_id": job_id})
                self._wait_turn(job_id, task)
            except Exception as exc:
                # Failed here, once, with the reason: left running, the job would be taken over and run again.
                log.exception("job %s: runner failure", job_id)
                error = {"status": 500, "error": "internal", "message": f"{type(exc).__name__}: {exc}", "fields": []}
                with contextlib.suppress(Exception):
                    await self._finish(job_id, task["operation"], "failed", error=error)
            finally:
                self.device_held -= device_bytes
                self._running.pop(job_id, None)
                self._cancelled.discard(job_id)
                if job_id not in self._waiting_turn:
                    self._owned.discard(job_id)
                self._lost.discard(job_id)
                JOB_QUEUE_SIZE.set(self.pending)

    async def _next(self, slot: WorkerSlot) -> tuple[str, dict[str, Any], int]:
        """The next job for ``slot`` and the device bytes it holds: a GPU slot claims GPU work from the shared
        queue first; then jobs held here; then whatever the shared queue lets this slot take."""
        while True:
            # Cleared before looking, so a job submitted while this slot looks wakes it at once.
            self._wake.clear()
            if slot.device and (claimed := await self._claim_shared(slot)) is not None:
                return claimed
            if not self._queue.empty():
                job_id, task = self._queue.get_nowait()
                return job_id, task, 0
            if not slot.device and (claimed := await self._claim_shared(slot)) is not None:
                return claimed
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.claim_poll_s * random.uniform(0.75, 1.25)):
                    await self._wake.wait()

    async def device_room(self) -> int:
        """Device bytes a GPU job may still take here: free device memory less the reserve (unlimited where no
        device can be asked and CATALYTIC_DEVICE_MEMORY_BYTES is unset)."""
        found = await asyncio.to_thread(device_memory, self.device_memory_bytes)
        if found is None:
            return 2**62
        free, source = found
        if source == "setting":
            free -= self.device_held
        return max(0, free - self.device_reserved_bytes)

    async def _claim_shared(self, slot: WorkerSlot) -> tuple[str, dict[str, Any], int] | None:
        """Claim a job of the shared queue for ``slot``; None when none qualifies or the database failed."""
        try:
            async with self._device_lock if slot.device else contextlib.nullcontext():
                room = await self.device_room() if slot.device else 0
                now = self.clock()
                job = await queries.claim_shared_job(
                    self.db,
                    self.owner,
                    now,
                    now + self.lease_s,
                    gpu_worker=slot.device,
                    device_room=room,
                    lock=getattr(self.db, "dialect", "") == "postgresql",
                )
                if job is None:
                    return None
                needed = int(job["device_bytes"] or 0)
                # A GPU job past its wait may be taken here although it does not fit the device: it runs on the CPU.
                on_device = slot.device and job["capability"] == "gpu" and needed <= room
                held = needed if on_device else 0
                self.device_held += held
        except DatabaseUnavailable as exc:
            log.warning("no job claimed from the shared queue: %s", exc)
            return None
        except Exception:
            log.exception("claiming a job from the shared queue failed")
            return None
        self._owned.add(job["id"])
        JOB_QUEUE_SIZE.set(self.pending)
        task = job_task(job, **self.task_defaults)
        task["on_device"] = on_device
        if slot.device and job["capability"] == "gpu" and not on_device:
            task["device_refusal"] = f"it needs about {needed} bytes of device memory, {room} were free here"
        return job["id"], task, held

    @staticmethod
    def _placement(task: Mapping[str, Any]) -> dict[str, Any]:
        """Where a job runs (``gpu``: claimed for a worker here that may use the GPU, and fitting its memory) and
        why, against what it wanted."""
        noted = task.get("placement") or {}
        capability = task.get("capability") or "cpu"
        wanted = noted.get("wanted") or capability
        ran_on = "gpu" if task.get("on_device") else "cpu"
        reason = noted.get("reason")
        if capability == "gpu" and ran_on == "cpu":
            waited = (task.get("cpu_after") or 0.0) - (task.get("created_at") or 0.0)
            reason = f"no GPU worker took it within {round(waited, 1):g} s"
            if task.get("device_refusal"):
                reason += f" ({task['device_refusal']})"
        return {"wanted": wanted, "ran_on": ran_on, "reason": reason}

    def _backend(self, task: Mapping[str, Any], placement: Mapping[str, Any]) -> str:
        """The backend a task runs with: on a GPU process, only GPU jobs in its GPU workers may touch the device,
        so every other job's ``auto`` means numba (the CUDA contexts stay at CATALYTIC_GPU_CONTEXTS)."""
        backend = str(task["backend"])
        if self.capability == "gpu" and placement["ran_on"] == "cpu" and backend in ("auto", "cupy"):
            return "numba"
        return backend

    async def _run(self, slot: WorkerSlot, job_id: str, task: dict[str, Any]) -> None:
        now = self.clock()
        placement = self._placement(task)
        if job_id in self._cancelled:
            return
        claimed = await queries.claim_job(
            self.db,
            job_id,
            now,
            self.owner,
            now + self.lease_s,
            placement=placement,
            tenant_running_max=self.tenant_running_max,
        )
        if not claimed:
            if self.tenant_running_max is not None and await queries.waits_for_turn(self.db, job_id, self.owner):
                self._wait_turn(job_id, task)
            return
        JOB_PLACEMENTS.labels(placement["wanted"], placement["ran_on"]).inc()
        if placement["reason"]:
            log.info(
                "job %s wanted %s, runs on %s: %s",
                job_id,
                placement["wanted"],
                placement["ran_on"],
                placement["reason"],
                extra={"job_id": job_id},
            )
        task = {**task, "backend": self._backend(task, placement)}
        self._running[job_id] = slot
        JOB_QUEUE_SIZE.set(self.pending)
        if "arrays" not in task:
            task = {**task, "arrays": await queries.fetch_arrays(self.db, task.pop("arrays_owner"))}
        task = {**task, "results": self.results, "result_name": result_name(job_id)}

        written_at = -math.inf

        async def progress(fraction: float) -> None:
            # the kernels report every level; the row is written at most every PROGRESS_WRITE_S
            nonlocal written_at
            now = self.clock()
            if 0 <= now - written_at < PROGRESS_WRITE_S:  # a clock set back writes at once
                return
            written_at = now
            with contextlib.suppress(DatabaseUnavailable):  # progress is advisory: the next report writes it
                await queries.set_progress(self.db, job_id, fraction)

        started = time.perf_counter()
        run = asyncio.create_task(slot.run(task, progress))
        # A consumer cancelled at shut-down leaves this task to fail once its process is killed; mark it seen.
        run.add_done_callback(lambda t: t.cancelled() or t.exception())
        outcome: tuple[Any, ...] | None = None
        reason = None
        lost_because = "the worker process ended"
        while outcome is None and reason is None:
            done, _ = await asyncio.wait({run}, timeout=defaults.JOB_POLL_S)
            if run in done:
                try:
                    outcome = run.result()
                except WorkerLost:
                    reason = "cancelled" if job_id in self._cancelled else "worker"
                    lost_because = slot.exit_reason()
            elif job_id in self._cancelled or await self._polled_status(job_id) == "cancelled":
                reason = "cancelled"
            elif job_id in self._lost:
                reason = "lost"
            elif time.perf_counter() - started > self.timeout_s:
                reason = "timeout"
        if outcome is None:
            slot.kill()
            with contextlib.suppress(WorkerLost):
                await run
        else:
            slot.after_job()
        elapsed = time.perf_counter() - started
        if reason == "cancelled":
            log.info("job %s cancelled after %.3f s; its worker process was stopped", job_id, elapsed)
            JOBS.labels("cancelled").inc()
            return
        if reason == "lost":
            # Another replica took the job over (this process failed to renew in time): its run is the one that counts.
            log.warning("job %s: lease lost to another replica after %.3f s; stopped here", job_id, elapsed)
            return
        if outcome is not None and outcome[0] == "ok":
            _, answer, stored, backend, fallbacks = outcome
            LATTICE_OPERATIONS.labels(task["operation"], backend or "unknown").inc()
            LATTICE_OPERATION_DURATION.labels(task["operation"]).observe(elapsed)
            if fallbacks:
                BACKEND_FALLBACKS.inc(fallbacks)
            await self._succeed(job_id, task["operation"], answer, stored)
            return
        if outcome is not None:
            error = outcome[1]
        elif reason == "timeout":
            error = {"status": 504, "error": "timeout", "message": f"the job ran past {self.timeout_s} s", "fields": []}
        else:
            error = {"status": 500, "error": "worker_lost", "message": lost_because, "fields": []}
        await self._finish(job_id, task["operation"], "failed", error=error)

    async def _polled_status(self, job_id: str) -> str | None:
        """The status of a job running here, or None while the database cannot be reached (the job runs on)."""
        try:
            return await queries.job_status(self.db, job_id)
        except DatabaseUnavailable:
            return None

    async def _succeed(
        self, job_id: str, operation: str, answer: dict[str, Any], stored: dict[str, Any] | None
    ) -> None:
        """Record a success, or the true reason its result could not be kept (the job fails once, for good)."""
        try:
            recorded = await self._finish(job_id, operation, "succeeded", body=answer, array=stored)
        except Exception as exc:  # the database refused the result (too big for a row, a full disk, ...)
            log.warning("job %s: result not stored: %s: %s", job_id, type(exc).__name__, exc)
            error = {
                "status": 507,
                "error": "result_not_stored",
                "message": f"the result could not be stored: {type(exc).__name__}: {exc}",
                "fields": [],
            }
            recorded = False
            await self._finish(job_id, operation, "failed", error=error)
        if not recorded and stored is not None and stored.get("ref") and self.results is not None:
            # Cancelled, taken over, or failed above: nothing names the file, so it goes now.
            with contextlib.suppress(Exception):
                await asyncio.to_thread(open_store(self.results).delete, stored["ref"])

    async def _finish(
        self,
        job_id: str,
        operation: str,
        status: str,
        *,
        body: dict[str, Any] | None = None,
        array: dict[str, Any] | None = None,
        error: dict[str, Any] | None = None,
    ) -> bool:
        """Record a job's end and its event in one transaction; False when it was cancelled or taken over.

        While the database cannot be reached the end is tried again (waits from ``END_RETRY_S[0]`` doubling to
        ``END_RETRY_S[1]``) for as long as this process runs: the answer is held here meanwhile, and should this
        process stop, the job's lease lapses and another replica takes it over. A try that failed at
        COMMIT may have committed: a later try that finds the job already ended by this replica with the same
        status counts it as recorded.
        """
        wait, longest = END_RETRY_S
        tries = 0
        while True:
            tries += 1
            now = self.clock()
            try:
                async with self.db.transaction() as conn:
                    recorded = await queries.finish_job(
                        conn,
                        job_id,
                        status,
                        now,
                        error=error,
                        body=body,
                        array=array,
                        owner=self.owner,
                        expires_at=now + self.result_ttl_s,
                    )
                    if recorded:
                        await self._emit_end(conn, job_id, status)
                if not recorded and tries > 1:
                    job = await queries.get_job(self.db, job_id)
                    recorded = job is not None and job["status"] == status and job["owner"] == self.owner
                    if recorded:
                        log.info("job %s: its end was recorded by an earlier try", job_id, extra={"job_id": job_id})
                        return True
                break
            except DatabaseUnavailable as exc:
                if tries == 1:
                    log.warning(
                        "job %s %s, not recorded yet: %s; trying again until the database answers",
                        job_id,
                        status,
                        exc,
                        extra={"job_id": job_id},
                    )
                await asyncio.sleep(wait)
                wait = min(2 * wait, longest)
        if not recorded:
            return False
        JOBS.labels(status).inc()
        log.info("job %s %s", job_id, status, extra={"job_id": job_id, "operation": operation})
        return True

    async def _emit_end(self, conn: Any, job_id: str, status: str) -> None:
        # Every completion goes through here, inside the transaction that records it (outbox).
        if self.emit is not None:
            job = await queries.get_job(conn, job_id)
            assert job is not None
            await self.emit(conn, f"job.{status}", job_event(job), tenant=job["tenant"])

    async def renew_leases(self) -> None:
        """Extend the lease of every job queued or running here; note those that ended or were taken over."""
        until = self.clock() + self.lease_s
        for job_id in list(self._owned):
            if not await queries.renew_lease(self.db, job_id, self.owner, until):
                self._lost.add(job_id)

    async def reclaim_once(self) -> dict[str, list[str]]:
        """Take over the jobs whose lease expired, or fail those out of attempts; one atomic pass.

        A taken-over ``cpu`` job is re-queued here; a ``gpu`` job goes back to the shared queue, where a GPU
        worker (or, after its wait, any worker) claims it.

        Returns
        -------
        dict
            ``{"taken": [...], "failed": [...]}``: job ids taken over and job ids marked failed.
        """
        room = self.max_queued - self.pending
        taken: list[dict[str, Any]] = []
        released: list[str] = []
        failed: list[str] = []
        if room <= 0:
            return {"taken": [], "failed": []}
        now = self.clock()
        async with self.db.transaction() as conn:
            rows = await queries.expired_jobs(
                conn, now, self.lease_s, room, lock=getattr(self.db, "dialect", "") == "postgresql"
            )
            for row in rows:
                if row["owner"] == self.owner and row["id"] in self._owned:
                    # Still held here: its renewals failed (the database was away), but this replica never stopped.
                    await queries.renew_lease(conn, row["id"], self.owner, now + self.lease_s)
                    continue
                if row["attempts"] >= self.max_attempts:
                    error = {
                        "status": 500,
                        "error": "attempts_exhausted",
                        "message": f"the job was started {row['attempts']} times and each time its replica stopped "
                        f"renewing its lease (JOB_MAX_ATTEMPTS={self.max_attempts})",
                        "fields": [],
                    }
                    if await queries.fail_expired_job(conn, row["id"], now, self.lease_s, error):
                        await self._emit_end(conn, row["id"], "failed")
                        failed.append(row["id"])
                elif row["capability"] == "gpu":
                    if await queries.release_expired_job(conn, row["id"], now, self.lease_s):
                        released.append(row["id"])
                elif await queries.take_over_job(conn, row["id"], now, self.lease_s, self.owner):
                    job = await queries.get_job(conn, row["id"])
                    assert job is not None
                    taken.append(job)
        for job_id in failed:
            JOBS.labels("failed").inc()
            log.warning("job %s failed: out of attempts", job_id, extra={"job_id": job_id})
        JOBS_TAKEN_OVER.inc(len(taken) + len(released))
        for job in taken:
            log.info("job %s taken over (attempt %d)", job["id"], job["attempts"] + 1, extra={"job_id": job["id"]})
            self.submit(job["id"], job_task(job, **self.task_defaults))
        for job_id in released:
            log.info("job %s taken over: back in the shared queue", job_id, extra={"job_id": job_id})
        if released:
            self._wake.set()
        return {"taken": [j["id"] for j in taken] + released, "failed": failed}

    async def heartbeat(self) -> None:
        """Record this process as a live worker of its capability (the queue routes GPU work by it)."""
        now = self.clock()
        await queries.record_worker(self.db, self.owner, self.capability, now, now - 100 * self.lease_s)

    async def _renew_leases(self) -> None:
        while True:
            await asyncio.sleep(self.lease_s / 3)
            try:
                await self.renew_leases()
            except DatabaseUnavailable as exc:
                log.warning("job lease renewal skipped: %s", exc)
            except Exception:
                log.exception("job lease renewal failed")

    async def _heartbeat_loop(self) -> None:
        while True:
            try:
                await self.heartbeat()
            except DatabaseUnavailable as exc:
                log.warning("job worker heartbeat skipped: %s", exc)
            except Exception:
                log.exception("job worker heartbeat failed")
            await asyncio.sleep(self.lease_s / 3)

    async def _reclaim_loop(self) -> None:
        period = min(defaults.JOB_RECLAIM_S, self.lease_s / 3)
        # The first pass comes soon after start (a restarted replica picks orphans up at once); jitter keeps
        # replicas started together from scanning in step.
        delay = random.uniform(0.0, period)
        while True:
            await asyncio.sleep(delay)
            try:
                await self.reclaim_once()
            except DatabaseUnavailable as exc:
                log.warning("job reclaim pass skipped: %s", exc)
            except Exception:
                log.exception("job reclaim pass failed")
            delay = period * random.uniform(0.5, 1.5)


def job_timings(job: dict[str, Any]) -> dict[str, float | None]:
    """Queued/started/finished times and the queue and run durations of a job record."""
    created, started, finished = job["created_at"], job["started_at"], job["finished_at"]
    return {
        "queued_at": created,
        "started_at": started,
        "finished_at": finished,
        "queue_s": None if started is None else started - created,
        "run_s": None if started is None or finished is None else finished - started,
    }


def job_placement(job: Mapping[str, Any]) -> dict[str, Any]:
    """Where a job ran and why (``wanted``, ``ran_on``: null until it starts, ``reason``), for its status."""
    noted = job.get("placement") or {}
    return {
        "wanted": noted.get("wanted") or job.get("capability") or "cpu",
        "ran_on": noted.get("ran_on"),
        "reason": noted.get("reason"),
    }


def job_event(job: dict[str, Any] | None) -> dict[str, Any]:
    """The data of a job.* webhook event."""
    assert job is not None
    result_url = f"/api/jobs/{job['id']}/result" if job["status"] == "succeeded" else None
    return {
        "job_id": job["id"],
        "operation": job["operation"],
        "status": job["status"],
        "timings": job_timings(job),
        "result_url": result_url,
    }
