"""Wake-ups instead of polling: an idle worker hears of new work through PostgreSQL LISTEN/NOTIFY, Redis or its own
process, catches up after its listener reconnects, and otherwise sleeps until the next delivery falls due."""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from servers import RedisServer, free_port
from webhook_harness import config, script, sqlite_env, wait_for

from catalytic.storage import Database, migrate, open_database
from catalytic.webhooks.receiver import LocalReceiver, ReceivedRequest, Reply
from catalytic.webhooks.store import create_endpoint, emit
from catalytic.webhooks.wakeup import CHANNEL, wake_in_process
from catalytic.webhooks.worker import Worker

REPO = Path(__file__).resolve().parents[2]
LISTENERS = "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND query LIKE 'LISTEN %'"


class CountingWorker(Worker):
    """A worker that counts its rounds, so a test can tell an idle worker from a polling one."""

    rounds = 0

    async def run_once(self) -> int:
        self.rounds += 1
        return await super().run_once()


@asynccontextmanager
async def running(worker: Worker) -> AsyncIterator[None]:
    task = asyncio.create_task(worker.run_forever())
    try:
        yield
        assert not task.done()
    finally:
        worker.stop()
        await asyncio.wait_for(task, 10)
        await worker.aclose()


@dataclass
class PgEnv:
    worker_db: Database
    db: Database
    receiver: LocalReceiver

    async def emit(self) -> tuple[str, float]:
        """Emit on the emitter's own connection; returns the event id and the time it committed."""
        async with self.db.transaction() as conn:
            event_id = await emit(conn, "job.succeeded", {"job_id": "j"})
        return event_id, time.time()

    def received(self, event_id: str) -> list[ReceivedRequest]:
        return [r for r in self.receiver.requests if r.headers["webhook-id"] == event_id]

    async def listener_pid(self) -> int:
        await wait_for_async(lambda: self.db.fetch(LISTENERS), "a listening connection")
        return int((await self.db.fetch(LISTENERS))[0]["pid"])


async def wait_for_async(probe: Callable[[], Awaitable[object]], what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not await probe():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)


@asynccontextmanager
async def postgres_env(url: str) -> AsyncIterator[PgEnv]:
    await asyncio.to_thread(migrate, url)
    worker_db, db = await open_database(url), await open_database(url)
    receiver = LocalReceiver()
    await receiver.start()
    try:
        async with db.transaction() as conn:
            await create_endpoint(conn, receiver.url + "/hook", [], "wake-up", now=time.time())
        yield PgEnv(worker_db, db, receiver)
    finally:
        await receiver.close()
        await db.close()
        await worker_db.close()


@asynccontextmanager
async def idle_worker_on_postgres(url: str) -> AsyncIterator[tuple[PgEnv, CountingWorker, int]]:
    """A running worker whose safety interval is 60 s, once it listens; yields the listener's backend pid too."""
    async with postgres_env(url) as env:
        worker = CountingWorker(env.worker_db, config(idle_max_s=60))
        async with running(worker):
            yield env, worker, await env.listener_pid()


async def delivered_within(env: PgEnv, seconds: float) -> None:
    event_id, committed = await env.emit()
    await wait_for(lambda: bool(env.received(event_id)), 10, "the delivery")
    elapsed = env.received(event_id)[0].received_at - committed
    assert elapsed < seconds, f"delivered {elapsed:.2f} s after the commit"


@pytest.mark.postgres
def test_an_emit_on_another_connection_wakes_an_idle_worker_within_a_second(pg_url: str) -> None:
    async def run() -> None:
        async with idle_worker_on_postgres(pg_url) as (env, _, _):
            await asyncio.sleep(0.5)  # idle now: without a wake-up the next round is 60 s away
            for _ in range(3):
                await delivered_within(env, 1.0)
                await asyncio.sleep(0.3)

    asyncio.run(run())


@pytest.mark.postgres
def test_an_idle_worker_runs_no_rounds_while_nothing_happens(pg_url: str) -> None:
    async def run() -> None:
        async with idle_worker_on_postgres(pg_url) as (env, worker, _):
            await asyncio.sleep(0.3)
            before = worker.rounds
            await asyncio.sleep(2.0)
            assert worker.rounds - before <= 1  # a 0.5 s poll would have run 8 rounds (2 loops, 4 each)
            await delivered_within(env, 1.0)

    asyncio.run(run())


@pytest.mark.postgres
def test_the_listener_reconnects_after_its_connection_is_killed_and_catches_up(pg_url: str) -> None:
    async def run() -> None:
        async with idle_worker_on_postgres(pg_url) as (env, _, first_pid):
            await delivered_within(env, 1.0)
            # Due again without any notification (as if announced while nobody listened): only the round run
            # right after reconnecting can find it.
            event_id, _ = await env.emit()
            await wait_for(lambda: bool(env.received(event_id)), 10, "the first delivery")
            await asyncio.sleep(0.3)
            await env.db.execute(
                "UPDATE deliveries SET status = 'pending', next_attempt_at = $2 WHERE event_id = $1",
                event_id,
                time.time(),
            )
            killed = time.time()
            assert await env.db.fetchval("SELECT pg_terminate_backend($1)", first_pid)
            await wait_for(lambda: len(env.received(event_id)) == 2, 10, "the catch-up round")
            assert env.received(event_id)[1].received_at - killed < 2.0

            async def reconnected() -> bool:
                return [r["pid"] for r in await env.db.fetch(LISTENERS)] not in ([], [first_pid])

            await wait_for_async(reconnected, "a new listening connection")
            await asyncio.sleep(0.3)
            await delivered_within(env, 1.0)

    asyncio.run(run())


