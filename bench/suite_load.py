"""``python -m bench load``: HTTP load on the service (2 uvicorn workers, embedded defaults) driven by wrk.

Cases, each against a fresh ``catalytic serve --workers 2`` on SQLite, beside a bare Starlette JSON endpoint
served the same way in the same run:

* ``bare``: GET of a constant JSON object from a plain Starlette app (the ceiling of the HTTP stack).
* ``cached_path``: the same path query on a stored 5-D 10^5 lattice again and again (answered from L1).
* ``uncached_path``: a different start/goal pair on every request (distinct pairs of open vertices).
* ``create_delete``: create a small lattice, delete it, repeat (database writes).
* ``create_delete_postgres`` (with ``--database-url``): the same against a fresh database on that PostgreSQL.
* ``create_delete_sqlite_normal``: the same on SQLite with ``CATALYTIC_SQLITE_SYNCHRONOUS=NORMAL``.
* ``*_before`` (with ``--baseline-rev``): the create + delete rows served by the library as it was at that
  revision, in the same run: the baseline of the write-path changes.

wrk runs with 2 threads and 100 connections; a Lua ``done`` hook reports requests, errors and latency
percentiles. Targets (2 cores, 2 workers, 100 connections): cached path >= 10,000 req/s and >= 50 % of bare
with p95 < 50 ms; uncached 5-D path p95 < 25 ms; create + delete p95 < 200 ms on SQLite and PostgreSQL; no
errors. Before measuring, the suite waits (``--quiet-load``, ``--quiet-minutes``) for the 1-minute load average
to fall under a threshold, and records what it saw.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from bench.common import REPO, begin_run, markdown_table, wait_for_quiet, write_results

SHAPE = [10, 10, 10, 10, 10]
OBSTACLES = [{"kind": "random", "p": 0.2, "seed": 1}]
CONNECTIONS = 100
# The per-tenant quotas are raised out of the way: the suites measure the serving path, not the limiter.
UNLIMITED_TENANT = {
    "TENANT_MAX_REQUESTS_PER_SECOND": "1000000000",
    "TENANT_MAX_LATTICES": "1000000000",
    "TENANT_MAX_QUEUED_JOBS": "1000000",
}
THREADS = 2
OPEN_SAMPLE = 1500
ROUNDS = 3

_DONE_HOOK = """
done = function(summary, latency, requests)
  if report then report() end
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests": %d, "duration_us": %d, "errors": {"connect": %d, "read": %d, "write": %d, ' ..
    '"status": %d, "timeout": %d}, "p50_us": %d, "p95_us": %d, "p99_us": %d, "max_us": %d, "mean_us": %.1f}\\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(95), latency:percentile(99), latency.max, latency.mean))
