"""The restore procedure of k8s/README.md, run for real.

The service fills a PostgreSQL database (lattices, jobs whose array result is kept in the database, one whose
result went to the results store, a cancelled job); the backup CronJob's own ``pg_dump`` command dumps it and
the results directory is copied after the dump; then the README's restore block, run as written, restores into
a fresh database and copies the results back; a service started on the restored database (migrations off, as in
the manifests) serves the same lattices, job statuses and byte-identical job results.

The only differences from the manifests: the dump directory (``/backup`` there) and the connection URLs.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
import pytest
import yaml
from servers import PostgresServer, _pg_bin

from catalytic.service.app import create_app
from catalytic.service.settings import Settings

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "k8s" / "README.md"
PG_DUMP_JOB = ROOT / "k8s" / "components" / "postgres-backup" / "pg-dump.yaml"
RESTORE_MARK = "<!-- restore-procedure: tests/deploy/test_restore.py runs this block as written -->"

THRESHOLD = 4096
OBSTACLES = [{"kind": "random", "p": 0.2, "seed": 1}]
SMALL_FIELD = {"lattice": {"shape": [8, 9], "obstacles": OBSTACLES}, "sources": [[0, 0], [7, 8]]}
LARGE_FIELD = {"lattice": {"shape": [64, 80]}, "sources": [[3, 5]]}  # 20,480 bytes of int32: the store
SLOW_PATH = {"lattice": {"shape": [40, 40, 40]}, "start": [0, 0, 0], "goal": [39, 39, 39]}


def backup_command(dump_dir: Path) -> str:
    """The pg_dump CronJob's shell script, writing to ``dump_dir`` instead of its volume ``/backup``."""
    job = yaml.safe_load(PG_DUMP_JOB.read_text(encoding="utf-8").split("\n---\n")[0])
    (container,) = job["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"]
    shell, flags, script = container["command"]
    assert (shell, flags) == ("/bin/sh", "-ec") and "/backup/" in script
    return str(script).replace("/backup/", f"{dump_dir}/")


def restore_procedure() -> str:
    """The bash block that follows the restore marker in k8s/README.md."""
    text = README.read_text(encoding="utf-8")
    assert RESTORE_MARK in text, f"{README} lost its restore marker"
    found = re.search(r"```bash\n(.*?)```", text[text.index(RESTORE_MARK) :], re.DOTALL)
    assert found is not None, "no bash block after the restore marker"
    return found.group(1)


def run_shell(script: str, env: dict[str, str]) -> float:
    """Run ``script`` with bash (errexit, nounset, pipefail); its wall time in seconds."""
    started = time.perf_counter()
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script], env=env, capture_output=True, text=True, timeout=300, check=False
    )
    elapsed = time.perf_counter() - started
    assert done.returncode == 0, f"exit {done.returncode}\n{script}\n{done.stdout}\n{done.stderr}"
    return elapsed


def shell_env(**extra: str) -> dict[str, str]:
    """This environment with PostgreSQL's client programs and this virtualenv's ``catalytic`` first on PATH."""
    path = os.pathsep.join([str(Path(_pg_bin("pg_dump")).parent), str(Path(sys.executable).parent)])
    env = {key: value for key, value in os.environ.items() if key not in ("DATABASE_URL", "RESULTS_DIR")}
    env["PATH"] = path + os.pathsep + env.get("PATH", "")
    env.update(extra)
    return env


def with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + name, parts.query, parts.fragment))


