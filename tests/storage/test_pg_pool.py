"""PostgreSQL pool connections go back to the pool without asyncpg's reset statement, which is safe only while
no code leaves session state on them: checked here against the server and against the source."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import asyncpg
import pytest

from catalytic.storage import open_database

PACKAGE = Path(__file__).resolve().parents[2] / "catalytic"
SESSION_STATE = re.compile(
    r"pg_advisory_(?:try_)?lock(?:_shared)?\s*\(|[\"';]\s*SET\s+(?!LOCAL\b)(?:SESSION\s+)?[a-z_.]+\s*(?:=|\bTO\b)|"
    r"[\"';]\s*LISTEN\s+\w|\bDECLARE\s+\w+\s+(?:\w+\s+)*CURSOR\s+WITH\s+HOLD|set_config\([^)]*,\s*false\)",
    re.IGNORECASE,
)
DEDICATED = {"catalytic/webhooks/wakeup.py", "catalytic/storage/migrations/env.py"}
"""Modules whose statements run on connections of their own, never on the pool's."""


def test_no_pooled_statement_leaves_session_state() -> None:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = str(path.relative_to(PACKAGE.parent))
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if SESSION_STATE.search(line) and relative not in DEDICATED and not line.lstrip().startswith("#"):
                found.append(f"{relative}:{number}: {line.strip()}")
    assert found == [], "session state on pooled connections needs the pool's reset back:\n" + "\n".join(found)


def test_the_guard_sees_session_state() -> None:
    for statement in ("SELECT pg_advisory_lock($1)", "SET search_path TO x", "SET SESSION statement_timeout = 5",
                      "LISTEN jobs", "SELECT set_config('a.b', 'c', false)"):  # fmt: skip
        assert SESSION_STATE.search(f'"{statement}"'), statement
    for statement in ("SELECT pg_advisory_xact_lock($1)", "SET LOCAL statement_timeout = 5",
                      "UPDATE t SET status = $2", "SELECT set_config('a.b', 'c', true)"):  # fmt: skip
        assert not SESSION_STATE.search(f'"{statement}"'), statement


@pytest.mark.postgres
def test_released_connections_skip_the_reset_yet_abandoned_transactions_roll_back(pg_url: str) -> None:
    async def run() -> None:
        db = await open_database(pg_url, min_size=1, max_size=1)
        watcher = await asyncpg.connect(pg_url)
        try:
            await db.execute("CREATE TABLE notes (id int)")
            backend = await db.fetchval("SELECT pg_backend_pid()")
            await db.fetchval("SELECT 1")
            last = await watcher.fetchval("SELECT query FROM pg_stat_activity WHERE pid = $1", backend)
            assert last == "SELECT 1", last  # the reset statement would be the last one otherwise
            pool = db._pool  # a caller that leaves a transaction open (not through Database.transaction)
            async with pool.acquire() as conn:
                await conn.execute("BEGIN")
                await conn.execute("INSERT INTO notes VALUES (1)")
            assert await db.fetchval("SELECT count(*) FROM notes") == 0
            async with db.transaction() as conn:
                await conn.execute("SELECT pg_advisory_xact_lock(7)")
            assert await watcher.fetchval("SELECT pg_try_advisory_xact_lock(7)")  # released at the commit
        finally:
            await watcher.close()
            await db.close()

    asyncio.run(run())
