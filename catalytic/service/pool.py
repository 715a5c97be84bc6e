"""Inline computations in worker processes, so the kernels never share a GIL with the event loop.

Run on a thread of the serving process, a query of a few tens of microseconds costs the event loop far
more: the compute thread and the loop take the GIL from each other around every kernel call, and each
handoff is a thread wake-up. On a 2-core node one uvicorn worker spent 0.46 ms of CPU per uncached 5-D path
query that way, against 0.28 ms with the same work done on the loop itself. :class:`ProcessPool` runs the
work in child processes instead: the loop sends a batch of calls over a socket and reads back the JSON
bodies, ready to send.

* Batches. Each child has at most one batch in flight; calls that arrive meanwhile wait and go together
  as the next batch, so under load one round trip carries many calls.
* Lattices. A child keeps the lattices it has seen in an LRU of ``CACHE_SIZE``. A call names its lattice
  by cache key; a child that does not hold it answers ``need`` and the call is sent again with the spec
  and arrays (:func:`catalytic.service.compute.array_bytes`), which the child materialises.
* Time limit. A call past its limit kills the child that runs it, so the computation stops; the child's
  other calls are sent again to a fresh child. A call whose child died twice fails.
* Errors. The library's own errors (bad input found by the kernels) come back pickled and are raised here,
  so they answer exactly as on the thread pool; any other failure is raised as :class:`ComputeFailed`.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import logging
import multiprocessing
import os
import pickle
import socket
import struct
from collections import deque
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any

from catalytic.service.lifeline import run_child

__all__ = ["ComputeFailed", "Outcome", "ProcessPool", "WorkerLost"]

log = logging.getLogger("catalytic.service")

_HEADER = struct.Struct("!Q")
_MAX_ATTEMPTS = 2


class ComputeFailed(RuntimeError):
    """An inline computation failed in its worker process for a reason other than bad input."""


class WorkerLost(RuntimeError):
    """The worker process running a call died, twice."""


@dataclass(frozen=True)
class Outcome:
    """A finished call: the response body, the body of later cache hits, and what produced it."""

    fresh: bytes
    hit: bytes
    backend: str | None
    fallbacks: int


def _frame(message: Any) -> bytes:
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    return _HEADER.pack(len(data)) + data


def _recv_exact(sock: socket.socket, size: int) -> bytes | None:
    chunks = bytearray()
    while len(chunks) < size:
        chunk = sock.recv(size - len(chunks))
        if not chunk:
            return None
        chunks += chunk
    return bytes(chunks)


def _child_main(conn: Any, cache_size: int, cache_max_bytes: int | None = None) -> None:
    """Body of a worker process: answer batches of calls until the socket closes."""
    from catalytic.errors import CatalyticError
    from catalytic.kernels.backend import fallback_count
    from catalytic.operations import run_operation
    from catalytic.service.cache import LRU, lattice_bytes
    from catalytic.service.compute import answer_bodies, materialise

    sock = socket.socket(fileno=os.dup(conn.fileno()))
    conn.close()
    sock.setblocking(True)
    lattices: LRU[Any] = LRU(cache_size, weigh=lattice_bytes, max_bytes=cache_max_bytes)
    while True:
        header = _recv_exact(sock, _HEADER.size)
        if header is None:
            return
        body = _recv_exact(sock, _HEADER.unpack(header)[0])
        if body is None:
            return
        replies: list[tuple[Any, ...]] = []
        for call_id, key, shipped, operation, params, options in pickle.loads(body):
            lattice = lattices.get(key)
            materialised = False
            try:
                if lattice is None:
                    if shipped is None:
                        replies.append(("need", call_id))
                        continue
                    spec, arrays, max_vertices = shipped
                    lattice = materialise(spec, arrays, max_vertices)
                    materialised = True
                before = fallback_count()
                try:
                    answer, _ = run_operation(lattice, operation, params, **options)
                finally:
                    if materialised:  # weighed after its first call, with the masks the kernels prepared for it
                        lattices.put(key, lattice)
                fresh, hit = answer_bodies(answer)
                replies.append(("ok", call_id, fresh, hit, answer.get("backend"), fallback_count() - before))
            except CatalyticError as exc:  # bad input: raised again in the server process, answered the same way
                replies.append(("raise", call_id, exc))
            except Exception as exc:  # every failure is the call's answer; the worker lives on
                replies.append(("error", call_id, f"{type(exc).__name__}: {exc}"))
        sock.sendall(_frame(replies))


@dataclass(eq=False)
class _Call:
    id: int
    key: str
    lattice: Any
    operation: str
    params: dict[str, Any]
    options: dict[str, Any]
    future: asyncio.Future[Outcome]
    ship: bool = False
    attempts: int = 0


@dataclass(eq=False)
class _Worker:
    process: Any
    writer: asyncio.StreamWriter
    reader_task: asyncio.Task[None] | None = None
    in_flight: dict[int, _Call] = field(default_factory=dict)
    alive: bool = True

    @property
    def busy(self) -> bool:
        return bool(self.in_flight)


class ProcessPool:
    """Up to ``processes`` worker processes running inline computations in batches.

    Parameters
    ----------
    processes : int
        Most worker processes (PARALLEL_CORES per server process); they start on demand.
    cache_size : int
        Lattices each worker keeps materialised (CACHE_SIZE).
    cache_max_bytes : int, optional
        Bytes those lattices may hold in each worker, prepared masks included (CACHE_MAX_BYTES).
    io : concurrent.futures.Executor
        Where the spec and arrays of a lattice a worker lacks are serialised, off the event loop.
    max_vertices : int
        The vertex budget passed to :func:`catalytic.service.compute.materialise`.
    max_batch : int
        The most calls in one batch.
    """

    def __init__(
        self,
        processes: int,
        cache_size: int,
        io: Executor,
        max_vertices: int,
        max_batch: int = 64,
        *,
        cache_max_bytes: int | None = None,
    ) -> None:
        if processes < 1:
            raise ValueError("processes must be at least 1")
        self.processes = processes
        self.cache_size = cache_size
        self.cache_max_bytes = cache_max_bytes
        self.max_batch = max_batch
        self._io = io
        self._max_vertices = max_vertices
        self._ids = itertools.count(1)
        self._pending: deque[_Call] = deque()
        self._workers: list[_Worker] = []
        self._starting = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False
        self.batches = 0
        self.calls = 0

    def worker_pids(self) -> list[int]:
        """The process ids of the live workers."""
        return [w.process.pid for w in self._workers if w.alive]

    async def run(
        self,
        key: str,
        lattice: Any,
        operation: str,
        params: dict[str, Any],
        options: dict[str, Any],
        timeout_s: float,
    ) -> Outcome:
        """Run :func:`catalytic.operations.run_operation` in a worker; its bodies and backend.

        Raises
        ------
        TimeoutError
            Past ``timeout_s`` (the worker running it is killed).
        CatalyticError
            Bad input found by the kernels (the worker's own exception).
        ComputeFailed, WorkerLost
            An unexpected failure, or a worker that died twice under the call.
        """
        if self._closed:
            raise RuntimeError("the compute pool is closed")
        loop = asyncio.get_running_loop()
        call = _Call(next(self._ids), key, lattice, operation, params, options, loop.create_future())
        self._pending.append(call)
        self._dispatch()
        try:
            async with asyncio.timeout(timeout_s):
                return await call.future
        except TimeoutError:
            self._abandon(call)
            raise

    def _abandon(self, call: _Call) -> None:
        # A call past its limit: stop the computation by killing its worker (its other calls go again).
        for worker in self._workers:
            if call.id in worker.in_flight:
                worker.in_flight.pop(call.id)
                log.warning("an inline computation ran past its time limit; restarting its worker process")
                self._lost(worker)
                return

    def _dispatch(self) -> None:
        while self._pending and not self._closed:
            worker = next((w for w in self._workers if w.alive and not w.busy), None)
            if worker is None:
                if len(self._workers) + self._starting < self.processes:
                    self._starting += 1
                    starting = asyncio.get_running_loop().create_task(self._start_worker())
                    self._tasks.add(starting)  # held until done: the loop keeps only weak references
                    starting.add_done_callback(self._tasks.discard)
                return
            batch: list[_Call] = []
            while self._pending and len(batch) < self.max_batch:
                call = self._pending.popleft()
                if not call.future.done():
                    batch.append(call)
            if batch:
                self._send(worker, batch)

    def _send(self, worker: _Worker, batch: list[_Call]) -> None:
        messages = []
        for call in batch:
            call.attempts += 1
            worker.in_flight[call.id] = call
            shipped = call.lattice if call.ship else None
            messages.append((call.id, call.key, shipped, call.operation, call.params, call.options))
        self.batches += 1
        self.calls += len(batch)
        worker.writer.write(_frame(messages))

    async def _start_worker(self) -> None:
        try:
            ctx = multiprocessing.get_context("spawn")
            parent, child = ctx.Pipe(duplex=True)
            process = ctx.Process(
                target=run_child,
                args=(_child_main, child, self.cache_size, self.cache_max_bytes),
                daemon=True,
                name="catalytic-compute",
            )
            process.start()
            child.close()
            sock = socket.socket(fileno=os.dup(parent.fileno()))
            parent.close()
            reader, writer = await asyncio.open_connection(sock=sock)
        except Exception:
            self._starting -= 1
            log.exception("could not start a compute worker process")
            self._fail_pending(ComputeFailed("could not start a compute worker process"))
            return
        self._starting -= 1
        worker = _Worker(process, writer)
        if self._closed:
            self._stop(worker)
            return
        self._workers.append(worker)
        worker.reader_task = asyncio.get_running_loop().create_task(self._read(worker, reader))
        self._dispatch()

    async def _read(self, worker: _Worker, reader: asyncio.StreamReader) -> None:
        try:
            while True:
                header = await reader.readexactly(_HEADER.size)
                replies = pickle.loads(await reader.readexactly(_HEADER.unpack(header)[0]))
                needed = self._settle(worker, replies)
                if needed:
                    await self._ship(needed)
                self._dispatch()
        except (asyncio.IncompleteReadError, ConnectionError, OSError):
            if worker.alive and not self._closed:
                log.warning("a compute worker process ended unexpectedly; starting another")
                self._lost(worker)

    def _settle(self, worker: _Worker, replies: list[tuple[Any, ...]]) -> list[_Call]:
        needed = []
        for reply in replies:
            call = worker.in_flight.pop(reply[1], None)
            if call is None or call.future.done():
                continue
            if reply[0] == "ok":
                call.future.set_result(Outcome(reply[2], reply[3], reply[4], int(reply[5])))
            elif reply[0] == "need":
                call.attempts -= 1  # not an attempt: the worker did not have the lattice yet
                needed.append(call)
            elif reply[0] == "raise":
                call.future.set_exception(reply[2])
            else:
                call.future.set_exception(ComputeFailed(reply[2]))
        return needed

    async def _ship(self, calls: list[_Call]) -> None:
        from catalytic.service.compute import array_bytes

        loop = asyncio.get_running_loop()
        shipped: dict[str, Any] = {}
        for call in calls:
            if call.key not in shipped:
                # Uploaded arrays go too: an inline lattice is small, and the child need not find ARRAYS_DIR.
                ship = functools.partial(array_bytes, call.lattice, with_uploaded=True)
                arrays = await loop.run_in_executor(self._io, ship)
                shipped[call.key] = (call.lattice.spec(), arrays, self._max_vertices)
        for call in reversed(calls):
            call.lattice = shipped[call.key]
            call.ship = True
            self._pending.appendleft(call)

    def _lost(self, worker: _Worker) -> None:
        worker.alive = False
        if worker in self._workers:
            self._workers.remove(worker)
        orphans = list(worker.in_flight.values())
        worker.in_flight.clear()
        self._stop(worker)
        for call in orphans:
            if call.future.done():
                continue
            if call.attempts >= _MAX_ATTEMPTS:
                call.future.set_exception(WorkerLost("the compute worker process died twice running this call"))
            else:
                self._pending.appendleft(call)
        self._dispatch()

    def _fail_pending(self, exc: BaseException) -> None:
        while self._pending:
            call = self._pending.popleft()
            if not call.future.done():
                call.future.set_exception(exc)

    @staticmethod
    def _stop(worker: _Worker) -> None:
        worker.alive = False
        with contextlib.suppress(Exception):
            worker.writer.close()
        process = worker.process
        if process.is_alive():
            process.kill()
        process.join(1)
        if worker.reader_task is not None and worker.reader_task is not asyncio.current_task():
            worker.reader_task.cancel()

    async def close(self) -> None:
        """Stop every worker process; calls still waiting fail."""
        self._closed = True
        for worker in list(self._workers):
            self._lost_quietly(worker)
        self._workers.clear()
        self._fail_pending(RuntimeError("the compute pool is closed"))

    def _lost_quietly(self, worker: _Worker) -> None:
        for call in worker.in_flight.values():
            if not call.future.done():
                call.future.set_exception(RuntimeError("the compute pool is closed"))
        worker.in_flight.clear()
        self._stop(worker)