async def admin(url: str, sql: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@contextmanager
def fresh_database(server: PostgresServer) -> Iterator[str]:
    """An empty database of its own on the session's server, dropped afterwards."""
    name = f"restore_{uuid.uuid4().hex[:16]}"
    asyncio.run(admin(server.url, f'CREATE DATABASE "{name}"'))
    try:
        yield with_database(server.url, name)
    finally:
        asyncio.run(admin(server.url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def settings(database_url: str, results_dir: Path, *, migrate: bool) -> Settings:
    values: dict[str, Any] = {
        "DATABASE_URL": database_url,
        "RESULTS_DIR": str(results_dir),
        "RESULT_DB_MAX_BYTES": THRESHOLD,
        "CATALYTIC_MIGRATE_ON_START": migrate,
        "CATALYTIC_COMPUTE_POOL": "thread",
        "CATALYTIC_INLINE_MAX_VERTICES": 10_000,
        "CATALYTIC_WEBHOOK_WORKER": False,
        "PARALLEL_CORES": 1,
        "METRICS_PORT": 0,
        "LOG_LEVEL": "WARNING",
    }
    return Settings(**values)


@asynccontextmanager
async def serving(config: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """The service in process (its whole lifespan) and a client bound to it."""
    app = create_app(config)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
            yield client


async def ended(client: httpx.AsyncClient, location: str) -> dict[str, Any]:
    for _ in range(1200):
        job: dict[str, Any] = (await client.get(location)).json()
        if job["status"] in ("succeeded", "failed", "cancelled"):
            return job
        await asyncio.sleep(0.05)
    raise AssertionError(f"job {location} never ended: {job}")


async def submit(client: httpx.AsyncClient, path: str, body: dict[str, Any]) -> str:
    response = await client.post(path, json=body)
    assert response.status_code == 202, response.text
    return str(response.headers["location"])


async def served(client: httpx.AsyncClient, lattice_ids: list[str], job_ids: list[str]) -> dict[str, Any]:
    """Everything the service answers about the given lattices and jobs, array results as .npy bytes."""
    listed = (await client.get("/api/lattices", params={"limit": 100})).json()
    view: dict[str, Any] = {"listed": sorted(item["id"] for item in listed["items"]), "lattices": {}, "jobs": {}}
    for lattice_id in lattice_ids:
        got = await client.get(f"/api/lattice/{lattice_id}")
        assert got.status_code == 200, got.text
        view["lattices"][lattice_id] = got.json()
    for job_id in job_ids:
        job = (await client.get(f"/api/jobs/{job_id}")).json()
        entry: dict[str, Any] = {key: job.get(key) for key in ("status", "operation", "error", "timings")}
        if job["status"] == "succeeded":
            result = (await client.get(f"/api/jobs/{job_id}/result")).json()
            entry["result"] = result
            if result["array_url"] is not None:
                download = await client.get(result["array_url"])
                assert download.status_code == 200, download.text
                entry["npy"] = download.content
        view["jobs"][job_id] = entry
    return view


async def fill(client: httpx.AsyncClient) -> tuple[list[str], list[str]]:
    """Lattices and jobs of every kind the restore must bring back; their ids."""
    lattices = []
    for body in ({"shape": [6, 7, 5], "periodic": [True, False, True], "obstacles": OBSTACLES}, {"shape": [8, 9]}):
        created = await client.post("/api/lattice/create", json=body)
        assert created.status_code == 201, created.text
        lattices.append(created.json()["id"])
    small = await ended(client, await submit(client, "/api/lattice/distance-field", SMALL_FIELD))
    large = await ended(client, await submit(client, "/api/lattice/distance-field", LARGE_FIELD))
    by_id = await ended(
        client,
        await submit(client, "/api/lattice/distance-field", {"lattice_id": lattices[1], "sources": [[4, 4]]}),
    )
    assert [small["status"], large["status"], by_id["status"]] == ["succeeded"] * 3, (small, large, by_id)
    slow = await submit(client, "/api/lattice/path", SLOW_PATH)
    cancelled = await client.delete(slow)
    assert cancelled.status_code == 200, cancelled.text
    jobs = [small["id"], large["id"], by_id["id"], slow.rsplit("/", 1)[1]]
    return lattices, jobs


def test_a_dump_restored_into_a_fresh_database_serves_the_same_lattices_and_results(
    pg_url: str, postgres_server: PostgresServer, tmp_path: Path
) -> None:
    results_dir, dumps, results_copy = tmp_path / "results", tmp_path / "backup", tmp_path / "results-copy"
    dumps.mkdir()

    async def before() -> tuple[list[str], list[str], dict[str, Any]]:
        async with serving(settings(pg_url, results_dir, migrate=True)) as client:
            lattices, jobs = await fill(client)
            return lattices, jobs, await served(client, lattices, jobs)

    lattices, jobs, original = asyncio.run(before())
    stores = {job["result"]["array"]["stored_in"] for job in original["jobs"].values() if "npy" in job}
    assert stores == {"database", "results_store"}, original["jobs"]
    assert original["jobs"][jobs[3]]["status"] == "cancelled"
    assert len(list(results_dir.glob("*.npy"))) == 1

    # The backup: the CronJob's command, then the results directory copied after the dump.
    dump_s = run_shell(backup_command(dumps), shell_env(DATABASE_URL=pg_url))
    (dump,) = dumps.glob("catalytic-*.dump")
    shutil.copytree(results_dir, results_copy)
    shutil.rmtree(results_dir)

    restored_dir = tmp_path / "restored-results"
    with fresh_database(postgres_server) as restore_url:
        env = shell_env(DUMP=str(dump), RESTORE_URL=restore_url, RESULTS_COPY=str(results_copy))
        env["RESULTS_DIR"] = str(restored_dir)
        restore_s = run_shell(restore_procedure(), env)

        async def after() -> dict[str, Any]:
            async with serving(settings(restore_url, restored_dir, migrate=False)) as client:
                return await served(client, lattices, jobs)

        restored = asyncio.run(after())
    assert restored == original
    print(
        f"dump {dump.stat().st_size} bytes in {dump_s:.2f} s; restore (README block: pg_restore, results copy, "
        f"catalytic migrate) {restore_s:.2f} s; {len(lattices)} lattices and {len(jobs)} jobs served identically"
    )
