"""The webhook worker's own port (what the worker Deployment probes and Prometheus scrapes), and its stall check."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from servers import free_port

from catalytic.webhooks.config import WebhookConfig
from catalytic.webhooks.health import HealthServer
from catalytic.webhooks.worker import Worker


class _Stub:
    """Stands for a worker: the server only reads these three."""

    def __init__(self, stalled: float, limit: float, ok: bool) -> None:
        self._stalled, self.stall_limit_s, self.last_round_ok = stalled, limit, ok

    def stalled_for(self) -> float:
        return self._stalled


async def _get(port: int, path: str) -> httpx.Response:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=5) as client:
        return await client.get(path)


def test_health_answers_503_once_the_loop_stalls_past_its_limit() -> None:
    async def scenario() -> dict[str, Any]:
        server = await HealthServer.start("127.0.0.1", 0)
        try:
            answers = {"starting": (await _get(server.port, "/health")).status_code}
            answers["not ready"] = (await _get(server.port, "/ready")).status_code
            server.attach(_Stub(5.0, 120.0, True))  # type: ignore[arg-type]
            answers["ok"] = (await _get(server.port, "/health")).status_code
            answers["ready"] = (await _get(server.port, "/ready")).status_code
            server.attach(_Stub(121.0, 120.0, False))  # type: ignore[arg-type]
            stalled = await _get(server.port, "/health")
            answers["stalled"] = stalled.status_code
            answers["body"] = stalled.json()
            answers["unknown"] = (await _get(server.port, "/nope")).status_code
            answers["metrics"] = (await _get(server.port, "/metrics")).text
            return answers
        finally:
            await server.close()

    answers = asyncio.run(scenario())
    assert (answers["starting"], answers["not ready"], answers["ok"], answers["ready"]) == (200, 503, 200, 200)
    assert answers["stalled"] == 503 and answers["body"]["status"] == "stalled"
    assert answers["unknown"] == 404 and "webhook_deliveries" in answers["metrics"]


def test_a_hung_round_shows_as_a_stall() -> None:
    async def scenario() -> tuple[float, float]:
        worker = Worker(
            SimpleNamespace(dialect="sqlite"), WebhookConfig(total_timeout=0.1, lease_seconds=0.3, idle_max_s=0.1)
        )  # type: ignore[arg-type]
        hang = asyncio.Event()

        async def run_once() -> int:
            await hang.wait()
            return 0

        worker.run_once = run_once  # type: ignore[method-assign]
        task = asyncio.create_task(worker.run_forever())
        await asyncio.sleep(0.3)
        stalled = worker.stalled_for()
        worker.stop()
        hang.set()
        await asyncio.wait_for(task, 5)
        return stalled, worker.stall_limit_s

    stalled, limit = asyncio.run(scenario())
    assert stalled >= 0.25
    assert limit == pytest.approx(0.3 + 0.1 + 30.0)


def test_catalytic_worker_serves_its_port_and_stops_on_sigterm(tmp_path: Path) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CATALYTIC_", "DATABASE_URL", "WEBHOOK_"))}
    env |= {
        "CATALYTIC_SQLITE_PATH": str(tmp_path / "c.db"),
        "SQLITE_PATH": str(tmp_path / "c.db"),
        "LOG_LEVEL": "WARNING",
    }
    command = [sys.executable, "-m", "catalytic.cli", "worker", "--host", "127.0.0.1", "--port", str(port)]
    log = tmp_path / "worker.log"
    with open(log, "wb") as sink:
        process = subprocess.Popen(command, env=env, cwd=tmp_path, stderr=sink)
    try:
        deadline = time.monotonic() + 60
        ready = None
        while time.monotonic() < deadline and process.poll() is None:
            try:
                ready = httpx.get(f"http://127.0.0.1:{port}/ready", timeout=2)
                if ready.status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        assert ready is not None and ready.status_code == 200, log.read_text(errors="replace")
        assert httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).json()["status"] == "ok"
        assert "webhook_queue_size" in httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2).text
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            code = process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
            raise
    assert code == 0


def test_a_taken_port_is_a_clear_error(tmp_path: Path) -> None:
    import socket

    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        env = {k: v for k, v in os.environ.items() if not k.startswith(("CATALYTIC_", "DATABASE_URL"))}
        env |= {"CATALYTIC_SQLITE_PATH": str(tmp_path / "c.db"), "SQLITE_PATH": str(tmp_path / "c.db")}
        result = subprocess.run(
            [sys.executable, "-m", "catalytic.cli", "worker", "--port", str(port)],
            env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
    assert result.returncode == 2 and "cannot serve the worker's probes" in result.stderr
