"""Migrations under a rollout: several `catalytic migrate` processes at once on a fresh PostgreSQL database queue on
the advisory lock; exactly one session runs the DDL (seen by an event trigger), and every process succeeds."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

PROCESSES = 4
_RECORD_DDL = """
CREATE TABLE ddl_seen (pid integer NOT NULL, tag text NOT NULL);
CREATE FUNCTION record_ddl() RETURNS event_trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO ddl_seen VALUES (pg_backend_pid(), tg_tag);
END $$;
CREATE EVENT TRIGGER record_ddl ON ddl_command_end EXECUTE FUNCTION record_ddl();
"""


async def _sql(url: str, sql: str) -> list[tuple[int, str]]:
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        if sql.lstrip().upper().startswith("SELECT"):
            return [tuple(row) for row in await conn.fetch(sql)]
        await conn.execute(sql)
        return []
    finally:
        await conn.close()


def test_concurrent_migrators_apply_each_migration_once(pg_url: str, tmp_path: Path) -> None:
    asyncio.run(_sql(pg_url, _RECORD_DDL))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CATALYTIC_", "DATABASE_URL"))}
    env |= {"DATABASE_URL": pg_url, "LOG_LEVEL": "WARNING"}
    logs = [tmp_path / f"migrate-{i}.log" for i in range(PROCESSES)]
    processes = []
    for log in logs:
        with open(log, "wb") as sink:
            command = [sys.executable, "-m", "catalytic.cli", "migrate"]
            processes.append(subprocess.Popen(command, env=env, cwd=tmp_path, stdout=sink, stderr=subprocess.STDOUT))
    codes = [p.wait(timeout=120) for p in processes]
    assert codes == [0] * PROCESSES, [log.read_text(errors="replace") for log in logs]
    seen = asyncio.run(_sql(pg_url, "SELECT pid, tag FROM ddl_seen"))
    creates = [tag for _, tag in seen if tag == "CREATE TABLE"]
    assert creates, "no migration ran"
    assert len({pid for pid, _ in seen}) == 1, f"DDL from several sessions: {sorted({pid for pid, _ in seen})}"
    versions = asyncio.run(_sql(pg_url, "SELECT version_num, '' FROM alembic_version"))
    assert len(versions) == 1
