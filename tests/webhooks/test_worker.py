"""The delivery worker on the embedded database: signatures, retries on schedule, Retry-After, dead letters,
disabling, timeouts, redirects and the connect-time address check."""

from __future__ import annotations

import asyncio
import json
import random
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from standardwebhooks import Webhook
from webhook_harness import config, script, sqlite_env, wait_for

from catalytic.webhooks import metrics
from catalytic.webhooks.receiver import ReceivedRequest, Reply
from catalytic.webhooks.store import get_endpoint, list_deliveries, rotate_secret
from catalytic.webhooks.worker import Worker, parse_retry_after


def verify(secret: str, request: ReceivedRequest) -> Any:
    return Webhook(secret).verify(request.body, request.headers)


def test_deliveries_are_signed_filtered_and_recorded(tmp_path: Path) -> None:
    async def run() -> None:
        async with sqlite_env(tmp_path) as env:
            _, secret = await env.endpoint("/jobs", ["job.succeeded", "job.failed"])
            wanted = [await env.emit("job.succeeded"), await env.emit("job.failed")]
            await env.emit("lattice.created", {"lattice_id": "l"})
            worker = Worker(env.db, config(), clock=env.clock)
            try:
                assert await worker.run_once() == 2
                assert await worker.run_once() == 0
            finally:
                await worker.aclose()
            received = env.receiver.requests
            assert sorted(r.headers["webhook-id"] for r in received) == sorted(wanted)
            for request in received:
                assert request.path == "/jobs"
                assert verify(secret, request)["type"] in {"job.succeeded", "job.failed"}
                stored = await env.db.fetchval(
                    "SELECT payload FROM events WHERE id = $1", request.headers["webhook-id"]
                )
                assert request.body == stored.encode()  # the exact bytes that were signed
            for event_id in wanted:
                [delivery] = await list_deliveries(env.db, event_id=event_id)
                assert (delivery["status"], delivery["attempts"], delivery["last_status_code"]) == ("succeeded", 1, 204)
                assert [a["outcome"] for a in delivery["attempt_log"]] == ["succeeded"]

    asyncio.run(run())


def test_500_then_200_succeeds_on_retry_at_the_scheduled_time(tmp_path: Path) -> None:
    async def run() -> None:
        async with sqlite_env(tmp_path, script(Reply(500, body=b"oops"), Reply(200))) as env:
            _, secret = await env.endpoint()
            event_id = await env.emit()
            first_try = env.clock()
            worker = Worker(env.db, config(retry_schedule="0,5,300"), clock=env.clock)
            try:
                assert await worker.run_once() == 1
                row = await env.delivery(event_id)
                assert (row["status"], row["attempts"], row["last_status_code"]) == ("pending", 1, 500)
                assert row["next_attempt_at"] == pytest.approx(first_try + 5)
                assert row["response_excerpt"] == "oops"
                env.clock.advance(4.9)
                assert await worker.run_once() == 0
                env.clock.advance(0.1)
                assert await worker.run_once() == 1
            finally:
                await worker.aclose()
            row = await env.delivery(event_id)
            assert (row["status"], row["attempts"], row["last_status_code"]) == ("succeeded", 2, 200)
            first, second = env.receiver.requests
            assert first.headers["webhook-id"] == second.headers["webhook-id"] == event_id
            assert first.body == second.body
            assert int(second.headers["webhook-timestamp"]) == int(first_try + 5)
            assert verify(secret, second)["data"] == {"job_id": "j"}
            endpoint = await env.db.fetchrow("SELECT first_failure_at, last_success_at FROM webhook_endpoints")
            assert endpoint is not None
            assert endpoint["first_failure_at"] is None
            assert endpoint["last_success_at"] == pytest.approx(first_try + 5)

    asyncio.run(run())


def test_jitter_stays_within_its_fraction(tmp_path: Path) -> None:
    async def run() -> None:
        async with sqlite_env(tmp_path, script(Reply(503))) as env:
            await env.endpoint()
            events = [await env.emit() for _ in range(20)]
            worker = Worker(env.db, config(retry_jitter=0.2), clock=env.clock, rng=random.Random(7))
            try:
                assert await worker.run_once() == 20
            finally:
                await worker.aclose()
            delays = [(await env.delivery(e))["next_attempt_at"] - env.clock() for e in events]
            assert all(4.0 <= d <= 6.0 for d in delays)
            assert len({round(d, 6) for d in delays}) > 1

    asyncio.run(run())