end
"""


def bare_app() -> Any:
    """A plain Starlette app with one JSON endpoint: the baseline the service is compared with."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    async def ok(request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    return Starlette(routes=[Route("/json", ok)])


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process and all its descendants so far (from /proc)."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    pending = [pid]
    while pending:
        current = pending.pop()
        try:
            fields = Path(f"/proc/{current}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / ticks
            for task in Path(f"/proc/{current}/task").iterdir():
                pending += [int(c) for c in (task / "children").read_text().split()]
        except (OSError, IndexError, ValueError):
            continue
    return total


def _ensure_wrk() -> str:
    found = shutil.which("wrk")
    if found:
        return found
    if os.geteuid() == 0:
        subprocess.run(["apt-get", "install", "-y", "wrk"], check=False, capture_output=True, timeout=600)
    found = shutil.which("wrk")
    if not found:
        raise SystemExit("wrk is not installed (Debian package 'wrk'); the load suite needs it")
    return found


class Server:
    """A server subprocess on a loopback port, stopped by its process id."""

    def __init__(
        self, command: list[str], env: dict[str, str], port: int, probe: str, log: Path, cwd: Path | None = None
    ) -> None:
        self.port = port
        self.base = f"http://127.0.0.1:{port}"
        self._log = open(log, "wb")  # noqa: SIM115 - the child's output for the server's lifetime
        # cwd: ``python -m`` puts it first on sys.path, ahead of PYTHONPATH (a baseline's tree runs from there).
        self.process = subprocess.Popen(command, env=env, stdout=self._log, stderr=subprocess.STDOUT, cwd=cwd)
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise SystemExit(f"server exited: {log.read_text(errors='replace')[-2000:]}")
            try:
                if httpx.get(self.base + probe, timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.25)
        raise SystemExit(f"server on {port} never became ready")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()


def _wrk(
    wrk: str, url: str, script: str, seconds: int, connections: int, workdir: Path, name: str, server_pid: int
) -> dict[str, Any]:
    cpu_before = _cpu_seconds(server_pid)
    path = workdir / f"{name}.lua"
    path.write_text(script + _DONE_HOOK, encoding="utf-8")
    command = [
        wrk,
        "-t",
        str(THREADS),
        "-c",
        str(connections),
        "-d",
        f"{seconds}s",
        "--timeout",
        "10s",
        "-s",
        str(path),
        url,
    ]
    run = subprocess.run(command, check=True, capture_output=True, text=True, timeout=seconds + 120)
    lines = [text for text in run.stdout.splitlines() if text.startswith("WRKJSON ")]
    if not lines:
        raise SystemExit(f"wrk gave no summary for {name}:\n{run.stdout}\n{run.stderr}")
    cpu = _cpu_seconds(server_pid) - cpu_before
    stats = json.loads(lines[0][len("WRKJSON ") :])
    # A script that counts its answers by status prints them too (the soak's mix does).
    marked = [text for text in run.stdout.splitlines() if text.startswith("WRKSTATUS ")]
    by_status = [json.loads(text[len("WRKSTATUS ") :]) for text in marked]
    seconds_run = stats["duration_us"] / 1e6
    errors = sum(stats["errors"].values())
    return {
        "case": name,
        "connections": connections,
        "duration_s": round(seconds_run, 2),
        "requests": stats["requests"],
        "req_per_s": round(stats["requests"] / seconds_run, 1),
        "p50_ms": stats["p50_us"] / 1e3,
        "p95_ms": stats["p95_us"] / 1e3,
        "p99_ms": stats["p99_us"] / 1e3,
        "max_ms": stats["max_us"] / 1e3,
        "errors": errors,
        "error_detail": stats["errors"],
        "server_cpu_ms_per_request": round(1e3 * cpu / max(stats["requests"], 1), 4),
    } | ({"by_status": dict(sorted(by_status[0].items()))} if by_status else {})


def _post(body: dict[str, Any]) -> str:
    payload = json.dumps(body).replace("\\", "\\\\").replace('"', '\\"')
    return f'wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\nwrk.body = "{payload}"\n'


def _uncached_script(lattice_id: str, coords: list[list[int]]) -> str:
    table = ",".join("{" + ",".join(str(c) for c in point) + "}" for point in coords)
    return f"""
local points = {{{table}}}
local n = #points
local counter = 0
local threads_seen = 0
-- setup runs in the main Lua state; thread:set defines the global thread_id in each thread's own state
setup = function(thread)
  thread:set("thread_id", threads_seen)
  threads_seen = threads_seen + 1
end
local function coords(p) return "[" .. table.concat(p, ",") .. "]" end
request = function()
  -- pair index k = counter * threads + thread_id: every request of every thread asks a new (start, goal) pair
  local k = counter * {THREADS} + (thread_id or 0)
  counter = counter + 1
  local start = points[(k % n) + 1]
  local goal = points[((math.floor(k / n) + k + 1) % n) + 1]
  local body = '{{"lattice_id": "{lattice_id}", "start": ' .. coords(start) .. ', "goal": ' .. coords(goal) .. '}}'
  return wrk.format("POST", "/api/lattice/path", {{["Content-Type"] = "application/json"}}, body)
end
"""


_CREATE_DELETE = """
local pending = {}
request = function()
  local id = table.remove(pending)
  if id then
    return wrk.format("DELETE", "/api/lattice/" .. id)
  end
  return wrk.format("POST", "/api/lattice/create", {["Content-Type"] = "application/json"},
    '{"shape": [8, 8, 8], "obstacles": [{"kind": "random", "p": 0.1, "seed": 3}]}')
end
response = function(status, headers, body)
  if status == 201 then
    local id = string.match(body, '"id":"([^"]+)"')
    if id then table.insert(pending, id) end
  end
end
"""


def _baseline_tree(rev: str, workdir: Path) -> Path:
    """The ``catalytic`` package as it was at ``rev``, unpacked under ``workdir`` (put first on PYTHONPATH)."""
    tree = workdir / f"baseline-{rev}"
    tree.mkdir()
    archive = subprocess.run(["git", "archive", rev, "catalytic"], cwd=REPO, check=True, capture_output=True)
    subprocess.run(["tar", "-x", "-C", str(tree)], input=archive.stdout, check=True)
    return tree


async def _admin(url: str, statement: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


def _fresh_database(url: str, name: str) -> str:
    """A new, empty database ``name`` on the server of ``url``; its URL."""
    from urllib.parse import urlsplit, urlunsplit

    asyncio.run(_admin(url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    asyncio.run(_admin(url, f'CREATE DATABASE "{name}"'))
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + name, parts.query, parts.fragment))


def _postgres_settings(url: str) -> dict[str, str]:
    import asyncpg

    async def read() -> dict[str, str]:
        conn = await asyncpg.connect(url)
        try:
            names = ("server_version", "fsync", "synchronous_commit", "max_connections", "shared_buffers")
            return {name: str(await conn.fetchval(f"SHOW {name}")) for name in names}
        finally:
            await conn.close()

    return asyncio.run(read())


def _write_case(
    wrk: str, env: dict[str, str], workdir: Path, name: str, seconds: int, *, database_url: str | None = None,
    tree: Path | None = None, extra: dict[str, str] | None = None,
) -> dict[str, Any]:  # fmt: skip
    """create + delete at 100 connections against a fresh ``catalytic serve --workers 2`` (its own database)."""
    case_env = dict(env) | (extra or {})
    case_env["CATALYTIC_SQLITE_PATH"] = str(workdir / f"{name}.db")
    if tree is not None:
        case_env["PYTHONPATH"] = os.pathsep.join([str(tree), str(REPO)])
    if database_url is not None:
        case_env["DATABASE_URL"] = _fresh_database(database_url, f"bench_load_{name}")
        subprocess.run([sys.executable, "-m", "catalytic.cli", "migrate"], env=case_env, check=True, cwd=workdir)
    port = _free_port()
    server = Server(
        [sys.executable, "-m", "catalytic.cli", "serve", "--workers", "2", "--port", str(port)],
        case_env, port, "/ready", workdir / f"{name}.log", cwd=tree,
    )  # fmt: skip
    try:
        _wrk(wrk, f"{server.base}/", _CREATE_DELETE, 2, CONNECTIONS, workdir, "warmup", server.process.pid)
        row = _wrk(wrk, f"{server.base}/", _CREATE_DELETE, seconds, CONNECTIONS, workdir, name, server.process.pid)
    finally:
        server.stop()
        if database_url is not None:
            asyncio.run(_admin(database_url, f'DROP DATABASE IF EXISTS "bench_load_{name}" WITH (FORCE)'))
    row["database"] = "postgresql" if database_url else "sqlite"
    row["code"] = "baseline" if tree is not None else "current"
    return row


def _open_points(count: int) -> list[list[int]]:
    from catalytic import Lattice

    lattice = Lattice(SHAPE, obstacles=OBSTACLES)
    open_indices = np.flatnonzero(lattice.open_mask_flat())
    chosen = np.random.default_rng(7).choice(open_indices, size=count, replace=False)
    return lattice.coords_of(chosen).tolist()


def _targets(rows: dict[str, dict[str, Any]], load: tuple[float, float]) -> list[dict[str, Any]]:
    """Each target with its verdict, the measured value and, when missed, the cause read off the same run."""
    cached, bare, uncached, quiet = (
        rows["cached_path"],
        rows["bare"],
        rows["uncached_path"],
        rows["uncached_path_2conn"],
    )
    cores = os.cpu_count() or 1
    share = cached["req_per_s"] / bare["req_per_s"]
    machine = f"load average {load[0]:.1f} before / {load[1]:.1f} after the run on {cores} cores (other processes)"
    queueing = CONNECTIONS * quiet["p50_ms"] / cores
    checks = [
        (
            "cached path >= 10,000 req/s", cached["req_per_s"] >= 10_000, f"{cached['req_per_s']:.0f} req/s",
            f"the bare Starlette endpoint itself reached {bare['req_per_s']:.0f} req/s in this run; the service spends "
            f"{cached['server_cpu_ms_per_request']:.3f} ms of server CPU per request; {machine}",
        ),
        (
            "cached path >= 50 % of bare", share >= 0.5, f"{100 * share:.1f} % of {bare['req_per_s']:.0f} req/s",
            f"server CPU per request: {cached['server_cpu_ms_per_request']:.3f} ms for the cached path against "
            f"{bare['server_cpu_ms_per_request']:.3f} ms for bare: on 2 shared cores the rate follows CPU per "
            "request, and each cached query also passes the API-key and request-id middleware, body validation, "
            "the existence check, the cache lookup and request metrics in multiprocess files",
        ),
        (
            "cached path p95 < 50 ms", cached["p95_ms"] < 50, f"{cached['p95_ms']:.1f} ms",
            f"bare p95 in the same run was {bare['p95_ms']:.1f} ms; {machine}",
        ),
        (
            "uncached 5-D path p95 < 25 ms", uncached["p95_ms"] < 25, f"{uncached['p95_ms']:.1f} ms",
            f"one query takes p50 {quiet['p50_ms']:.1f} ms / p95 {quiet['p95_ms']:.1f} ms at 2 connections; 100 "
            f"connections on {cores} cores queue about 100 x {quiet['p50_ms']:.1f} / {cores} = {queueing:.0f} ms "
            f"(measured p50 {uncached['p50_ms']:.0f} ms)",
        ),
        *[
            (
                f"create + delete p95 < 200 ms ({label})", rows[name]["p95_ms"] < 200,
                f"{rows[name]['p95_ms']:.0f} ms at {rows[name]['req_per_s']:.0f} req/s" + (
                    f" (before: {rows[name + '_before']['p95_ms']:.0f} ms at "
                    f"{rows[name + '_before']['req_per_s']:.0f} req/s)" if name + "_before" in rows else ""),
                f"at 100 connections the latency is about connections / rate (Little's law): "
                f"{rows[name]['server_cpu_ms_per_request']:.2f} ms of server CPU per request on {cores} cores shared "
                f"with wrk; {machine}",
            )
            for name, label in (("create_delete", "SQLite"), ("create_delete_postgres", "PostgreSQL"))
            if name in rows
        ],
        (
            "0 errors", all(r["errors"] == 0 for r in rows.values()),
            ", ".join(f"{k}: {r['errors']}" for k, r in rows.items()), "see error_detail in load.json",
        ),
    ]  # fmt: skip
    return [{"target": t, "met": met, "measured": m, "cause": None if met else cause} for t, met, m, cause in checks]


def _report(
    rows: dict[str, dict[str, Any]],
    targets: list[dict[str, Any]],
    load: tuple[float, float],
    seconds: int,
    setup: dict[str, Any],
) -> tuple[dict[str, Any], str]:
    """The JSON payload and the Markdown body of the result files."""
    header = [
        "case",
        "conns",
        "req/s",
        "p50 ms",
        "p95 ms",
        "p99 ms",
        "max ms",
        "requests",
        "errors",
        "server CPU ms/req",
    ]
    columns = (
        "case", "connections", "req_per_s", "p50_ms", "p95_ms", "p99_ms", "max_ms", "requests", "errors",
        "server_cpu_ms_per_request",
    )  # fmt: skip
    table = [[r[c] for c in columns] for r in rows.values()]
    verdicts = [[t["target"], "met" if t["met"] else "MISSED", t["measured"], t["cause"] or ""] for t in targets]
    payload = {
        "setup": setup
        | {
            "tool": "wrk 4.1 (2 threads, Lua done hook for percentiles)",
            "server": "catalytic serve --workers 2 (uvicorn, uvloop, httptools), SQLite, no Redis, LOG_LEVEL=WARNING, "
            "inline computations in compute processes (CATALYTIC_COMPUTE_POOL=process)",
            "lattice": {"shape": SHAPE, "obstacles": OBSTACLES},
            "seconds_per_case": seconds,
            "cores": os.cpu_count(),
            "load_average_1min": {"before": load[0], "after": load[1]},
        },
        "rows": list(rows.values()),
        "targets": targets,
    }
    markdown = (
        f"Load generator and servers share the machine's cores. Each measured run follows a 2 s warm-up; bare and "
        f"cached_path alternate over {ROUNDS} rounds and the median round is shown; uncached_path runs {ROUNDS} "
        f"rounds and the round with the median p95 is shown (p95 of each round: "
        f"{', '.join(f'{v:.1f}' for v in rows['uncached_path']['rounds_p95_ms'])} ms). "
        "`uncached_path_2conn` is the uncached query at 2 connections (service time without queueing). "
        "The create + delete rows each run against a fresh server and database: `create_delete` on SQLite "
        "(synchronous FULL, the default), `create_delete_sqlite_normal` with CATALYTIC_SQLITE_SYNCHRONOUS=NORMAL, "
        "`create_delete_postgres` on PostgreSQL; rows ending `_before` are served by the library at "
        f"{setup.get('baseline_rev') or 'no baseline'} (before the write-path changes), in this same run. "
        f"Quiet wait: {json.dumps(setup.get('quiet_wait'))}.\n\n"
        + markdown_table(header, table)
        + "\n\n"
        + markdown_table(["target", "verdict", "measured", "cause (measured in this run)"], verdicts)
        + "\n"
    )
    return payload, markdown


def main(argv: list[str]) -> int:
    """Run the load suite and write bench/results/load.{json,md}."""
    parser = argparse.ArgumentParser(prog="python -m bench load")
    parser.add_argument("--seconds", type=int, default=10, help="duration of each measured wrk run")
    parser.add_argument("--database-url", default=None, help="a PostgreSQL server for the create + delete row")
    parser.add_argument("--baseline-rev", default=None, help="also serve create + delete with catalytic/ at this rev")
    parser.add_argument("--quiet-load", type=float, default=1.5, help="wait for a 1-minute load under this")
    parser.add_argument("--quiet-minutes", type=float, default=30.0, help="at most this long (0: do not wait)")
    args = parser.parse_args(argv)
    wrk = _ensure_wrk()
    quiet = wait_for_quiet(args.quiet_load, args.quiet_minutes) if args.quiet_minutes > 0 else None
    begin_run()  # the load before the measured run, not before the wait
    workdir = Path(tempfile.mkdtemp(prefix="catalytic-load-"))
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("CATALYTIC_", "PROMETHEUS_", "DATABASE_URL", "REDIS_URL"))
    }
    env |= {
        "CATALYTIC_SQLITE_PATH": str(workdir / "catalytic.db"),
        "LOG_LEVEL": "WARNING",
        "METRICS_PORT": str(_free_port()),
    } | UNLIMITED_TENANT
    rows: dict[str, dict[str, Any]] = {}
    load_before = os.getloadavg()[0]
    bare_port = _free_port()
    bare = Server(
        [sys.executable, "-m", "uvicorn", "bench.suite_load:bare_app", "--factory", "--workers", "2",
         "--port", str(bare_port), "--log-level", "warning", "--no-access-log"],
        env, bare_port, "/json", workdir / "bare.log",
    )  # fmt: skip
    port = _free_port()
    service = Server(
        [sys.executable, "-m", "catalytic.cli", "serve", "--workers", "2", "--port", str(port)],
        env, port, "/ready", workdir / "service.log",
    )  # fmt: skip
    try:
        created = httpx.post(
            f"{service.base}/api/lattice/create", json={"shape": SHAPE, "obstacles": OBSTACLES}, timeout=60
        )
        created.raise_for_status()
        lattice_id = created.json()["id"]
        points = _open_points(OPEN_SAMPLE)
        path = {"lattice_id": lattice_id, "start": points[0], "goal": points[1]}
        for _ in range(4):  # both workers: compute once, then hold the answer in L1
            answer = httpx.post(f"{service.base}/api/lattice/path", json=path, timeout=60)
            if answer.status_code != 200:
                raise RuntimeError(f"path query answered {answer.status_code}: {answer.text[:500]}")
        url = f"{service.base}/api/lattice/path"
        bare_pid, service_pid = bare.process.pid, service.process.pid
        _wrk(wrk, f"{bare.base}/json", "", 2, CONNECTIONS, workdir, "warmup", bare_pid)
        _wrk(wrk, url, _post(path), 2, CONNECTIONS, workdir, "warmup", service_pid)
        # Alternate short rounds so both see the same machine; the round with the median rate is reported.
        rounds: dict[str, list[dict[str, Any]]] = {"bare": [], "cached_path": []}
        for _ in range(ROUNDS):
            rounds["bare"].append(
                _wrk(wrk, f"{bare.base}/json", "", args.seconds, CONNECTIONS, workdir, "bare", bare_pid)
            )
            rounds["cached_path"].append(
                _wrk(wrk, url, _post(path), args.seconds, CONNECTIONS, workdir, "cached_path", service_pid)
            )
        for name, runs in rounds.items():
            rows[name] = sorted(runs, key=lambda r: r["req_per_s"])[len(runs) // 2] | {
                "rounds_req_per_s": [r["req_per_s"] for r in runs]
            }
        bare.stop()
        script = _uncached_script(lattice_id, points)
        # Rounds as for the cached path, each on new pairs; the round with the median p95 is reported.
        uncached = [
            _wrk(wrk, url, script.replace("local counter = 0", f"local counter = {r * 200_000}"), args.seconds,
                 CONNECTIONS, workdir, "uncached_path", service_pid)
            for r in range(ROUNDS)
        ]  # fmt: skip
        rows["uncached_path"] = sorted(uncached, key=lambda r: r["p95_ms"])[len(uncached) // 2] | {
            "rounds_p95_ms": [r["p95_ms"] for r in uncached]
        }
        rows["uncached_path_2conn"] = _wrk(wrk, url, script.replace("local counter = 0", "local counter = 1000000"),
                                           args.seconds, 2, workdir, "uncached_path_2conn", service_pid)  # fmt: skip
        service.stop()
        tree = _baseline_tree(args.baseline_rev, workdir) if args.baseline_rev else None
        # Each write row on a fresh server and database; a baseline row right before its current one.
        cases: list[tuple[str, str | None, dict[str, str] | None]] = [("create_delete", None, None)]
        if args.database_url:
            cases.append(("create_delete_postgres", args.database_url, None))
        cases.append(("create_delete_sqlite_normal", None, {"CATALYTIC_SQLITE_SYNCHRONOUS": "NORMAL"}))
        for name, database, extra in cases:
            if tree is not None and extra is None:
                rows[f"{name}_before"] = _write_case(
                    wrk, env, workdir, f"{name}_before", args.seconds, database_url=database, tree=tree
                )
            rows[name] = _write_case(wrk, env, workdir, name, args.seconds, database_url=database, extra=extra)
    finally:
        bare.stop()
        service.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    load = (load_before, os.getloadavg()[0])
    targets = _targets(rows, load)
    setup = {
        "tenant_quotas": UNLIMITED_TENANT,
        "baseline_rev": args.baseline_rev,
        "quiet_wait": quiet,
        "postgres": _postgres_settings(args.database_url) if args.database_url else None,
    }
    payload, markdown = _report(rows, targets, load, args.seconds, setup)
    write_results("load", payload, markdown)
    print(markdown)
    return 0
