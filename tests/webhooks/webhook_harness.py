"""Shared pieces of the webhook tests: a fake clock, a migrated database, a local receiver."""

from __future__ import annotations

import asyncio
import shutil
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from catalytic.storage import Database, migrate, open_database
from catalytic.webhooks.config import WebhookConfig
from catalytic.webhooks.receiver import LocalReceiver, Reply, Responder
from catalytic.webhooks.store import create_endpoint, emit

LOCAL = "127.0.0.1/32"


class _Template:
    """A migrated SQLite file made once per test session (set by conftest), copied for each test."""

    path: Path | None = None


class FakeClock:
    """Epoch seconds that move only when told to (starting near real time, so signatures stay fresh)."""

    def __init__(self, start: float | None = None) -> None:
        self.now = time.time() if start is None else start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


async def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    """Check ``condition`` every 10 ms until it holds; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        await asyncio.sleep(0.01)


def script(*replies: Reply) -> Callable[[Any], Reply]:
    """A responder answering with ``replies`` in order, then repeating the last one."""
    queue = list(replies)

    def respond(request: Any) -> Reply:
        return queue.pop(0) if len(queue) > 1 else queue[0]

    return respond


def config(**overrides: Any) -> WebhookConfig:
    values: dict[str, Any] = {"allow_cidrs": LOCAL, "retry_jitter": 0.0}
    values.update(overrides)
    return WebhookConfig(**values)


@dataclass
class Env:
    db: Database
    receiver: LocalReceiver
    clock: FakeClock

    async def endpoint(
        self, path: str = "/hook", event_types: Sequence[str] = (), url: str | None = None
    ) -> tuple[str, str]:
        async with self.db.transaction() as conn:
            view, secret = await create_endpoint(
                conn, url or self.receiver.url + path, event_types, "test", now=self.clock()
            )
        return view["id"], secret

    async def emit(self, event_type: str = "job.succeeded", data: dict[str, Any] | None = None) -> str:
        async with self.db.transaction() as conn:
            return await emit(conn, event_type, data or {"job_id": "j"}, now=self.clock())

    async def delivery(self, event_id: str) -> dict[str, Any]:
        row = await self.db.fetchrow("SELECT * FROM deliveries WHERE event_id = $1", event_id)
        assert row is not None
        return row


@asynccontextmanager
async def sqlite_env(tmp_path: Path, respond: Responder | None = None) -> AsyncIterator[Env]:
    path = str(tmp_path / "webhooks.db")
    if _Template.path is None:
        migrate(None, sqlite_path=path)
    else:
        shutil.copyfile(_Template.path, path)
    db = await open_database(None, sqlite_path=path)
    receiver = LocalReceiver(respond) if respond is not None else LocalReceiver()
    await receiver.start()
    try:
        yield Env(db, receiver, FakeClock())
    finally:
        await receiver.close()
        await db.close()