@pytest.mark.parametrize("header", ["120", "HTTP-DATE"])
def test_retry_after_is_honoured(tmp_path: Path, header: str) -> None:
    async def run() -> None:
        async with sqlite_env(tmp_path) as env:
            if header == "HTTP-DATE":
                from email.utils import formatdate

                value = formatdate(env.clock() + 120, usegmt=True)
            else:
                value = header
            env.receiver.respond = script(Reply(429, {"retry-after": value}), Reply(204))
            await env.endpoint()
            event_id = await env.emit()
            worker = Worker(env.db, config(), clock=env.clock)
            try:
                await worker.run_once()
                row = await env.delivery(event_id)
                assert row["next_attempt_at"] - env.clock() == pytest.approx(120, abs=1.0)
                env.clock.advance(60)
                assert await worker.run_once() == 0
                env.clock.advance(61)
                assert await worker.run_once() == 1
            finally:
                await worker.aclose()
            assert (await env.delivery(event_id))["status"] == "succeeded"

    asyncio.run(run())


def test_parse_retry_after() -> None:
    assert parse_retry_after(None, 0) is None
    assert parse_retry_after("soon", 0) is None
    assert parse_retry_after("Thu, 01 Jan 1970 00:00:10 GMT", 100.0) == 0.0


def test_a_delivery_is_dead_after_its_last_attempt(tmp_path: Path) -> None:
    async def run() -> None:
        async with sqlite_env(tmp_path, script(Reply(502))) as env:
            await env.endpoint()
            event_id = await env.emit()
            worker = Worker(env.db, config(retry_schedule="0,1,2"), clock=env.clock)
            dead_before = metrics.DELIVERIES_TOTAL.labels(outcome="dead")._value.get()
            try:
                for expected in ("pending", "pending", "dead"):
                    assert await worker.run_once() == 1
                    assert (await env.delivery(event_id))["status"] == expected
                    env.clock.advance(10)
                assert await worker.run_once() == 0
            finally:
                await worker.aclose()
            assert len(env.receiver.requests) == 3
            assert metrics.DELIVERIES_TOTAL.labels(outcome="dead")._value.get() == dead_before + 1

    asyncio.run(run())


def test_410_disables_the_endpoint_and_emits_endpoint_disabled(tmp_path: Path) -> None:
    def respond(request: ReceivedRequest) -> Reply:
        return Reply(410) if request.path == "/gone" else Reply(204)

    async def run() -> None:
        async with sqlite_env(tmp_path, respond) as env:
            gone, _ = await env.endpoint("/gone", ["job.succeeded"])
            _, watcher_secret = await env.endpoint("/watcher", ["endpoint.disabled"])
            first, second = await env.emit(), await env.emit()
            worker = Worker(env.db, config(batch_size=1), clock=env.clock)
            disabled_before = metrics.ENDPOINTS_DISABLED_TOTAL._value.get()
            try:
                assert await worker.run_once() == 1
                assert await worker.run_once() == 1  # the endpoint.disabled notice to the watcher
                assert await worker.run_once() == 0
            finally:
                await worker.aclose()
            row = await get_endpoint(env.db, gone)
            assert row is not None
            assert not row["enabled"]
            assert "410" in row["disabled_reason"]
            statuses = {(await env.delivery(first))["status"], (await env.delivery(second))["status"]}
            assert statuses == {"failed", "dead"}
            notice = [r for r in env.receiver.requests if r.path == "/watcher"]
            assert len(notice) == 1
            payload = verify(watcher_secret, notice[0])
            assert payload["type"] == "endpoint.disabled"
            assert payload["data"]["endpoint_id"] == gone
            assert metrics.ENDPOINTS_DISABLED_TOTAL._value.get() == disabled_before + 1

    asyncio.run(run())


