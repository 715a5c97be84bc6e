"""Two real service processes (uvicorn, via ``catalytic serve``) sharing one PostgreSQL and one Redis."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from servers import free_port, start_redis, stop_process

from catalytic.storage import migrate

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.slow]

KEY = "replica-test-key"
SLOW_JOB = {
    "operation": "shortest_path",
    "lattice": {"shape": [100, 100, 100]},
    "params": {"start": [0, 0, 0], "goal": [99, 99, 99], "method": "dijkstra"},
    "backend": "numpy",
}


class Replica:
    """``catalytic serve`` in a subprocess on a free loopback port; stopped by its process id."""

    def __init__(self, env: dict[str, str], log: Path, workers: int = 1) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        command = [sys.executable, "-m", "catalytic.cli", "serve", "--host", "127.0.0.1", "--port", str(self.port)]
        command += ["--workers", str(workers)]
        self._log = open(log, "wb")  # noqa: SIM115 - kept open for the child's lifetime, closed in stop()
        self.process = subprocess.Popen(command, env=env, stdout=self._log, stderr=subprocess.STDOUT)
        self.log_path = log

    def wait_ready(self, timeout: float = 300.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process.poll() is None, self.log_path.read_text(errors="replace")
            try:
                if httpx.get(f"{self.url}/ready", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise AssertionError(f"replica on {self.port} never became ready:\n{self.log_path.read_text(errors='replace')}")

    def stop(self) -> None:
        stop_process(self.process)
        self._log.close()


@pytest.fixture
def replicas(pg_url: str, tmp_path: Path) -> Iterator[tuple[Replica, Replica, Any, int]]:
    redis = start_redis(tmp_path / "redis")
    metrics_port = free_port()
    base = {k: v for k, v in os.environ.items() if not k.startswith(("CATALYTIC_", "PROMETHEUS_"))}
    base |= {
        "DATABASE_URL": pg_url,
        "REDIS_URL": redis.url,
        "CATALYTIC_API_KEYS": KEY,
        "LOG_LEVEL": "WARNING",
        "PARALLEL_CORES": "1",
        "CATALYTIC_MAX_QUEUED_JOBS": "4",
    }
    migrate(pg_url)
    first = Replica({**base, "METRICS_PORT": str(metrics_port)}, tmp_path / "a.log", workers=2)
    second = Replica({**base, "METRICS_PORT": "0"}, tmp_path / "b.log")
    try:
        first.wait_ready()
        second.wait_ready()
        yield first, second, redis, metrics_port
    finally:
        first.stop()
        second.stop()
        redis.close()


def wait_status(client: httpx.Client, location: str, wanted: set[str], timeout: float = 120.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = client.get(location).json()
        if status["status"] in wanted:
            return status
        time.sleep(0.1)
    raise AssertionError(f"{location} never reached {wanted}: {status}")


def scrape(port: int) -> dict[str, list[Any]]:
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    return {family.name: family.samples for family in text_string_to_metric_families(text)}


def test_replicas_share_state_never_serve_deleted_ids_and_survive_redis_loss(replicas: Any) -> None:
    first, second, redis, metrics_port = replicas
    headers = {"Authorization": f"Bearer {KEY}"}
    with (
        httpx.Client(base_url=first.url, headers=headers, timeout=60) as a,
        httpx.Client(base_url=second.url, headers=headers, timeout=60) as b,
    ):
        assert httpx.get(f"{first.url}/api/lattices", timeout=10).status_code == 401
        created = a.post("/api/lattice/create", json={"shape": [12, 12, 12], "periodic": [True, False, False]})
        assert created.status_code == 201, created.text
        lattice_id = created.json()["id"]
        assert b.get(f"/api/lattice/{lattice_id}").json()["vertices"] == 12**3
        path = {"lattice_id": lattice_id, "start": [0, 0, 0], "goal": [11, 11, 11]}
        on_b = b.post("/api/lattice/path", json=path).json()
        assert on_b["found"] is True and on_b["length"] == 1 + 11 + 11
        on_a = a.post("/api/lattice/path", json=path).json()
        assert on_a["cached"] is True and on_a["path"] == on_b["path"]

        # b now holds the lattice and the answer in its L1; a DELETE through a must end both there at once.
        assert a.delete(f"/api/lattice/{lattice_id}").status_code == 200
        assert b.post("/api/lattice/path", json=path).status_code == 404
        assert b.get(f"/api/lattice/{lattice_id}").status_code == 404
        assert b.post("/api/lattice/analyze", json={"lattice_id": lattice_id}).status_code == 404

        submitted = a.post("/api/jobs", json=SLOW_JOB)
        assert submitted.status_code == 202
        location = submitted.headers["location"]
        running = wait_status(b, location, {"running"})
        assert running["progress"] >= 0.05
        cancelled = b.delete(location)
        assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
        deadline = time.monotonic() + 30
        stopped = 0.0
        while time.monotonic() < deadline and not stopped:
            samples = scrape(metrics_port).get("jobs", [])
            stopped = sum(s.value for s in samples if s.name == "jobs_total" and s.labels["status"] == "cancelled")
            time.sleep(0.2)
        assert stopped == 1, "the replica running the job never stopped it"
        assert a.get(location).json()["status"] == "cancelled"

        families = scrape(metrics_port)
        requests = [s for s in families["http_requests"] if s.name == "http_requests_total"]
        routes = {s.labels["route"] for s in requests}
        assert {"/api/lattice/create", "/api/lattice/path", "/api/jobs"} <= routes
        assert not any(re.search(r"(lat|job)_[0-9a-f]{12}", route) for route in routes)
        assert any(s.labels["status"] == "401" for s in requests)
        assert families["memory_efficiency_ratio"][0].value > 1
        assert any(name.startswith("webhook_") for name in families)

        redis.stop()
        fresh = a.post("/api/lattice/create", json={"shape": [6, 6]}).json()["id"]
        for client in (a, b, a, b):
            response = client.post("/api/lattice/path", json={"lattice_id": fresh, "start": [0, 0], "goal": [5, 5]})
            assert response.status_code == 200 and response.json()["length"] == 10
        assert b.get("/ready").json()["cache"]["redis"] is False
        assert any(s.value == 0 for s in scrape(metrics_port)["cache_redis_up"])


def test_embedded_database_with_two_server_processes(tmp_path: Path) -> None:
    """``catalytic serve --workers 2`` on SQLite: both processes see every commit, from the first request on.

    The supervising process keeps a connection to the embedded database open, so no server process is ever
    the last to close one and the -wal/-shm files are never deleted under another process's connection.
    """
    import psutil

    database = tmp_path / "catalytic.db"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CATALYTIC_", "PROMETHEUS_", "DATABASE_URL"))}
    env |= {"CATALYTIC_SQLITE_PATH": str(database), "LOG_LEVEL": "WARNING", "METRICS_PORT": "0"}
    replica = Replica(env, tmp_path / "serve.log", workers=2)
    try:
        replica.wait_ready()
        held = {Path(f.path) for f in psutil.Process(replica.process.pid).open_files()}
        assert database in held, held
        for seed in range(3):
            with httpx.Client(base_url=replica.url, timeout=60) as client:
                created = client.post("/api/lattice/create", json={"shape": [6, 6], "obstacles": []}).json()
            # Fresh connections land on either process; every one must find the new id.
            for _ in range(6):
                with httpx.Client(base_url=replica.url, timeout=60) as client:
                    answer = client.post(
                        "/api/lattice/path", json={"lattice_id": created["id"], "start": [0, 0], "goal": [5, seed]}
                    )
                    assert answer.status_code == 200, answer.text
                    assert client.get("/api/lattices").json()["items"], "a server process sees an empty database"
    finally:
        replica.stop()
    assert replica.process.returncode == 0
