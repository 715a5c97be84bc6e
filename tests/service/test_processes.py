"""``catalytic serve`` as a real process: its children die with it, IPv6 loopback binds, a bad keys file is one line."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest

pytestmark = pytest.mark.slow

LONG_JOB = {"lattice": {"shape": [2_000_000]}, "sources": [[0]], "backend": "numpy"}
"""A distance field that keeps a job worker busy for minutes (the numpy backend, one BFS level at a time)."""
LONG_INLINE = {"lattice": {"shape": [1_000_000]}, "start": [0], "goal": [999_999], "method": "bfs", "backend": "numpy"}
"""An inline path that keeps a compute process busy for about 15 s."""


def _free_port(family: socket.AddressFamily = socket.AF_INET, host: str = "127.0.0.1") -> int:
    with socket.socket(family) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _environment(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {
        **os.environ,
        "CATALYTIC_SQLITE_PATH": str(tmp_path / "serve.db"),
        "METRICS_PORT": "0",
        "CATALYTIC_WEBHOOK_WORKER": "false",
        "LOG_LEVEL": "WARNING",
        "PARALLEL_CORES": "1",
        **extra,
    }
    for name in ("CATALYTIC_API_KEYS", "CATALYTIC_API_KEYS_FILE", "DATABASE_URL", "REDIS_URL"):
        if name not in extra:
            env.pop(name, None)
    return env


def _serve(tmp_path: Path, host: str, port: int, workers: int = 1, **extra: str) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "catalytic.cli", "serve", "--host", host, "--port", str(port)]
    command += ["--workers", str(workers)]
    log = open(tmp_path / "serve.log", "wb")  # noqa: SIM115 - the server's output, closed when it ends
    process = subprocess.Popen(command, env=_environment(tmp_path, **extra), stdout=log, stderr=subprocess.STDOUT)
    log.close()
    return process


def _wait_healthy(process: subprocess.Popen[bytes], url: str, log: Path) -> None:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        assert process.poll() is None, log.read_text(errors="replace")[-3000:]
        try:
            if httpx.get(url + "/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"no answer from {url}: {log.read_text(errors='replace')[-3000:]}")


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    port = _free_port()
    # The inline path must still be computing when the server is killed, however slow a loaded machine makes it.
    process = _serve(tmp_path, "127.0.0.1", port, CATALYTIC_REQUEST_TIMEOUT_S="600")
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(process, url, tmp_path / "serve.log")
        yield process, url
    finally:
        _stop(process)


def test_busy_children_die_with_a_killed_server(server: tuple[subprocess.Popen[bytes], str]) -> None:
    process, url = server
    with httpx.Client(base_url=url, timeout=60) as client:
        accepted = client.post("/api/lattice/distance-field", json=LONG_JOB)
        assert accepted.status_code == 202, accepted.text
        job_url = accepted.headers["location"]
        deadline = time.monotonic() + 60
        # The first progress row comes from the kernel's own report: the worker has materialised and is computing.
        while client.get(job_url).json()["progress"] <= 0:
            assert time.monotonic() < deadline, "the job never started computing"
            time.sleep(0.1)
        inline = threading.Thread(target=_post_quietly, args=(url, LONG_INLINE), daemon=True)
        inline.start()
        deadline = time.monotonic() + 60
        while len(_spawned(process.pid)) < 2:  # the job worker, and the compute process taking the inline path
            assert time.monotonic() < deadline, "the compute process never started"
            time.sleep(0.1)
        assert client.get(job_url).json()["status"] == "running"
    children = psutil.Process(process.pid).children(recursive=True)
    try:
        os.kill(process.pid, signal.SIGKILL)
        process.wait(10)
        deadline = time.monotonic() + 3
        while not all(_gone(child.pid) for child in children) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert [child.pid for child in children if not _gone(child.pid)] == []
    finally:
        for child in children:  # started by the server this test started: stopped by their ids
            if not _gone(child.pid):
                os.kill(child.pid, signal.SIGKILL)
    inline.join(10)


def test_server_processes_die_with_a_killed_supervisor(tmp_path: Path) -> None:
    port = _free_port()
    supervisor = _serve(tmp_path, "127.0.0.1", port, workers=2)
    children: list[psutil.Process] = []
    try:
        _wait_healthy(supervisor, f"http://127.0.0.1:{port}", tmp_path / "serve.log")
        deadline = time.monotonic() + 60
        while len(_spawned(supervisor.pid)) < 2:
            assert time.monotonic() < deadline, "the supervisor never started two server processes"
            time.sleep(0.1)
        children = psutil.Process(supervisor.pid).children(recursive=True)
        os.kill(supervisor.pid, signal.SIGKILL)
        supervisor.wait(10)
        deadline = time.monotonic() + 3
        while not all(_gone(child.pid) for child in children) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert [child.pid for child in children if not _gone(child.pid)] == []
    finally:
        _stop(supervisor)
        for child in children:
            if not _gone(child.pid):
                os.kill(child.pid, signal.SIGKILL)


def _spawned(pid: int) -> list[psutil.Process]:
    """The children a server process started through multiprocessing (not its resource tracker)."""
    children = psutil.Process(pid).children()
    return [child for child in children if "spawn_main" in " ".join(child.cmdline())]


def _post_quietly(url: str, body: dict[str, object]) -> None:
    with contextlib.suppress(httpx.HTTPError):  # the server is killed under this request
        httpx.post(url + "/api/lattice/path", json=body, timeout=60)


@pytest.mark.parametrize("host", ["::1", "[::1]"])
def test_serve_binds_ipv6_loopback(tmp_path: Path, host: str) -> None:
    try:
        port = _free_port(socket.AF_INET6, "::1")
    except OSError:
        pytest.skip("this machine has no IPv6 loopback")
    process = _serve(tmp_path, host, port)
    try:
        _wait_healthy(process, f"http://[::1]:{port}", tmp_path / "serve.log")
        answer = httpx.get(f"http://[::1]:{port}/api/lattices", timeout=10)
        assert answer.status_code == 200, answer.text  # [::1] is an allowed Host of a keyless service
    finally:
        _stop(process)


def test_a_missing_api_keys_file_is_one_line_and_exit_2(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-keys"
    env = _environment(tmp_path, CATALYTIC_API_KEYS_FILE=str(missing))
    run = subprocess.run(
        [sys.executable, "-m", "catalytic.cli", "serve", "--port", "1"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert run.returncode == 2
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1, run.stderr
    assert "CATALYTIC_API_KEYS_FILE" in lines[0] and str(missing) in lines[0]
    assert "Traceback" not in run.stderr
