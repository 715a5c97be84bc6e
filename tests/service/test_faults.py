"""Faults under a real ``catalytic serve`` process: its PostgreSQL restarted under the API, its job runner and its
in-process webhook worker. Both recover without help and nothing committed is lost.

The other faults of the hardening list live beside the code they exercise: Redis stopped under two replicas
(tests/service/test_replicas.py), a server process killed during a job (tests/deploy/test_rehearse.py), the
webhook worker killed during 1,000 deliveries and PostgreSQL restarted under it (tests/webhooks/test_reliability.py).
"""

from __future__ import annotations

import os
import threading
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest
from servers import PostgresServer
from service.test_replicas import Replica, wait_status

from catalytic.storage import migrate
from catalytic.webhooks.receiver import ThreadedReceiver

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

JOB = {
    "operation": "shortest_path",
    "lattice": {"shape": [40, 40, 40]},
    "params": {"start": [0, 0, 0], "goal": [39, 39, 39], "method": "dijkstra"},
    "backend": "numpy",
}


def _until(condition: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if callable(condition) and condition():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def _answers(client: httpx.Client, url: str) -> bool:
    try:
        return client.get(url).status_code == 200
    except httpx.HTTPError:
        return False


def test_postgres_restarted_under_the_api_its_jobs_and_its_webhook_worker(
    postgres_server: PostgresServer, pg_url: str, tmp_path: Path
) -> None:
    if not postgres_server.managed:
        pytest.skip("DATABASE_URL points at an external server, which tests cannot restart")
    receiver = ThreadedReceiver().start()
    base = {k: v for k, v in os.environ.items() if not k.startswith(("CATALYTIC_", "PROMETHEUS_", "WEBHOOK_"))}
    base |= {
        "DATABASE_URL": pg_url,
        "LOG_LEVEL": "WARNING",
        "PARALLEL_CORES": "1",
        "METRICS_PORT": "0",
        "CATALYTIC_WEBHOOK_WORKER": "true",
        "WEBHOOK_ALLOW_CIDRS": "127.0.0.1/32",
        "WEBHOOK_POLL_INTERVAL": "0.1",
        "JOB_LEASE_SECONDS": "3",
    }
    migrate(pg_url)
    api = Replica(base, tmp_path / "api.log")
    during: Counter[int | str] = Counter()
    stop = threading.Event()
    try:
        api.wait_ready()
        with httpx.Client(base_url=api.url, timeout=30) as client:
            hook = client.post(
                "/api/webhooks", json={"url": f"{receiver.url}/hook", "event_types": ["lattice.created"]}
            )
            assert hook.status_code == 201, hook.text
            before = [client.post("/api/lattice/create", json={"shape": [5, 5]}).json()["id"] for _ in range(10)]
            job = client.post("/api/jobs", json=JOB)
            assert job.status_code == 202, job.text

            def traffic() -> None:
                with httpx.Client(base_url=api.url, timeout=30) as side:
                    while not stop.is_set():
                        try:
                            answer = side.post("/api/lattice/path", json={"lattice_id": before[0], "start": [0, 0],
                                                                           "goal": [4, 4]})  # fmt: skip
                            during[answer.status_code] += 1
                        except httpx.HTTPError as exc:
                            during[type(exc).__name__] += 1
                        time.sleep(0.02)

            side = threading.Thread(target=traffic)
            side.start()
            postgres_server.restart()
            _until(lambda: _answers(client, "/ready"), 60, "/ready after the restart")
            stop.set()
            side.join(timeout=60)

            after = [client.post("/api/lattice/create", json={"shape": [5, 5]}).json()["id"] for _ in range(10)]
            finished = wait_status(client, job.headers["location"], {"succeeded", "failed"}, timeout=120)
            assert finished["status"] == "succeeded", finished
            stored = {item["id"] for item in client.get("/api/lattices", params={"limit": 100}).json()["items"]}
            assert set(before) | set(after) <= stored
            path = client.post("/api/lattice/path", json={"lattice_id": after[-1], "start": [0, 0], "goal": [4, 4]})
            assert path.status_code == 200 and path.json()["length"] == 8

            def delivered() -> set[str]:
                return {r.headers["webhook-id"] for r in receiver.receiver.requests}

            _until(lambda: len(delivered()) >= 20, 60, "a webhook for every create, before and after the restart")
            created = {r.body for r in receiver.receiver.requests}
            assert all(any(lattice_id.encode() in body for body in created) for lattice_id in before + after)
        # The outage answered with an error the client can act on (503, Retry-After), never a server fault.
        assert not {code for code in during if isinstance(code, int) and code >= 500 and code != 503}, during
    finally:
        stop.set()
        api.stop()
        receiver.stop()
    print(f"postgres restart under the API: answers during it {dict(during)}")