def test_a_retry_goes_out_on_time_with_no_wake_up(tmp_path: Path) -> None:
    async def run() -> None:
        async with sqlite_env(tmp_path, script(Reply(500), Reply(204))) as env:
            await env.endpoint()
            worker = Worker(env.db, config(retry_schedule="0,2", idle_max_s=60))
            async with running(worker):
                await env.emit()
                await wait_for(lambda: len(env.receiver.requests) == 2, 10, "the retry")
            first, second = env.receiver.requests
            assert 1.8 <= second.received_at - first.received_at < 2.5

    asyncio.run(run())


def test_a_rolled_back_emit_wakes_nobody_and_a_committed_one_does(tmp_path: Path) -> None:
    async def run() -> None:
        async with sqlite_env(tmp_path) as env:
            await env.endpoint()
            woken = asyncio.Event()
            forget = wake_in_process(woken)
            try:
                with pytest.raises(RuntimeError):
                    async with env.db.transaction() as conn:
                        await emit(conn, "job.failed", {"job_id": "j"})
                        raise RuntimeError("the job's own write failed")
                await asyncio.sleep(0.05)
                assert not woken.is_set()
                await env.emit()
                await asyncio.wait_for(woken.wait(), 1)
            finally:
                forget()

    asyncio.run(run())


_EMITTER = """
import asyncio, sys, time
from catalytic.storage import open_database
from catalytic.webhooks.store import emit

async def main():
    db = await open_database(None, sqlite_path=sys.argv[1])
    async with db.transaction() as conn:
        event_id = await emit(conn, "job.succeeded", {"job_id": "elsewhere"})
    print(event_id, time.time(), flush=True)
    # The PUBLISH runs in the background after the commit; a script this short waits for it before exiting.
    await asyncio.gather(*(asyncio.all_tasks() - {asyncio.current_task()}))
    await db.close()

asyncio.run(main())
"""


@pytest.mark.redis
def test_an_emit_in_another_process_wakes_a_sqlite_worker_through_redis(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    async def subscribers() -> bool:
        import redis.asyncio as aioredis

        client = aioredis.Redis.from_url(redis_server.url)
        try:
            counts = await client.pubsub_numsub(CHANNEL)
        finally:
            await client.aclose()
        return bool(counts and counts[0][1] >= 1)

    async def run() -> None:
        async with sqlite_env(tmp_path) as env:
            await env.endpoint()
            worker = CountingWorker(env.db, config(idle_max_s=60, redis_url=redis_server.url))
            async with running(worker):
                await wait_for_async(subscribers, "the worker's subscription")
                await asyncio.sleep(0.5)
                rounds = worker.rounds
                emitter = await asyncio.create_subprocess_exec(
                    sys.executable, "-c", _EMITTER, str(tmp_path / "webhooks.db"), cwd=REPO,
                    env={**os.environ, "REDIS_URL": redis_server.url}, stdout=asyncio.subprocess.PIPE,
                )  # fmt: skip
                out, _ = await asyncio.wait_for(emitter.communicate(), 60)
                assert emitter.returncode == 0
                event_id, committed = out.decode().split()
                await wait_for(lambda: bool(env.receiver.requests), 10, "the delivery")
                request = env.receiver.requests[0]
                assert request.headers["webhook-id"] == event_id
                assert request.received_at - float(committed) < 1.0
                assert worker.rounds > rounds

    asyncio.run(run())


def test_an_unreachable_redis_is_reported_once_and_the_worker_carries_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    nowhere = f"redis://127.0.0.1:{free_port()}/0"
    monkeypatch.setenv("REDIS_URL", nowhere)
    caplog.set_level(logging.INFO, logger="catalytic.webhooks.wakeup")

    async def run() -> None:
        async with sqlite_env(tmp_path) as env:
            await env.endpoint()
            worker = Worker(env.db, config(idle_max_s=60, redis_url=nowhere))
            async with running(worker):
                await asyncio.sleep(1.0)  # several reconnection attempts fail meanwhile
                started = time.time()
                await env.emit()  # its PUBLISH fails too, but this process's worker is woken directly
                await wait_for(lambda: bool(env.receiver.requests), 10, "the delivery")
                assert env.receiver.requests[0].received_at - started < 1.0
                await asyncio.sleep(0.3)

    asyncio.run(run())
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len([w for w in warnings if "Redis wake-up channel is unavailable" in w]) == 1, warnings
    assert len([w for w in warnings if "Redis wake-up publishing is unavailable" in w]) == 1, warnings
