"""Idempotent submissions: the ``Idempotency-Key`` header on the routes that create something.

``POST /api/lattice/create``, ``POST /api/jobs`` and the computations that become jobs when large (path,
analyze, components, distance field) take an optional ``Idempotency-Key``. The first request with a key
claims it, per tenant, in the database (``service_idempotency``), so every replica sees the claim; its
success is recorded (status, body, ``Location``) and answered again, with ``Idempotent-Replayed: true``, to
every later request of the tenant with the same key, the same route and the same body, for
``CATALYTIC_IDEMPOTENCY_TTL_S`` (24 hours by default). The rules (docs/api.md):

* The same key with another body, or on another route, is refused: 422 ``idempotency_key_reused``.
* A request whose key is still being answered elsewhere waits for that answer, polling the record, for up to
  the request time limit (``CATALYTIC_REQUEST_TIMEOUT_S``); past it: 409 ``idempotency_key_in_flight`` with
  ``Retry-After``.
* Only a success (2xx) is recorded. An error answer (4xx or 5xx) or an exception removes the claim, so the
  request can be sent again with the same key and runs anew: the errors of these routes are either transient
  (quotas, a full queue, an outage) or depend only on the body, which a retry with the same key repeats anyway.
* A claim still in flight after ``IDEMPOTENCY_ABANDONED_S`` (its server process died) is taken over. A record
  older than the TTL is forgotten when its key comes again, and swept by :class:`KeySweeper`.

A bad header (empty, longer than 255 characters, or other than printable ASCII, or sent twice) answers 422
naming ``Idempotency-Key``.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import logging
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import anyio
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Message, Receive

from catalytic.service import defaults
from catalytic.service.errors import Conflict, ServiceError
from catalytic.service.metrics import IDEMPOTENT_REPLAYS
from catalytic.service.periodic import Periodic
from catalytic.service.state import read_body, service
from catalytic.storage import Connection, Database
from catalytic.tenancy import tenant_of

__all__ = [
    "HEADER",
    "HEADER_PARAMETER",
    "Claim",
    "KeyInFlight",
    "KeyReused",
    "KeySweeper",
    "Recorded",
    "accepts_idempotency_key",
    "checked_key",
    "claim",
    "idempotent",
    "record",
    "release",
    "request_digest",
    "sweep",
]

log = logging.getLogger("catalytic.service")

HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
MAX_KEY_LENGTH = 255
ALLOWED = f"1 to {MAX_KEY_LENGTH} printable ASCII characters (space to '~'), sent once"
_KEY = re.compile(rf"[\x20-\x7e]{{1,{MAX_KEY_LENGTH}}}")
_POLL_FIRST_S = 0.02
_POLL_MAX_S = 0.25
_MARK = "accepts_idempotency_key"

HEADER_PARAMETER: dict[str, Any] = {
    "name": HEADER,
    "in": "header",
    "required": False,
    "schema": {"type": "string", "minLength": 1, "maxLength": MAX_KEY_LENGTH, "pattern": "^[\\x20-\\x7e]+$"},
    "description": "A key of the client's choosing that makes the request safe to repeat: for 24 hours "
    "(CATALYTIC_IDEMPOTENCY_TTL_S) the tenant's next requests with this key and the same body get the first "
    "success again (same status, body and Location, and the same job), with `Idempotent-Replayed: true`. "
    "The same key with another body answers 422; while the first request is still being answered, a repeat "
    "waits for its answer, up to the request time limit, then answers 409 with Retry-After. Error answers "
    "are not recorded: the key can be sent again.",
}

Endpoint = Callable[[Request], Awaitable[Response]]


class KeyReused(ServiceError):
    """An ``Idempotency-Key`` sent again with another body or to another route."""

    code = "idempotency_key_reused"


class KeyInFlight(Conflict):
    """The first request with this ``Idempotency-Key`` is still being answered (past the wait)."""

    code = "idempotency_key_in_flight"


@dataclass(frozen=True)
class Claim:
    """A key this request holds while it is answered; ``created_at`` tells this claim from a later one."""

    tenant: str
    key: str
    created_at: float


@dataclass(frozen=True)
class Recorded:
    """The answer recorded under a key."""

    status: int
    body: bytes
    location: str | None

    def response(self) -> Response:
        """The recorded answer, marked as a replay."""
        headers = {REPLAYED_HEADER: "true"}
        if self.location is not None:
            headers["Location"] = self.location
        return Response(self.body, status_code=self.status, media_type="application/json", headers=headers)


_CLAIM = """
INSERT INTO service_idempotency (tenant, key, route, request_sha256, status, body, location, created_at)
VALUES ($1, $2, $3, $4, NULL, NULL, NULL, $5)
ON CONFLICT (tenant, key) DO NOTHING
"""
_READ = """
SELECT route, request_sha256, status, body, location, created_at FROM service_idempotency
WHERE tenant = $1 AND key = $2
"""
_FORGET = "DELETE FROM service_idempotency WHERE tenant = $1 AND key = $2 AND created_at = $3"
_RECORD = """
UPDATE service_idempotency SET status = $4, body = $5, location = $6
WHERE tenant = $1 AND key = $2 AND created_at = $3 AND status IS NULL
"""
_RELEASE = _FORGET + " AND status IS NULL"
_SWEEP = "DELETE FROM service_idempotency WHERE created_at < $1"


def checked_key(values: list[str]) -> str:
    """The key of the ``Idempotency-Key`` header values sent.

    Raises
    ------
    ServiceError
        422 naming the header and its allowed form: not exactly one value, or one that is empty, too long or
        not printable ASCII.

    Examples
    --------
    >>> checked_key(["order-42"])
    'order-42'
    """
    if len(values) != 1 or _KEY.fullmatch(values[0]) is None:
        problem = "sent more than once" if len(values) > 1 else _what_is_wrong(values[0])
        raise ServiceError(
            f"the {HEADER} header is {problem}",
            fields=[{"field": HEADER, "message": problem, "allowed": ALLOWED}],
        )
    return values[0]


def _what_is_wrong(value: str) -> str:
    if not value:
        return "empty"
    if len(value) > MAX_KEY_LENGTH:
        return f"{len(value)} characters long"
    return "not printable ASCII"


def request_digest(route: str, body: bytes) -> str:
    """SHA-256 (hex) of a request's route and its body as sent: what a repeated key must match.

    Examples
    --------
    >>> request_digest("/api/jobs", b"{}") == request_digest("/api/jobs", b"{}") != request_digest("/api/jobs", b"[]")
    True
    """
    return hashlib.sha256(route.encode() + b"\n" + body).hexdigest()


async def claim(
    db: Database,
    tenant: str,
    key: str,
    route: str,
    digest: str,
    *,
    ttl_s: float,
    wait_s: float,
    retry_after_s: int,
    clock: Callable[[], float] = time.time,
) -> Claim | Recorded:
    """Claim ``key`` for ``tenant``, or find the answer recorded under it, waiting while it is in flight.

    Parameters
    ----------
    db : catalytic.storage.Database
    tenant, key : str
    route : str
        The path of the request (only for the message of a key reused on another route).
    digest : str
        :func:`request_digest` of the request.
    ttl_s : float
        Age past which a record is forgotten and its key claimed anew.
    wait_s : float
        How long to wait for a claim in flight before answering 409.
    retry_after_s : int
        The Retry-After of that 409.
    clock : callable
        Epoch seconds.

    Returns
    -------
    Claim or Recorded
        The claim this request now holds (answer, then :func:`record` or :func:`release` it), or the answer
        to replay.

    Raises
    ------
    KeyReused
        The key was used with another body or on another route (422).
    KeyInFlight
        The first request with the key was still being answered after ``wait_s`` (409 with Retry-After).
    """
    deadline = time.monotonic() + wait_s
    pause = _POLL_FIRST_S
    while True:
        now = clock()
        if (await db.execute(_CLAIM, tenant, key, route, digest, now)).endswith(" 1"):
            return Claim(tenant, key, now)
        row = await db.fetchrow(_READ, tenant, key)
        if row is None:
            continue  # released between the two statements: claim it again
        age = now - row["created_at"]
        if age > ttl_s or (row["status"] is None and age > defaults.IDEMPOTENCY_ABANDONED_S):
            # Expired, or a claim whose server process died: forget exactly that record, then claim again.
            await db.execute(_FORGET, tenant, key, row["created_at"])
            continue
        if row["request_sha256"] != digest:
            where = "with another body" if row["route"] == route else f"on {row['route']}"
            raise KeyReused(
                f"the {HEADER} {key!r} was used {where}; a key stands for one request of this tenant "
                f"(send a new key for a new request)",
                fields=[{"field": HEADER, "message": f"already used {where}", "allowed": "a new key"}],
            )
        if row["status"] is not None:
            return Recorded(int(row["status"]), str(row["body"]).encode(), row["location"])
        left = deadline - time.monotonic()
        if left <= 0:
            raise KeyInFlight(
                f"the first request with {HEADER} {key!r} is still being answered; send it again after the delay "
                "given to get its answer",
                headers={"Retry-After": str(retry_after_s)},
            )
        await asyncio.sleep(min(pause, left))
        pause = min(pause * 2, _POLL_MAX_S)


async def record(db: Database | Connection, held: Claim, status: int, body: bytes, location: str | None) -> None:
    """Record the answer of the request holding ``held``."""
    await db.execute(_RECORD, held.tenant, held.key, held.created_at, status, body.decode(), location)


async def release(db: Database | Connection, held: Claim) -> None:
    """Give up ``held`` without an answer: the key can be claimed again at once."""
    await db.execute(_RELEASE, held.tenant, held.key, held.created_at)


async def sweep(db: Database | Connection, older_than: float) -> int:
    """Delete the records made before ``older_than`` (epoch s); how many went."""
    status = await db.execute(_SWEEP, older_than)
    return int(status.rsplit(" ", 1)[-1])


def _replaying(body: bytes, receive: Receive) -> Receive:
    """A receive channel that hands over ``body`` (already read) first, then the connection's own."""
    pending = True

    async def replay() -> Message:
        nonlocal pending
        if pending:
            pending = False
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