def test_an_endpoint_failing_for_the_whole_period_is_disabled(tmp_path: Path) -> None:
    async def run() -> None:
        async with sqlite_env(tmp_path, script(Reply(500))) as env:
            endpoint_id, _ = await env.endpoint()
            worker = Worker(env.db, config(retry_schedule="0,3600", disable_after=86400), clock=env.clock)
            started = env.clock()
            try:
                for _ in range(4):  # a new event every 6 hours, each failing
                    await env.emit()
                    await worker.run_once()
                    row = await get_endpoint(env.db, endpoint_id)
                    assert row is not None
                    assert row["enabled"]
                    assert row["first_failure_at"] == pytest.approx(started)
                    env.clock.advance(6 * 3600)
                await env.emit()
                await worker.run_once()
            finally:
                await worker.aclose()
            row = await get_endpoint(env.db, endpoint_id)
            assert row is not None
            assert not row["enabled"]
            assert "failing continuously" in row["disabled_reason"]

    asyncio.run(run())


def test_success_resets_the_failure_streak(tmp_path: Path) -> None:
    async def run() -> None:
        async with sqlite_env(tmp_path, script(Reply(500), Reply(200), Reply(500))) as env:
            endpoint_id, _ = await env.endpoint()
            worker = Worker(env.db, config(retry_schedule="0,1", disable_after=100), clock=env.clock)
            try:
                await env.emit()
                await worker.run_once()
                env.clock.advance(99)
                await worker.run_once()  # the retry succeeds
                env.clock.advance(50)
                await env.emit()
                await worker.run_once()  # fails again: a new streak, 0 s long
            finally:
                await worker.aclose()
            row = await get_endpoint(env.db, endpoint_id)
            assert row is not None
            assert row["enabled"]
            assert row["first_failure_at"] == pytest.approx(env.clock())

    asyncio.run(run())


@pytest.mark.parametrize(
    ("reply", "error"),
    [
        (Reply(400), "HTTP 400"),
        (Reply(302, {"location": "http://169.254.169.254/latest/meta-data/"}), "redirect not followed"),
        (Reply(307, {"location": "http://10.0.0.1/"}), "redirect not followed"),
    ],
)
def test_client_errors_and_redirects_fail_without_retry(tmp_path: Path, reply: Reply, error: str) -> None:
    async def run() -> None:
        async with sqlite_env(tmp_path, script(reply)) as env:
            await env.endpoint()
            event_id = await env.emit()
            worker = Worker(env.db, config(), clock=env.clock)
            try:
                assert await worker.run_once() == 1
                env.clock.advance(1e6)
                assert await worker.run_once() == 0
            finally:
                await worker.aclose()
            row = await env.delivery(event_id)
            assert row["status"] == "failed"
            assert error in row["last_error"]
            assert len(env.receiver.requests) == 1

    asyncio.run(run())


def test_timeouts_and_refused_connections_are_retried(tmp_path: Path) -> None:
    async def slow(request: ReceivedRequest) -> Reply:
        await asyncio.sleep(0.8)
        return Reply(204)

    async def run() -> None:
        async with sqlite_env(tmp_path, slow) as env:
            await env.endpoint()
            from servers import free_port

            await env.endpoint(url=f"http://127.0.0.1:{free_port()}/closed")
            event_id = await env.emit()
            worker = Worker(env.db, config(total_timeout=0.3, lease_seconds=1), clock=env.clock)
            try:
                started = time.perf_counter()
                assert await worker.run_once() == 2
                assert time.perf_counter() - started < 1.5
            finally:
                await worker.aclose()
            errors = sorted(d["last_error"].split(":")[0] for d in await list_deliveries(env.db, event_id=event_id))
            assert errors == ["connection error", "timeout"]
            statuses = {d["status"] for d in await list_deliveries(env.db, event_id=event_id)}
            assert statuses == {"pending"}

    asyncio.run(run())


def test_response_excerpt_is_truncated_to_16_kb(tmp_path: Path) -> None:
    async def run() -> None:
        async with sqlite_env(tmp_path, script(Reply(200, body=b"a" * 100_000))) as env:
            await env.endpoint()
            event_id = await env.emit()
            worker = Worker(env.db, config(), clock=env.clock)
            try:
                await worker.run_once()
            finally:
                await worker.aclose()
            assert len((await env.delivery(event_id))["response_excerpt"]) == 16 * 1024

    asyncio.run(run())


