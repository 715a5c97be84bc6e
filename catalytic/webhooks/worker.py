"""The delivery worker: claim due deliveries, send them signed, record the outcome, retry or give up.

One round (:meth:`Worker.run_once`) claims up to ``batch_size`` due deliveries under a lease, sends them
concurrently, and records the attempts as they finish, one transaction at a time (those that finished while the
last one was written go in the next). On PostgreSQL the claim is ``SELECT ... FOR UPDATE SKIP LOCKED`` inside an
``UPDATE``, so concurrent workers never claim the same delivery; on SQLite the claim is an ``UPDATE ... RETURNING``
under the file's single write lock. While a worker lives it renews the leases of the deliveries it has claimed and
not yet recorded, every third of a lease, so nobody else sends them. A worker that dies leaves its leases to
expire, and what it had claimed but not recorded is sent again (at least once): with attempts recorded as they
finish, that is what was in flight, and it goes out again within a lease (``WEBHOOK_LEASE_SECONDS``). The attempt
counter moves at claim time, so a message that kills workers still runs out of attempts.

Between rounds an idle worker sleeps until the first of: a wake-up (a PostgreSQL notification, a Redis message or
an emit in this process; see :mod:`catalytic.webhooks.wakeup`), the moment the earliest pending delivery falls
due, or ``WEBHOOK_IDLE_MAX_S``. It never polls.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import email.utils
import functools
import logging
import os
import random
import signal
import socket
import time
import uuid
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from dataclasses import dataclass
from typing import Any

import httpx

from catalytic.storage import Connection, Database, ensure_month_partitions, is_postgres_url, migrate, open_database
from catalytic.webhooks import metrics, wakeup
from catalytic.webhooks.config import MAX_RESPONSE_EXCERPT_BYTES, MAX_RETRY_AFTER_S, WebhookConfig
from catalytic.webhooks.safety import (
    IPAddress,
    Resolver,
    UnresolvableHostError,
    UnsafeURLError,
    resolve_allowed,
    split_url,
    system_resolver,
)
from catalytic.webhooks.signing import signed_headers
from catalytic.webhooks.store import active_secrets, disable_endpoint, new_id, placeholders
from catalytic.webhooks.transport import DeliveryTransport

__all__ = ["AttemptResult", "Worker", "run_worker"]

logger = logging.getLogger(__name__)

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]

USER_AGENT = "catalytic-webhooks/1"
MAINTENANCE_INTERVAL_S = 3600.0
GAUGE_INTERVAL_S = 1.0
RECORD_RETRIES = 6
MAX_IDLE_BACKOFF_S = 5.0
# The shortest pause before a round that the clock says is due: a delivery due but locked by another worker's
# claim becomes claimable within milliseconds, and this keeps the wait for it from spinning.
MIN_IDLE_S = 0.02
# Slack on top of the longest healthy pause between two rounds' progress (see Worker.stall_limit_s): recording
# retries, the claim and the load queries.
STALL_MARGIN_S = 30.0

_CLAIM_POSTGRES = """
UPDATE deliveries AS d
SET lease_until = $2, claimed_by = $3, attempts = d.attempts + 1, updated_at = $1
FROM (
    SELECT id, created_at FROM deliveries
    WHERE status = 'pending' AND next_attempt_at <= $1 AND (lease_until IS NULL OR lease_until <= $1)
    ORDER BY next_attempt_at
    LIMIT $4
    FOR UPDATE SKIP LOCKED
) AS due
WHERE d.id = due.id AND d.created_at = due.created_at
RETURNING d.id, d.event_id, d.endpoint_id, d.attempts, d.created_at
"""
_CLAIM_SQLITE = """
UPDATE deliveries
SET lease_until = $2, claimed_by = $3, attempts = attempts + 1, updated_at = $1
WHERE id IN (
    SELECT id FROM deliveries
    WHERE status = 'pending' AND next_attempt_at <= $1 AND (lease_until IS NULL OR lease_until <= $1)
    ORDER BY next_attempt_at
    LIMIT $4
)
RETURNING id, event_id, endpoint_id, attempts, created_at
"""
# When the next round could claim something: a pending delivery is claimable once due and out of any lease.
_NEXT_DUE = """
SELECT min(CASE WHEN lease_until > next_attempt_at THEN lease_until ELSE next_attempt_at END)
FROM deliveries WHERE status = 'pending'
"""
# The gauges' reading of the pending deliveries: due now; the oldest one's creation; since when the longest-waiting
# due and unclaimed one has been due.
_PENDING_SUMMARY = """
SELECT COUNT(CASE WHEN next_attempt_at <= $1 THEN 1 END) AS due,
       MIN(created_at) AS oldest_created,
       MIN(CASE WHEN next_attempt_at <= $1 AND (lease_until IS NULL OR lease_until <= $1) THEN next_attempt_at END)
           AS oldest_due