def idempotent(endpoint: Endpoint) -> Endpoint:
    """The route ``endpoint`` with the ``Idempotency-Key`` header honoured (see the module's docstring).

    Without the header the request goes to ``endpoint`` as it is.
    """

    @functools.wraps(endpoint)
    async def answer(request: Request) -> Response:
        values = request.headers.getlist(HEADER)
        if not values:
            return await endpoint(request)
        key = checked_key(values)
        st = service(request)
        body = await read_body(request)
        route = request.url.path
        outcome = await claim(
            st.db,
            tenant_of(request.scope),
            key,
            route,
            request_digest(route, body),
            ttl_s=st.settings.idempotency_ttl_s,
            wait_s=st.settings.request_timeout_s,
            retry_after_s=st.settings.retry_after_s,
        )
        if isinstance(outcome, Recorded):
            IDEMPOTENT_REPLAYS.labels(route).inc()
            return outcome.response()
        try:
            response = await endpoint(Request(request.scope, _replaying(body, request.receive)))
        except BaseException:
            await _give_up(st.db, outcome)
            raise
        content = getattr(response, "body", None)
        if 200 <= response.status_code < 300 and isinstance(content, bytes):
            try:
                await record(st.db, outcome, response.status_code, content, response.headers.get("location"))
            except Exception:  # the work is done: answer it; the claim is taken over once abandoned
                log.exception("recording the answer under an %s failed", HEADER)
        else:
            await _give_up(st.db, outcome)
        return response

    setattr(answer, _MARK, True)
    return answer