def test_rotated_secrets_both_sign_during_the_grace_period(tmp_path: Path) -> None:
    async def run() -> None:
        async with sqlite_env(tmp_path) as env:
            endpoint_id, old = await env.endpoint()
            async with env.db.transaction() as conn:
                new = await rotate_secret(conn, endpoint_id, now=env.clock(), grace_s=60)
            assert new is not None
            await env.emit()
            worker = Worker(env.db, config(), clock=env.clock)
            try:
                await worker.run_once()
                env.clock.advance(61)
                await env.emit()
                await worker.run_once()
            finally:
                await worker.aclose()
            during, after = env.receiver.requests
            assert len(during.headers["webhook-signature"].split()) == 2
            assert verify(old, during) and verify(new, during)
            assert len(after.headers["webhook-signature"].split()) == 1
            assert verify(new, after)

    asyncio.run(run())


def test_dns_rebinding_is_refused_at_connect_time(tmp_path: Path) -> None:
    sent: list[httpx.Request] = []

    async def rebinding(host: str, port: int) -> list[str]:
        return ["10.0.0.7"]

    async def run() -> None:
        async with sqlite_env(tmp_path) as env:
            # Registered while the name pointed at a public address; it now answers with a private one.
            await env.endpoint(url="https://hooks.example/x")
            event_id = await env.emit()
            transport = httpx.MockTransport(lambda request: sent.append(request) or httpx.Response(200))
            worker = Worker(env.db, config(), clock=env.clock, transport=transport, resolver=rebinding)
            try:
                assert await worker.run_once() == 1
            finally:
                await worker.aclose()
            row = await env.delivery(event_id)
            assert row["status"] == "failed"
            assert "10.0.0.7" in row["last_error"]
            assert sent == []

    asyncio.run(run())


def test_the_sender_connects_to_the_checked_address(tmp_path: Path) -> None:
    sent: list[httpx.Request] = []

    async def public(host: str, port: int) -> list[str]:
        return ["93.184.215.14"]

    def answer(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(200, text="ok")

    async def run() -> None:
        async with sqlite_env(tmp_path) as env:
            _, secret = await env.endpoint(url="https://hooks.example:8443/in?x=1")
            await env.emit()
            worker = Worker(env.db, config(), clock=env.clock, transport=httpx.MockTransport(answer), resolver=public)
            try:
                assert await worker.run_once() == 1
            finally:
                await worker.aclose()
            [request] = sent
            assert str(request.url) == "https://93.184.215.14:8443/in?x=1"
            assert request.headers["host"] == "hooks.example:8443"
            assert request.extensions["sni_hostname"] == "hooks.example"
            assert Webhook(secret).verify(request.content, dict(request.headers))

    asyncio.run(run())


def test_disabled_or_deleted_endpoints_get_nothing(tmp_path: Path) -> None:
    async def run() -> None:
        async with sqlite_env(tmp_path) as env:
            endpoint_id, _ = await env.endpoint()
            event_id = await env.emit()
            await env.db.execute("UPDATE webhook_endpoints SET enabled = FALSE WHERE id = $1", endpoint_id)
            worker = Worker(env.db, config(), clock=env.clock)
            try:
                assert await worker.run_once() == 1
            finally:
                await worker.aclose()
            row = await env.delivery(event_id)
            assert (row["status"], row["last_error"]) == ("dead", "endpoint disabled")
            assert env.receiver.requests == []
            endpoint = await get_endpoint(env.db, endpoint_id)
            assert endpoint is not None
            assert endpoint["first_failure_at"] is None  # nothing was sent, so nothing failed

    asyncio.run(run())


def test_run_forever_wakes_stops_and_reports_the_queue(tmp_path: Path) -> None:
    async def run() -> None:
        async with sqlite_env(tmp_path) as env:
            await env.endpoint()
            await env.emit()
            worker = Worker(env.db, config(poll_interval=30))
            task = asyncio.create_task(worker.run_forever())
            try:
                for _ in range(100):
                    if env.receiver.requests:
                        break
                    await asyncio.sleep(0.02)
                assert len(env.receiver.requests) == 1
                await env.emit()
                worker.wake()  # without it the next round would start 30 s later
                for _ in range(100):
                    if len(env.receiver.requests) == 2:
                        break
                    await asyncio.sleep(0.02)
                assert len(env.receiver.requests) == 2
            finally:
                worker.stop()
                await asyncio.wait_for(task, 5)
                await worker.aclose()
            assert task.done()
            assert metrics.QUEUE_SIZE._value.get() >= 0
            payloads = [json.loads(r.body)["type"] for r in env.receiver.requests]
            assert payloads == ["job.succeeded", "job.succeeded"]

    asyncio.run(run())


def test_config_checks_and_a_lease_may_be_shorter_than_a_round() -> None:
    from pydantic import ValidationError

    from catalytic.webhooks.config import WebhookConfig

    with pytest.raises(ValidationError, match="lease_seconds"):
        WebhookConfig(lease_seconds=0)
    with pytest.raises(ValidationError, match="WEBHOOK_RETRY_SCHEDULE"):
        WebhookConfig(retry_schedule="5,-1")  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="WEBHOOK_ALLOW_CIDRS"):
        WebhookConfig(allow_cidrs="10.0.0.0/33")  # type: ignore[arg-type]
    # Leases are renewed while a round runs, so a round may outlast one.
    short = WebhookConfig(batch_size=1000, concurrency=10, total_timeout=1, lease_seconds=2)
    assert (short.longest_round_s, short.max_attempts) == (100.0, 8)
    assert Worker(None, short).stall_limit_s == 100.0 + short.idle_max_s + 30.0  # type: ignore[arg-type]


