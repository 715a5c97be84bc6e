"""``python -m bench stress``: is the event loop free while large request bodies are parsed?

A real ``catalytic serve`` (embedded SQLite, one server process) runs on a loopback port. A prober in its own
process sends ``GET /health`` one after another (a short pause between them) and records each answer's
latency, first on the idle server, then while ``--creates`` (4) clients each send one create body of
``--coordinates`` (2 million) blocked coordinates (about 25 MB) at once, for ``--rounds`` rounds. The target
(issue 12, section 5): ``/health`` p99 under 50 ms and max under 150 ms under that load.

The baseline is the same server with ``CATALYTIC_PARSE_OFFLOAD_BYTES`` above the body size, so every body is
parsed and validated on the event loop as before the parse processes existed (``--no-control`` skips it).

Options: ``--quick`` (200,000 coordinates, one round, for smoke tests), ``--creates``, ``--coordinates``,
``--rounds``, ``--no-control``.
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from bench.common import begin_run, markdown_table, percentile, write_results

SIDE = 2000
"""Side of the 2-D lattice the creates name (4 million vertices)."""
PROBE_PAUSE_S = 0.005
TARGET_P99_MS = 50.0
TARGET_MAX_MS = 150.0
IDLE_PROBE_S = 3.0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def create_body(coordinates: int, seed: int = 2026) -> bytes:
    """A create body of ``coordinates`` blocked coordinates on a SIDE x SIDE lattice (duplicates allowed)."""
    rng = random.Random(seed)
    blocked = [[rng.randrange(SIDE), rng.randrange(SIDE)] for _ in range(coordinates)]
    return json.dumps({"shape": [SIDE, SIDE], "blocked": blocked}).encode()


def _probe(port: int, conn: Any) -> None:
    """Prober process: GET /health until told to stop, then send back the latencies in seconds."""
    latencies: list[float] = []
    client = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    while not conn.poll():
        began = time.perf_counter()
        client.request("GET", "/health")
        response = client.getresponse()
        response.read()
        latencies.append(time.perf_counter() - began)
        if response.status != 200:
            latencies[-1] = float("inf")
        time.sleep(PROBE_PAUSE_S)
    client.close()
    conn.send(latencies)


class _Prober:
    def __init__(self, port: int) -> None:
        ctx = multiprocessing.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self._process = ctx.Process(target=_probe, args=(port, child), daemon=True)
        self._process.start()
        child.close()

    def stop(self) -> list[float]:
        self._conn.send("stop")
        latencies: list[float] = self._conn.recv()
        self._process.join(10)
        return latencies


class _Server:
    """``catalytic serve`` on a loopback port, stopped by its process id."""

    def __init__(self, workdir: Path, env_extra: dict[str, str]) -> None:
        self.port = _free_port()
        env = {
            **os.environ,
            "CATALYTIC_SQLITE_PATH": str(workdir / "stress.db"),
            "METRICS_PORT": "0",
            "CATALYTIC_WEBHOOK_WORKER": "false",
            "LOG_LEVEL": "WARNING",
            **env_extra,
        }
        for name in ("CATALYTIC_API_KEYS", "CATALYTIC_API_KEYS_FILE", "DATABASE_URL", "REDIS_URL"):
            env.pop(name, None)
        self._log = open(workdir / "server.log", "wb")  # noqa: SIM115 - the child's output for its lifetime
        command = [sys.executable, "-m", "catalytic.cli", "serve", "--host", "127.0.0.1", "--port", str(self.port)]
        self.process = subprocess.Popen(command, env=env, stdout=self._log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise SystemExit(f"server exited: {(workdir / 'server.log').read_text(errors='replace')[-2000:]}")
            try:
                client = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
                client.request("GET", "/ready")
                if client.getresponse().status == 200:
                    client.close()
                    return
            except OSError:
                pass
            time.sleep(0.25)
        self.stop()
        raise SystemExit("the server never became ready")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()


def _create(port: int, body: bytes, out: list[dict[str, Any]]) -> None:
    client = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    began = time.perf_counter()
    client.request("POST", "/api/lattice/create", body=body, headers={"Content-Type": "application/json"})
    response = client.getresponse()
    answer = response.read()
    seconds = time.perf_counter() - began
    client.close()
    lattice_id = json.loads(answer).get("id") if response.status == 201 else None
    out.append({"status": response.status, "seconds": round(seconds, 3), "id": lattice_id})


def _summary(latencies: list[float]) -> dict[str, Any]:
    ms = [x * 1000 for x in latencies]
    return {
        "probes": len(ms),
        "p50_ms": round(percentile(ms, 50), 2),
        "p99_ms": round(percentile(ms, 99), 2),
        "max_ms": round(max(ms), 2),
        "over_150_ms": sum(1 for x in ms if x > TARGET_MAX_MS),
    }


def _scenario(name: str, env: dict[str, str], body: bytes, creates: int, rounds: int) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix=f"bench-stress-{name}-"))
    server = _Server(workdir, env)
    try:
        prober = _Prober(server.port)
        time.sleep(IDLE_PROBE_S)
        idle = prober.stop()
        answers: list[dict[str, Any]] = []
        loaded: list[float] = []
        busy_s = 0.0
        for _ in range(rounds):
            prober = _Prober(server.port)
            time.sleep(0.5)
            began = time.perf_counter()
            threads = [threading.Thread(target=_create, args=(server.port, body, answers)) for _ in range(creates)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            busy_s += time.perf_counter() - began
            loaded += prober.stop()
        return {
            "name": name,
            "env": env,
            "idle": _summary(idle),
            "under_load": _summary(loaded),
            "creates": answers,
            "creates_ok": sum(1 for a in answers if a["status"] == 201),
            "load_seconds": round(busy_s, 2),
        }
    finally:
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench stress", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="200,000 coordinates, one round")
    parser.add_argument("--creates", type=int, default=4, help="concurrent create requests (default 4)")
    parser.add_argument("--coordinates", type=int, default=2_000_000, help="blocked coordinates per body")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of concurrent creates (default 3)")
    parser.add_argument("--no-control", action="store_true", help="skip the on-the-loop baseline")
    args = parser.parse_args(argv)
    coordinates = 200_000 if args.quick else args.coordinates
    rounds = 1 if args.quick else args.rounds
    started = begin_run()
    body = create_body(coordinates)
    scenarios = [_scenario("parse processes", {}, body, args.creates, rounds)]
    if not args.no_control:
        on_loop = {"CATALYTIC_PARSE_OFFLOAD_BYTES": str(len(body) + 1)}
        scenarios.append(_scenario("on the event loop (baseline)", on_loop, body, args.creates, 1))
    measured = scenarios[0]["under_load"]
    targets = [
        {"target": "/health p99 under load", "goal": f"< {TARGET_P99_MS:g} ms", "measured": measured["p99_ms"]},
        {"target": "/health max under load", "goal": f"< {TARGET_MAX_MS:g} ms", "measured": measured["max_ms"]},
    ]
    targets[0]["met"] = measured["p99_ms"] < TARGET_P99_MS
    targets[1]["met"] = measured["max_ms"] < TARGET_MAX_MS
    config = {
        "quick": args.quick,
        "creates": args.creates,
        "coordinates": coordinates,
        "body_bytes": len(body),
        "rounds": rounds,
        "lattice": [SIDE, SIDE],
        "probe_pause_s": PROBE_PAUSE_S,
    }
    rows = [
        [
            s["name"],
            f"{s['idle']['p50_ms']} / {s['idle']['p99_ms']} / {s['idle']['max_ms']}",
            f"{s['under_load']['p50_ms']} / {s['under_load']['p99_ms']} / {s['under_load']['max_ms']}",
            s["under_load"]["probes"],
            f"{s['creates_ok']} of {len(s['creates'])}",
            max((c["seconds"] for c in s["creates"]), default=0),
        ]
        for s in scenarios
    ]
    markdown = (
        f"{args.creates} concurrent creates of {coordinates:,} blocked coordinates ({len(body) / 1e6:.1f} MB each) "
        f"on a {SIDE}x{SIDE} lattice, {rounds} round(s); `/health` probed one request at a time from its own "
        "process. Latencies in ms.\n\n"
        + markdown_table(
            [
                "body parsing",
                "idle /health p50 / p99 / max",
                "loaded /health p50 / p99 / max",
                "probes",
                "creates 201",
                "slowest create s",
            ],
            rows,
        )
        + "\n\n"
        + markdown_table(
            ["target", "goal", "measured ms", "met"],
            [[t["target"], t["goal"], t["measured"], "yes" if t["met"] else "no"] for t in targets],
        )
        + "\n"
    )
    payload = {"config": config, "scenarios": scenarios, "targets": targets}
    json_path, md_path = write_results("stress", payload, markdown, load_started=started, plots=False)
    print(md_path.read_text(encoding="utf-8"))
    print(f"wrote {json_path} and {md_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