async def _give_up(db: Database, held: Claim) -> None:
    # Shielded: a request cancelled (its client gone) must still hand its key back.
    with anyio.CancelScope(shield=True):
        try:
            await release(db, held)
        except Exception:
            log.exception("releasing an %s failed; it is taken over once abandoned", HEADER)


def accepts_idempotency_key(endpoint: Callable[..., Any]) -> bool:
    """Whether ``endpoint`` was made :func:`idempotent`."""
    return bool(getattr(endpoint, _MARK, False))


class KeySweeper(Periodic):
    """Every ``interval_s`` (at most the TTL): delete the records older than the TTL.

    Parameters
    ----------
    db : catalytic.storage.Database
    ttl_s : float
        CATALYTIC_IDEMPOTENCY_TTL_S.
    interval_s : float
        Seconds between passes; the first pass runs at start.
    clock : callable
        Epoch seconds; tests inject their own.
    """

    def __init__(
        self,
        db: Database,
        ttl_s: float,
        interval_s: float = defaults.IDEMPOTENCY_SWEEP_S,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.db = db
        self.ttl_s = ttl_s
        self.interval_s = min(interval_s, ttl_s)
        self.clock = clock

    task_name = "catalytic-idempotency-sweeper"
    failure = f"sweeping {HEADER} records failed"

    async def sweep_once(self) -> int:
        """One pass; the number of records deleted."""
        return await sweep(self.db, self.clock() - self.ttl_s)

    async def run_once(self) -> int:
        return await self.sweep_once()
