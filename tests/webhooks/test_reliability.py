"""Durability on a real PostgreSQL: a worker killed mid-delivery loses nothing, two workers never send the same
attempt, a retry lands at its scheduled time, and the worker rides out a database restart."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
from servers import PostgresServer
from standardwebhooks import Webhook
from webhook_harness import FakeClock, config, script, wait_for

from catalytic.storage import Database, migrate, open_database
from catalytic.webhooks.receiver import ReceivedRequest, Reply, ThreadedReceiver
from catalytic.webhooks.store import create_endpoint, emit
from catalytic.webhooks.worker import Worker

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]


async def prepare(url: str, receiver_url: str, events: int) -> tuple[Database, str, list[str]]:
    await asyncio.to_thread(migrate, url)
    db = await open_database(url)
    async with db.transaction() as conn:
        _, secret = await create_endpoint(conn, receiver_url + "/hook", [], "reliability", now=time.time())
    event_ids: list[str] = []
    for start in range(0, events, 250):
        async with db.transaction() as conn:
            for index in range(start, min(start + 250, events)):
                event_ids.append(await emit(conn, "job.succeeded", {"job_id": f"job-{index}"}))
    return db, secret, event_ids


LEASE_S = 2.0
BATCH = 200
CONCURRENCY = 20
ROUNDS = 2


def start_worker(url: str) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "DATABASE_URL": url,
        "WEBHOOK_ALLOW_CIDRS": "127.0.0.1/32",
        "WEBHOOK_LEASE_SECONDS": str(LEASE_S),
        "WEBHOOK_TOTAL_TIMEOUT": "30",
        "WEBHOOK_CONNECT_TIMEOUT": "2",
        "WEBHOOK_RETRY_SCHEDULE": "0,0.5,1,1,1,1,1,1",
        # A round claims far more than it has in flight: only what is in flight may be sent twice.
        "WEBHOOK_BATCH_SIZE": str(BATCH),
        "WEBHOOK_CONCURRENCY": str(CONCURRENCY),
        "WEBHOOK_ROUNDS_IN_FLIGHT": str(ROUNDS),
        "WEBHOOK_POLL_INTERVAL": "0.1",
    }
    code = "import asyncio; from catalytic.webhooks.worker import run_worker; asyncio.run(run_worker())"
    return subprocess.Popen([sys.executable, "-c", code], cwd=REPO, env=env)


def test_sigkill_mid_delivery_loses_nothing(pg_url: str) -> None:
    release = threading.Event()
    hold_after = 300

    async def respond(request: ReceivedRequest) -> Reply:
        # After the first few hundred, requests hang: the worker is certainly mid-delivery when it is killed.
        while len(receiver.requests) > hold_after and not release.is_set():
            await asyncio.sleep(0.01)
        return Reply(204)

    receiver = ThreadedReceiver(respond).start()

    async def run() -> None:
        db, secret, event_ids = await prepare(pg_url, receiver.url, 1000)
        first = start_worker(pg_url)
        try:
            await wait_for(lambda: len(receiver.requests) > hold_after + 10, 60, "the first worker to get going")
            await asyncio.sleep(3 * LEASE_S)  # the held attempts outlive their first lease: renewed, not resent
            held = len(receiver.requests) - hold_after
            assert held <= CONCURRENCY * ROUNDS
            first.send_signal(signal.SIGKILL)
            assert first.wait(timeout=10) == -signal.SIGKILL
        finally:
            if first.poll() is None:
                first.kill()
                first.wait()
        in_flight = await db.fetchval(
            "SELECT count(*) FROM deliveries WHERE status = 'pending' AND claimed_by IS NOT NULL"
        )
        assert in_flight > 0  # leased by the dead worker, their requests sent but never recorded
        release.set()
        killed_at = time.time()
        second = start_worker(pg_url)
        try:
            for _ in range(1200):
                if await db.fetchval("SELECT count(*) FROM deliveries WHERE status = 'succeeded'") == len(event_ids):
                    break
                assert second.poll() is None, "the restarted worker died"
                await asyncio.sleep(0.05)
            second.send_signal(signal.SIGTERM)
            assert second.wait(timeout=30) == 0
        finally:
            if second.poll() is None:
                second.kill()
                second.wait()
        statuses = await db.fetch("SELECT status, last_error, count(*) AS n FROM deliveries GROUP BY 1, 2")
        await db.close()
        assert [(r["status"], r["n"]) for r in statuses] == [("succeeded", 1000)], statuses
        received = Counter(r.headers["webhook-id"] for r in receiver.requests)
        assert set(received) == set(event_ids)
        duplicates = sum(received.values()) - len(event_ids)
        # Attempts are recorded as they finish: what goes out again is what was in flight at the kill, no more.
        assert 0 < duplicates <= held
        resent_at = [r.received_at for r in receiver.requests if received[r.headers["webhook-id"]] > 1]
        resend_delay = max(resent_at) - killed_at
        assert resend_delay < LEASE_S + 10  # once their lease ran out, not after a production-length one
        print(f"webhook worker killed with 1000 deliveries: {held} in flight, {duplicates} sent twice, 0 lost")
        verifier = Webhook(secret)
        for request in receiver.requests:
            assert verifier.verify(request.body, request.headers)["type"] == "job.succeeded"

    try:
        asyncio.run(run())
    finally:
        receiver.stop()


def test_two_workers_never_send_the_same_attempt(pg_url: str) -> None:
    receiver = ThreadedReceiver().start()

    async def run() -> None:
        db, secret, event_ids = await prepare(pg_url, receiver.url, 400)
        pools = [await open_database(pg_url) for _ in range(2)]
        workers = [Worker(pool, config(batch_size=20, poll_interval=0.05)) for pool in pools]
        tasks = [asyncio.create_task(w.run_forever()) for w in workers]
        try:
            await wait_for(lambda: len(receiver.requests) >= len(event_ids), 120, "every delivery")
            await asyncio.sleep(0.3)
        finally:
            for worker in workers:
                worker.stop()
            await asyncio.gather(*tasks)
            for worker, pool in zip(workers, pools, strict=True):
                await worker.aclose()
                await pool.close()
        received = Counter(r.headers["webhook-id"] for r in receiver.requests)
        assert set(received) == set(event_ids)
        assert max(received.values()) == 1
        verifier = Webhook(secret)
        assert all(verifier.verify(r.body, r.headers) for r in receiver.requests)
        per_worker = await db.fetch("SELECT worker, count(*) AS n FROM delivery_attempts GROUP BY worker")
        assert {r["worker"] for r in per_worker} == {w.worker_id for w in workers}
        assert sum(r["n"] for r in per_worker) == len(event_ids)
        await db.close()

    try:
        asyncio.run(run())
    finally:
        receiver.stop()


def test_retry_lands_at_its_scheduled_time_on_postgres(pg_url: str) -> None:
    receiver = ThreadedReceiver(script(Reply(500), Reply(200))).start()

    async def run() -> None:
        db, secret, [event_id] = await prepare(pg_url, receiver.url, 1)
        clock = FakeClock()
        worker = Worker(db, config(retry_schedule="0,30"), clock=clock)
        try:
            assert await worker.run_once() == 1
            clock.advance(29.9)
            assert await worker.run_once() == 0
            clock.advance(0.1)
            assert await worker.run_once() == 1
            # A delivery created in a month with no partition of its own lands in the default partition.
            far = FakeClock(4_100_000_000.0)
            async with db.transaction() as conn:
                future_event = await emit(conn, "job.failed", {"job_id": "far"}, now=far())
            partition = await db.fetchval(
                "SELECT tableoid::regclass::text FROM deliveries WHERE event_id = $1", future_event
            )
            assert partition == "deliveries_default"
        finally:
            await worker.aclose()
        row = await db.fetchrow("SELECT status, attempts FROM deliveries WHERE event_id = $1", event_id)
        assert dict(row or {}) == {"status": "succeeded", "attempts": 2}
        current = await db.fetchval("SELECT tableoid::regclass::text FROM deliveries WHERE event_id = $1", event_id)
        assert current.startswith("deliveries_y")
        await db.close()
        first, second = receiver.requests
        assert int(second.headers["webhook-timestamp"]) - int(first.headers["webhook-timestamp"]) == 30
        assert Webhook(secret).verify(second.body, second.headers)

    try:
        asyncio.run(run())
    finally:
        receiver.stop()


def test_worker_carries_on_after_a_postgres_restart(postgres_server: PostgresServer, pg_url: str) -> None:
    if not postgres_server.managed:
        pytest.skip("DATABASE_URL points at an external server, which tests cannot restart")
    receiver = ThreadedReceiver().start()

    async def run() -> None:
        db, secret, before = await prepare(pg_url, receiver.url, 50)
        worker_db = await open_database(pg_url)
        worker = Worker(worker_db, config(poll_interval=0.05))
        task = asyncio.create_task(worker.run_forever())
        try:
            await wait_for(lambda: len(receiver.requests) >= 50, 60, "the first deliveries")
            await asyncio.to_thread(postgres_server.restart)
            await db.close()
            db = await open_database(pg_url)
            after = []
            async with db.transaction() as conn:
                for index in range(50):
                    after.append(await emit(conn, "job.cancelled", {"job_id": f"late-{index}"}))
            await wait_for(lambda: len(receiver.requests) >= 100, 60, "deliveries after the restart")
            assert not task.done()
        finally:
            worker.stop()
            await asyncio.wait_for(task, 30)
            await worker.aclose()
            await worker_db.close()
        received = {r.headers["webhook-id"] for r in receiver.requests}
        assert received == set(before) | set(after)
        verifier = Webhook(secret)
        assert all(verifier.verify(r.body, r.headers) for r in receiver.requests)
        succeeded = await db.fetchval("SELECT count(*) FROM deliveries WHERE status = 'succeeded'")
        assert succeeded == 100
        await db.close()

    try:
        asyncio.run(run())
    finally:
        receiver.stop()