def test_a_running_attempt_keeps_its_lease_and_finished_ones_are_recorded_at_once(tmp_path: Path) -> None:
    release = asyncio.Event()

    async def respond(request: ReceivedRequest) -> Reply:
        if request.path == "/slow":
            await release.wait()
        return Reply(204)

    async def run() -> None:
        async with sqlite_env(tmp_path, respond) as env:
            await env.endpoint("/slow")
            await env.endpoint("/fast")
            await env.emit()
            lease = 0.6
            owner = Worker(env.db, config(lease_seconds=lease, total_timeout=10))
            rival = Worker(env.db, config(lease_seconds=lease))
            task = asyncio.create_task(owner.run_forever())
            try:
                await asyncio.sleep(3 * lease)  # eight renewals later the slow attempt is still running
                assert sorted(r.path for r in env.receiver.requests) == ["/fast", "/slow"]
                state = {d["url"].rsplit("/", 1)[-1]: d["status"] for d in await list_deliveries(env.db)}
                assert state == {"fast": "succeeded", "slow": "pending"}  # recorded without waiting for the slow one
                lease_until = await env.db.fetchval("SELECT lease_until FROM deliveries WHERE status = 'pending'")
                assert lease_until > time.time()  # renewed: the first lease ran out two leases ago
                assert await rival.run_once() == 0
                release.set()
                await wait_for(lambda: len(env.receiver.requests) == 2, 5, "nothing more")
                for _ in range(100):
                    if {d["status"] for d in await list_deliveries(env.db)} == {"succeeded"}:
                        break
                    await asyncio.sleep(0.02)
                assert {d["status"] for d in await list_deliveries(env.db)} == {"succeeded"}
                assert await owner.renew_leases() == 0
            finally:
                owner.stop()
                await asyncio.wait_for(task, 5)
                await owner.aclose()
                await rival.aclose()
            assert len(env.receiver.requests) == 2

    asyncio.run(run())


def test_a_resolver_that_hangs_counts_as_unresolvable(tmp_path: Path) -> None:
    async def hang(host: str, port: int) -> list[str]:
        await asyncio.sleep(10)
        return []

    async def run() -> None:
        async with sqlite_env(tmp_path) as env:
            await env.endpoint(url="https://slow-dns.example/")
            event_id = await env.emit()
            worker = Worker(env.db, config(connect_timeout=0.2), clock=env.clock, resolver=hang)
            try:
                assert await worker.run_once() == 1
            finally:
                await worker.aclose()
            row = await env.delivery(event_id)
            assert (row["status"], row["attempts"]) == ("pending", 1)
            assert "timed out" in row["last_error"]

    asyncio.run(run())
