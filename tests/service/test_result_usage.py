"""The bytes of results a tenant holds (TENANT_MAX_RESULT_BYTES) are a running total on both databases: results
written and swept keep it equal to the sum over the rows, and migration 0007 fills it from the rows already there."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from alembic import command
from alembic.config import Config

from catalytic.service import db as queries
from catalytic.service.quotas import held_result_bytes
from catalytic.storage import Database, open_database
from catalytic.storage.migrate import MIGRATIONS, sqlalchemy_url

RECOMPUTED = (
    "SELECT COALESCE(SUM(LENGTH(body) + COALESCE(array_bytes, LENGTH(npy), 0)), 0) FROM service_results "
    "WHERE tenant = $1"
)


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'usage.db'}"
    return str(request.getfixturevalue("pg_url"))


def _upgrade(url: str, revision: str) -> None:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["catalytic_url"] = sqlalchemy_url(url if url.startswith("postgres") else None,
                                                        sqlite_path=url.removeprefix("sqlite:///"))  # fmt: skip
    command.upgrade(config, revision)


async def _running_job(db: Database, job_id: str, tenant: str) -> None:
    job = {"id": job_id, "operation": "path", "lattice_id": None, "spec": {}, "params": {}, "backend": "numba",
           "owner": "replica-1", "created_at": 1.0, "tenant": tenant}  # fmt: skip
    await queries.insert_job(db, job)
    await db.execute("UPDATE service_jobs SET status = 'running' WHERE id = $1", job_id)


async def _recomputed(db: Database, tenant: str) -> int:
    return int(await db.fetchval(RECOMPUTED, tenant))


def test_writes_and_sweeps_keep_the_total(database_url: str) -> None:
    async def run() -> None:
        db = await open_database(database_url)
        try:
            array = {"npy": b"\x93NUMPY" + bytes(100), "sha256": "0" * 64, "nbytes": 106}
            results = [("job_a", "acme", {"path": [[0, 0], [0, 1]]}, None), ("job_b", "acme", {"é": "ü"}, array),
                       ("job_c", "globex", {"length": 7}, None)]  # fmt: skip
            for job_id, tenant, body, npy in results:
                await _running_job(db, job_id, tenant)
                async with db.transaction() as conn:
                    assert await queries.finish_job(conn, job_id, "succeeded", 2.0, body=body, array=npy)
            for tenant in ("acme", "globex"):
                assert await held_result_bytes(db, tenant) == await _recomputed(db, tenant) > 0
            assert await held_result_bytes(db, "acme") > 106 and await held_result_bytes(db, "nobody") == 0
            async with db.transaction() as conn:
                await queries.delete_results(conn, ["job_b", "job_missing"])
            assert await held_result_bytes(db, "acme") == await _recomputed(db, "acme") > 0
            async with db.transaction() as conn:
                await queries.delete_results(conn, ["job_a", "job_c"])
            assert (await held_result_bytes(db, "acme"), await held_result_bytes(db, "globex")) == (0, 0)
        finally:
            await db.close()

    _upgrade(database_url, "head")  # alembic runs an event loop of its own
    asyncio.run(run())


def test_the_migration_fills_the_totals_from_the_rows_there(database_url: str) -> None:
    async def fill() -> dict[str, int]:
        db = await open_database(database_url)
        try:
            for n, tenant in enumerate(("acme", "acme", "globex")):
                await _running_job(db, f"job_{n}", tenant)
                await db.execute(
                    "INSERT INTO service_results (job_id, body, npy, created_at, array_bytes, tenant) "
                    "VALUES ($1, $2, $3, 1.0, $4, $5)",
                    f"job_{n}", '{"n": ' + str(n) * (n + 1) + "}", b"x" * 10 * n if n else None, None, tenant,
                )  # fmt: skip
            return {tenant: await _recomputed(db, tenant) for tenant in ("acme", "globex")}
        finally:
            await db.close()

    async def totals() -> dict[str, int]:
        db = await open_database(database_url)
        try:
            return {tenant: await held_result_bytes(db, tenant) for tenant in ("acme", "globex")}
        finally:
            await db.close()

    _upgrade(database_url, "0006_job_capability")
    before = asyncio.run(fill())
    _upgrade(database_url, "head")
    assert asyncio.run(totals()) == before and before["acme"] > 0 and before["globex"] > 0