FROM deliveries WHERE status = 'pending'
"""
_RECORD = """
UPDATE deliveries
SET status = $4, next_attempt_at = $5, lease_until = NULL, claimed_by = NULL, last_attempt_at = $6,
    last_status_code = $7, last_error = $8, response_excerpt = $9, delivered_at = $10, updated_at = $6
WHERE id = $1 AND created_at = $2 AND claimed_by = $3
"""
_RENEW = """
UPDATE deliveries SET lease_until = $1 WHERE claimed_by = $2 AND status = 'pending' AND id IN ({ids})
"""
_ATTEMPT = """
INSERT INTO delivery_attempts (id, delivery_id, event_id, endpoint_id, attempt, outcome, status_code, error,
                               response_excerpt, duration_s, worker, created_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
"""


@dataclass(frozen=True)
class _Claim:
    delivery_id: str
    event_id: str
    endpoint_id: str
    attempt: int
    created_at: float


@dataclass(frozen=True)
class AttemptResult:
    """What one attempt came to. ``outcome`` is succeeded, retry, failed, dead or refused."""

    claim: _Claim
    outcome: str
    at: float
    duration_s: float
    status_code: int | None = None
    error: str | None = None
    excerpt: str | None = None
    next_attempt_at: float | None = None
    gone: bool = False
    skipped: bool = False

    @property
    def status(self) -> str:
        """The delivery's state after this attempt."""
        return {"retry": "pending", "refused": "failed"}.get(self.outcome, self.outcome)


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta seconds or an HTTP date), or None.

    Examples
    --------
    >>> parse_retry_after("120", 0.0)
    120.0
    >>> parse_retry_after("Thu, 01 Jan 1970 00:01:00 GMT", 30.0)
    30.0
    """
    if not value:
        return None
    text = value.strip()
    if text.isdigit():
        return float(text)
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return max(0.0, when.timestamp() - now)


async def _read_excerpt(response: httpx.Response) -> str:
    kept = bytearray()
    async for chunk in response.aiter_bytes():
        kept += chunk
        if len(kept) >= MAX_RESPONSE_EXCERPT_BYTES:
            break
    return bytes(kept[:MAX_RESPONSE_EXCERPT_BYTES]).decode("utf-8", "replace")


class Worker:
    """Sends pending webhook deliveries; one instance per process or task.

    Parameters
    ----------
    db : Database
        An open database with the webhook tables.
    config : WebhookConfig, optional
        Retry schedule, timeouts, lease, allow-list...; read from the environment by default.
    clock : callable, optional
        Current time in epoch seconds (``time.time`` by default); tests pass a fake one.
    transport : httpx.AsyncBaseTransport, optional
        The HTTP transport (:class:`DeliveryTransport` by default); tests inject one. Redirects are never followed.
    resolver : async callable, optional
        ``(host, port) -> addresses``, checked again right before each connection.
    rng : random.Random, optional
        The source of retry jitter.
    sleep : async callable, optional
        How a failed write of the attempts waits before it is tried again.

    Examples
    --------
    >>> async def drain(db) -> int:
    ...     worker = Worker(db, WebhookConfig(allow_cidrs="127.0.0.1/32"))
    ...     try:
    ...         return await worker.run_once()
    ...     finally:
    ...         await worker.aclose()
    """

    def __init__(
        self,
        db: Database,
        config: WebhookConfig | None = None,
        *,
        clock: Clock = time.time,
        transport: httpx.AsyncBaseTransport | None = None,
        resolver: Resolver = system_resolver,
        rng: random.Random | None = None,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self.db = db
        self.config = config or WebhookConfig()
        self.worker_id = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._clock = clock
        self._transport = transport
        self._resolver = resolver
        self._rng = rng or random.Random()
        self._sleep = sleep
        self._networks = self.config.networks()
        self._own_transport: DeliveryTransport | None = None
        self._stop = asyncio.Event()
        self._wake = asyncio.Event()
        self._next_maintenance = 0.0
        self._next_gauge = 0.0
        self._progress: list[float] = []
        self.last_round_ok = False
        self._leased: dict[str, float] = {}
        """Deliveries claimed here and not yet recorded (id: creation time), whose leases the heartbeat renews."""
        longest = max(self.config.lease_seconds, self.config.longest_round_s)
        self.stall_limit_s = longest + self.config.idle_max_s + STALL_MARGIN_S
        """Seconds without progress of a delivery loop after which it counts as stuck: a round lasts at most a
        lease or its waves of attempts, whichever is longer, and an idle wait at most ``idle_max_s``."""

    # ------------------------------------------------------------------ one round

    async def run_once(self) -> int:
        """Claim due deliveries, send them, record the outcomes; returns how many attempts were made."""
        now = self._clock()
        await self._maintain(now)
        claims = await self._claim(now)
        if not claims:
            return 0
        try:
            events, endpoints = await self._load(claims)
            addresses = await self._resolve_all(endpoints.values())
        except BaseException:
            self._forget(claims)
            raise
        limit = asyncio.Semaphore(self.config.concurrency)
        finished: list[AttemptResult] = []
        arrived = asyncio.Event()
        running = len(claims)

        async def attempt(claim: _Claim) -> None:
            nonlocal running
            try:
                async with limit:
                    endpoint = endpoints.get(claim.endpoint_id)
                    finished.append(await self._attempt(claim, events.get(claim.event_id), endpoint, addresses))
            finally:
                running -= 1
                arrived.set()

        tasks = [asyncio.create_task(attempt(c)) for c in claims]
        try:
            # A delivery sent but not recorded is sent again should this worker die: record each as it finishes.
            while running or finished:
                await arrived.wait()
                arrived.clear()
                done, finished[:] = finished[:], []
                if done:
                    await self._record(done)
                    self._forget(r.claim for r in done)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            self._forget(claims)
        for task in tasks:
            task.result()
        return len(claims)

    def _forget(self, claims: Iterable[_Claim]) -> None:
        for claim in claims:
            self._leased.pop(claim.delivery_id, None)

    async def renew_leases(self) -> int:
        """Extend the leases of the deliveries claimed here and not yet recorded; returns how many were renewed."""
        leased = sorted(self._leased)
        if not leased:
            return 0
        until = self._clock() + self.config.lease_seconds
        renewed = 0
        for start in range(0, len(leased), 500):
            chunk = leased[start : start + 500]
            sql = _RENEW.format(ids=placeholders(3, len(chunk)))
            status = await self.db.execute(sql, until, self.worker_id, *chunk)
            renewed += int(status.rsplit(" ", 1)[-1])
        return renewed

    async def _heartbeat(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.config.lease_seconds / 3):
                    await self._stop.wait()
            try:
                await self.renew_leases()
            except Exception as exc:  # the database went away: the next beat tries again, the leases may lapse
                logger.warning("renewing delivery leases failed (%s: %s)", type(exc).__name__, exc)

    async def _maintain(self, now: float) -> None:
        if now >= self._next_maintenance:
            self._next_maintenance = now + MAINTENANCE_INTERVAL_S
            await ensure_month_partitions(self.db, now)
        if now >= self._next_gauge:
            self._next_gauge = now + GAUGE_INTERVAL_S
            row = await self.db.fetchrow(_PENDING_SUMMARY, now) or {}
            oldest_created, oldest_due = row.get("oldest_created"), row.get("oldest_due")
            metrics.QUEUE_SIZE.set(int(row.get("due") or 0))
            metrics.OLDEST_PENDING_AGE_SECONDS.set(0.0 if oldest_created is None else max(0.0, now - oldest_created))
            metrics.OLDEST_DUE_WAIT_SECONDS.set(0.0 if oldest_due is None else max(0.0, now - oldest_due))

    async def _claim(self, now: float) -> list[_Claim]:
        sql = _CLAIM_POSTGRES if self.db.dialect == "postgresql" else _CLAIM_SQLITE
        async with self.db.transaction() as conn:
            rows = await conn.fetch(sql, now, now + self.config.lease_seconds, self.worker_id, self.config.batch_size)
        claims = [
            _Claim(r["id"], r["event_id"], r["endpoint_id"], int(r["attempts"]), float(r["created_at"])) for r in rows
        ]
        self._leased.update((c.delivery_id, c.created_at) for c in claims)
        return claims

    async def _load(self, claims: list[_Claim]) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, Any]]]:
        event_ids = sorted({c.event_id for c in claims})
        endpoint_ids = sorted({c.endpoint_id for c in claims})
        events = await self.db.fetch(
            f"SELECT id, payload FROM events WHERE id IN ({placeholders(1, len(event_ids))})", *event_ids
        )
        wanted = placeholders(1, len(endpoint_ids))
        endpoints = await self.db.fetch(
            f"SELECT id, url, secrets, enabled FROM webhook_endpoints WHERE id IN ({wanted})", *endpoint_ids
        )
        return {e["id"]: e for e in events}, {e["id"]: e for e in endpoints}

    # ------------------------------------------------------------------ one attempt

    def _sender(self) -> httpx.AsyncBaseTransport:
        # Requests go straight to the transport: the worker needs no cookies, redirects or auth flows from a client,
        # and skipping them is a measurable share of the CPU spent per delivery.
        if self._transport is None:
            self._own_transport = DeliveryTransport(
                connect_timeout=self.config.connect_timeout, max_idle=self.config.concurrency
            )
            self._transport = self._own_transport
        return self._transport

    def _retry_at(self, claim: _Claim, now: float, retry_after: float | None) -> float | None:
        schedule = self.config.retry_schedule
        if claim.attempt >= len(schedule):
            return None
        delay = schedule[claim.attempt]
        jitter = self.config.retry_jitter
        delay *= 1.0 + self._rng.uniform(-jitter, jitter)
        if retry_after is not None:
            delay = max(delay, min(retry_after, MAX_RETRY_AFTER_S))
        return now + delay

    def _retry_or_dead(
        self, claim: _Claim, now: float, duration: float, *, error: str, code: int | None = None,
        excerpt: str | None = None, retry_after: float | None = None,
    ) -> AttemptResult:  # fmt: skip
        when = self._retry_at(claim, now, retry_after)
        outcome = "retry" if when is not None else "dead"
        return AttemptResult(claim, outcome, now, duration, code, error, excerpt, next_attempt_at=when)

    async def _resolve_all(self, endpoints: Iterable[dict[str, Any]]) -> dict[str, list[IPAddress] | UnsafeURLError]:
        """Check each endpoint URL's addresses once per round, right before its deliveries connect."""
        found: dict[str, list[IPAddress] | UnsafeURLError] = {}
        for url in {e["url"] for e in endpoints}:
            try:
                _, host, port = split_url(url)
                found[url] = await resolve_allowed(
                    host, port, self._networks, self._resolver, timeout=self.config.connect_timeout
                )
            except UnsafeURLError as exc:
                found[url] = exc
        return found

    async def _attempt(
        self,
        claim: _Claim,
        event: dict[str, Any] | None,
        endpoint: dict[str, Any] | None,
        addresses: dict[str, list[IPAddress] | UnsafeURLError],
    ) -> AttemptResult:
        now = self._clock()
        if endpoint is None or event is None:
            error = "endpoint deleted" if endpoint is None else "event gone"
            return AttemptResult(claim, "dead", now, 0.0, error=error, skipped=True)
        if not endpoint["enabled"]:
            return AttemptResult(claim, "dead", now, 0.0, error="endpoint disabled", skipped=True)
        started = time.perf_counter()
        checked = addresses[endpoint["url"]]
        if isinstance(checked, UnresolvableHostError):
            return self._retry_or_dead(claim, now, 0.0, error=str(checked))
        if isinstance(checked, UnsafeURLError):
            logger.warning("delivery %s refused at connect time: %s", claim.delivery_id, checked)
            return AttemptResult(claim, "refused", now, 0.0, error=str(checked))
        scheme, host, _ = split_url(endpoint["url"])
        body = event["payload"].encode("utf-8")
        original = httpx.URL(endpoint["url"])
        headers = signed_headers(active_secrets(endpoint["secrets"], now), claim.event_id, int(now), body)
        headers["user-agent"] = USER_AGENT
        # An uncompressed answer keeps the 16 KB excerpt a bounded read: no decompression of a hostile body.
        headers["accept-encoding"] = "identity"
        headers["host"] = original.netloc.decode("ascii")
        extensions = {"sni_hostname": host} if scheme == "https" else {}
        target = original.copy_with(host=str(checked[0]))
        try:
            async with asyncio.timeout(self.config.total_timeout):
                request = httpx.Request("POST", target, content=body, headers=headers, extensions=extensions)
                response = await self._sender().handle_async_request(request)
                try:
                    excerpt = await _read_excerpt(response)
                finally:
                    await response.aclose()
        except (TimeoutError, httpx.TimeoutException):
            return self._retry_or_dead(claim, now, time.perf_counter() - started, error="timeout")
        except (httpx.HTTPError, OSError) as exc:
            detail = f"connection error: {type(exc).__name__}: {exc}"[:500]
            return self._retry_or_dead(claim, now, time.perf_counter() - started, error=detail)
        duration = time.perf_counter() - started
        code = response.status_code
        if 200 <= code < 300:
            return AttemptResult(claim, "succeeded", now, duration, code, None, excerpt)
        if code == 410:
            return AttemptResult(
                claim, "failed", now, duration, code, "410 Gone: endpoint disabled", excerpt, gone=True
            )
        if code == 429 or code >= 500:
            retry_after = parse_retry_after(response.headers.get("retry-after"), now)
            return self._retry_or_dead(
                claim, now, duration, error=f"HTTP {code}", code=code, excerpt=excerpt, retry_after=retry_after
            )
        error = f"HTTP {code}: redirect not followed" if 300 <= code < 400 else f"HTTP {code}"
        return AttemptResult(claim, "failed", now, duration, code, error, excerpt)

    # ------------------------------------------------------------------ recording

    async def _record(self, results: list[AttemptResult]) -> None:
        for result in results:
            metrics.DELIVERIES_TOTAL.labels(outcome=result.outcome).inc()
            if result.duration_s > 0:
                metrics.DELIVERY_DURATION_SECONDS.observe(result.duration_s)
            if result.outcome == "succeeded":
                # The delivery row is written with its event, so this is the wait from event to receipt.
                lag = result.at + result.duration_s - result.claim.created_at
                metrics.EVENT_TO_DELIVERY_SECONDS.observe(max(0.0, lag))
            logger.debug("delivery %s attempt %d: %s", result.claim.delivery_id, result.claim.attempt, result.outcome)
        delay = 0.1
        for attempt in range(RECORD_RETRIES):
            try:
                async with self.db.transaction() as conn:
                    await self._write(conn, results)
                return
            except Exception as exc:  # lost connection, deadlock victim: the attempts happened, so keep trying
                if attempt == RECORD_RETRIES - 1:
                    logger.error("could not record %d attempts; their leases will expire: %s", len(results), exc)
                    return
                logger.warning("recording attempts failed (%s), retrying", type(exc).__name__)
                await self._sleep(delay)
                delay *= 2

    async def _write(self, conn: Connection, results: list[AttemptResult]) -> None:
        await conn.executemany(
            _RECORD,
            [
                (r.claim.delivery_id, r.claim.created_at, self.worker_id, r.status, r.next_attempt_at, r.at,
                 r.status_code, r.error, r.excerpt, r.at if r.outcome == "succeeded" else None)
                for r in results
            ],
        )  # fmt: skip
        await conn.executemany(
            _ATTEMPT,
            [
                (new_id("att"), r.claim.delivery_id, r.claim.event_id, r.claim.endpoint_id, r.claim.attempt,
                 r.outcome, r.status_code, r.error, r.excerpt, r.duration_s, self.worker_id, r.at)
                for r in results
            ],
        )  # fmt: skip
        now = max(r.at for r in results)
        alive = sorted({r.claim.endpoint_id for r in results if r.outcome == "succeeded"})
        failing = sorted(
            {r.claim.endpoint_id for r in results if r.outcome != "succeeded" and not r.skipped} - set(alive)
        )
        gone = sorted({r.claim.endpoint_id for r in results if r.gone})
        # Endpoint rows are touched in id order so two workers recording at once cannot deadlock on them.
        if alive:
            await conn.executemany(
                "UPDATE webhook_endpoints SET first_failure_at = NULL, last_success_at = $2 WHERE id = $1",
                [(endpoint_id, now) for endpoint_id in alive],
            )
        for endpoint_id in failing:
            row = await conn.fetchrow(
                "UPDATE webhook_endpoints SET first_failure_at = COALESCE(first_failure_at, $2), last_failure_at = $2 "
                "WHERE id = $1 RETURNING first_failure_at, enabled",
                endpoint_id,
                now,
            )
            if row is None or not row["enabled"]:
                continue
            if endpoint_id in gone:
                reason = "the endpoint answered 410 Gone"
            elif now - row["first_failure_at"] >= self.config.disable_after:
                reason = f"failing continuously for {now - row['first_failure_at']:.0f} s"
            else:
                continue
            if await disable_endpoint(
                conn, endpoint_id, reason, now=now, max_payload_bytes=self.config.max_payload_bytes
            ):
                metrics.ENDPOINTS_DISABLED_TOTAL.inc()
                logger.warning("endpoint %s disabled: %s", endpoint_id, reason)

    # ------------------------------------------------------------------ lifecycle

    def wake(self) -> None:
        """Start the next round now rather than when the next delivery falls due (new work was announced)."""
        self._wake.set()

    def stop(self) -> None:
        """Ask :meth:`run_forever` to return after the round in progress."""
        self._stop.set()
        self._wake.set()

    def stalled_for(self) -> float:
        """Seconds since the delivery loop that has gone longest without progress last made some (0 before start)."""
        if not self._progress:
            return 0.0
        return max(0.0, time.monotonic() - min(self._progress))

    async def _idle(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._wake.wait()

    async def _until_due(self) -> float:
        """Seconds until the next round could claim something, at most the safety interval."""
        due = await self.db.fetchval(_NEXT_DUE)
        if due is None:
            return self.config.idle_max_s
        return min(self.config.idle_max_s, max(float(due) - self._clock(), MIN_IDLE_S))

    def _listener(self) -> Coroutine[Any, Any, None] | None:
        if self.db.dialect == "postgresql":
            listen = functools.partial(wakeup.listen_postgres, self.db, self.wake)
            return wakeup.keep_listening(listen, "PostgreSQL LISTEN")
        if self.config.redis_url:
            listen = functools.partial(wakeup.listen_redis, self.config.redis_url, self.wake)
            return wakeup.keep_listening(listen, "Redis wake-up channel")
        return None

    async def run_forever(self) -> None:
        """Run rounds until :meth:`stop`; database outages are waited out with a growing pause.

        ``rounds_in_flight`` rounds run side by side, so one round's database writes overlap another's HTTP
        exchanges; their claims never overlap. Alongside them a listener turns notifications into wake-ups, and a
        heartbeat renews the leases of what is claimed and not yet recorded.
        """
        forget = wakeup.wake_in_process(self._wake)
        listening = self._listener()
        listener = None if listening is None else asyncio.create_task(listening, name="catalytic-webhook-listener")
        heartbeat = asyncio.create_task(self._heartbeat(), name="catalytic-webhook-leases")
        try:
            self._progress = [time.monotonic()] * self.config.rounds_in_flight
            await asyncio.gather(*(self._round_loop(index) for index in range(self.config.rounds_in_flight)))
        finally:
            heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await heartbeat
            forget()
            if listener is not None:
                listener.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await listener

    async def _round_loop(self, index: int = 0) -> None:
        backoff = self.config.poll_interval
        while not self._stop.is_set():
            self._progress[index] = time.monotonic()
            # Cleared before the claim: a wake-up that arrives during the round then starts another one.
            self._wake.clear()
            try:
                done = await self.run_once()
                pause = 0.0 if done >= self.config.batch_size else await self._until_due()
                backoff = self.config.poll_interval
                self.last_round_ok = True
            except Exception as exc:  # the database went away: keep the worker alive and try again
                self.last_round_ok = False
                logger.warning("webhook round failed (%s: %s); retrying in %.1f s", type(exc).__name__, exc, backoff)
                pause = backoff
                backoff = min(backoff * 2, MAX_IDLE_BACKOFF_S)
            self._progress[index] = time.monotonic()
            if pause > 0 and not self._stop.is_set():
                await self._idle(pause)

    async def aclose(self) -> None:
        """Close the connections of the worker's own transport (an injected one, like the database, is the caller's)."""
        transport, self._own_transport = self._own_transport, None
        if transport is not None:
            self._transport = None
            await transport.aclose()


async def run_worker(
    config: WebhookConfig | None = None,
    *,
    handle_signals: bool = True,
    health_address: tuple[str, int] | None = None,
) -> None:
    """Run a delivery worker until SIGTERM or SIGINT: the ``catalytic worker`` command.

    Parameters
    ----------
    config : WebhookConfig, optional
        Read from the environment (``DATABASE_URL``, ``WEBHOOK_*``) by default.
    handle_signals : bool
        Install SIGTERM/SIGINT handlers that stop the worker gracefully.
    health_address : (host, port), optional
        Serve ``/health``, ``/ready`` and ``/metrics`` there (:mod:`catalytic.webhooks.health`), from before the
        database is reached until the worker stops.

    Raises
    ------
    OSError
        When ``health_address`` cannot be bound.

    Examples
    --------
    >>> asyncio.run(run_worker())  # doctest: +SKIP
    """
    config = config or WebhookConfig()
    probes = None
    if health_address is not None:
        from catalytic.webhooks.health import HealthServer

        probes = await HealthServer.start(*health_address)
    try:
        await _run(config, handle_signals, probes)
    finally:
        if probes is not None:
            await probes.close()


async def _run(config: WebhookConfig, handle_signals: bool, probes: Any) -> None:
    if not is_postgres_url(config.database_url):
        # The embedded database has no separate migration step in a default run.
        await asyncio.to_thread(migrate, config.database_url, sqlite_path=config.sqlite_path)
    db = await _open_with_retry(config)
    worker = Worker(db, config)
    if probes is not None:
        probes.attach(worker)
    loop = asyncio.get_running_loop()
    if handle_signals:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, worker.stop)
    logger.info("webhook worker %s started", worker.worker_id)
    try:
        await worker.run_forever()
    finally:
        if handle_signals:
            for signum in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(signum)
        await worker.aclose()
        await db.close()
        logger.info("webhook worker %s stopped", worker.worker_id)


async def _open_with_retry(config: WebhookConfig) -> Database:
    pause = config.poll_interval
    while True:
        try:
            return await open_database(
                config.database_url, sqlite_path=config.sqlite_path, sqlite_synchronous=config.sqlite_synchronous
            )
        except OSError as exc:
            logger.warning("database not reachable (%s); retrying in %.1f s", exc, pause)
            await asyncio.sleep(pause)
            pause = min(pause * 2, MAX_IDLE_BACKOFF_S)
