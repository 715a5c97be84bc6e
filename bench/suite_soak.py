"""``python -m bench soak``: a long run at half the measured maximum rate of a mixed load, watching errors and RSS.

One ``catalytic serve --workers 2`` (embedded SQLite, or ``--database-url``) takes a mix of requests from wrk:
44 % the same path query (answered from L1), 20 % a new start/goal pair each time (computed), 10 % creates,
10 % deletes of what was created (at most 200 left per wrk thread), 14 % reads of a stored lattice and 2 % small
jobs (a shortest path on an
inline 20^3 lattice, queued and run by the job workers; at 10 % they outran the job workers of 2 cores and the
queue limit refused them).

First the mix runs flat out for ``--probe-seconds`` at 50 connections: its rate of answered requests (errors
left out) is the measured maximum. Once the jobs the probe left queued have finished, the
soak runs for ``--minutes`` in one-minute segments at half that rate: each of 20 connections waits between its
requests (wrk's ``delay``), and the wait is corrected after every segment toward the target. Every 5 s the suite
sums the RSS of the server's process tree (supervisor, server processes, compute and job workers). At the end it
counts the jobs by status in the database.

Targets: 0 errors (wrk's connect, read, write, timeout and non-2xx/3xx counts, and failed jobs); RSS growth
under 5 % from minute 2 to the last minute.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from bench.common import begin_run, markdown_table, wait_for_quiet, write_results
from bench.suite_load import (
    OBSTACLES,
    SHAPE,
    UNLIMITED_TENANT,
    Server,
    _ensure_wrk,
    _free_port,
    _fresh_database,
    _open_points,
    _wrk,
)

PROBE_CONNECTIONS = 50
SOAK_CONNECTIONS = 20
SAMPLE_S = 5.0
JOB = '{"operation": "shortest_path", "lattice": {"shape": [20, 20, 20]}, "params": {"start": [0, 0, 0], "goal": [19, 19, 19]}}'  # noqa: E501


def _mix_script(lattice_id: str, coords: list[list[int]], delay_ms: float, offset: int) -> str:
    """The mixed workload as a wrk Lua script; ``delay_ms`` (0: none) paces each connection."""
    table = ",".join("{" + ",".join(str(c) for c in point) + "}" for point in coords)
    return f"""
local points = {{{table}}}
local n = #points
local counter = {offset}
local pending = {{}}
local threads_seen = 0
local MAX_PENDING = 200
local threads = {{}}
statuses = {{}}
firsts = {{}}
setup = function(thread)
  thread:set("thread_id", threads_seen)
  threads_seen = threads_seen + 1
  table.insert(threads, thread)
end
local json = {{["Content-Type"] = "application/json"}}
local function coords(p) return "[" .. table.concat(p, ",") .. "]" end
local function path(a, b)
  return wrk.format("POST", "/api/lattice/path", json,
    '{{"lattice_id": "{lattice_id}", "start": ' .. coords(a) .. ', "goal": ' .. coords(b) .. '}}')
end
local create = '{{"shape": [8, 8, 8], "obstacles": [{{"kind": "random", "p": 0.1, "seed": 3}}]}}'
request = function()
  counter = counter + 1
  local k = counter * 2 + (thread_id or 0)
  local kind = k % 50
  if kind <= 21 then
    return path(points[1], points[2])
  elseif kind <= 31 then
    return path(points[(k % n) + 1], points[((math.floor(k / n) + k + 1) % n) + 1])
  elseif kind <= 41 then
    -- Creates and deletes in equal shares, the lattices stored by the mix bounded: a thread holding
    -- MAX_PENDING of its own deletes one in a create's turn, and reads one in a delete's turn when it holds none
    -- (a create there would let the store grow until the service's MAX_LATTICES answers 503).
    if kind <= 36 and #pending < MAX_PENDING then
      return wrk.format("POST", "/api/lattice/create", json, create)
    end
    local id = table.remove(pending, 1)
    if id then return wrk.format("DELETE", "/api/lattice/" .. id) end
    return wrk.format("GET", "/api/lattice/{lattice_id}")
  elseif kind <= 48 then
    return wrk.format("GET", "/api/lattice/{lattice_id}")
  end
  return wrk.format("POST", "/api/jobs", json, '{JOB}')
end
response = function(status, headers, body)
  if status == 201 then
    local id = string.match(body, '"id":"([^"]+)"')
    if id then table.insert(pending, id) end
  end
  -- Answers by status, and by the error's code for the others: what the errors column is made of.
  local key = tostring(status)
  if status >= 400 then
    key = key .. " " .. (string.match(body, '"code":"([^"]+)"') or "?")
    firsts[key] = firsts[key] or string.gsub(string.match(body, '"detail":"([^"]*)"') or "", "[\\\\]", "")
  end
  statuses[key] = (statuses[key] or 0) + 1
end
report = function()
  local merged = {{}}
  local detail = {{}}
  for _, thread in ipairs(threads) do
    for key, n in pairs(thread:get("statuses")) do merged[key] = (merged[key] or 0) + n end
    for key, text in pairs(thread:get("firsts")) do detail[key] = detail[key] or text end
  end
  for key, text in pairs(detail) do merged[key .. " | " .. text] = merged[key] end
  local parts = {{}}
  for key, n in pairs(merged) do table.insert(parts, string.format('"%s": %d', key, n)) end
  io.write("WRKSTATUS {{" .. table.concat(parts, ", ") .. "}}\\n")
end
delay = function() return {delay_ms:.3f} end
"""


def _tree_rss(pid: int) -> int:
    """Resident bytes of a process and all its descendants (from /proc)."""
    total, pending = 0, [pid]
    page = os.sysconf("SC_PAGE_SIZE")
    while pending:
        current = pending.pop()
        try:
            total += int(Path(f"/proc/{current}/statm").read_text().split()[1]) * page
            for task in Path(f"/proc/{current}/task").iterdir():
                pending += [int(c) for c in (task / "children").read_text().split()]
        except (OSError, IndexError, ValueError):
            continue
    return total


class RssSampler:
    """Samples the RSS of a process tree every ``SAMPLE_S`` seconds on a thread."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.samples: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._started = time.monotonic()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.samples.append((time.monotonic() - self._started, _tree_rss(self.pid)))
            self._stop.wait(SAMPLE_S)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def _job_statuses(database_url: str | None, sqlite_path: Path) -> dict[str, int]:
    """Jobs by status at the end, and (under ``lattices stored``) the lattices the mix left stored."""
    sql = (
        "SELECT status, count(*) AS n FROM service_jobs GROUP BY status "
        "UNION ALL SELECT 'lattices stored', count(*) FROM service_lattices"
    )
    if database_url:
        import asyncpg

        async def read() -> dict[str, int]:
            conn = await asyncpg.connect(database_url)
            try:
                return {r["status"]: int(r["n"]) for r in await conn.fetch(sql)}
            finally:
                await conn.close()

        return asyncio.run(read())
    with sqlite3.connect(sqlite_path) as conn:
        return {status: int(n) for status, n in conn.execute(sql)}


def _drain_jobs(database_url: str | None, sqlite_path: Path, limit_s: float = 300.0) -> float:
    """Wait until no job is queued or running (the flat-out probe leaves a backlog by design); seconds waited."""
    began = time.monotonic()
    while time.monotonic() - began < limit_s:
        statuses = _job_statuses(database_url, sqlite_path)
        if not statuses.get("queued") and not statuses.get("running"):
            break
        time.sleep(0.5)
    return round(time.monotonic() - began, 1)


def _not_ok(minute: dict[str, Any]) -> str:
    """The answers outside 2xx by status, error code and first detail, e.g. ``503 unavailable | ...: 12``, or ``-``."""
    answers = minute.get("by_status", {})
    # Each error status comes twice: "503 unavailable" and "503 unavailable | <the first answer's detail>".
    counts = {k: n for k, n in answers.items() if not k.startswith("2") and " | " in k}
    counts = counts or {k: n for k, n in answers.items() if not k.startswith("2")}
    return ", ".join(f"{k}: {n}" for k, n in counts.items()) or "-"


def _targets(minutes: list[dict[str, Any]], jobs: dict[str, int], growth: float | None) -> list[dict[str, Any]]:
    errors = sum(m["errors"] for m in minutes)
    failed = jobs.get("failed", 0)
    measured = f"{errors} request errors, {failed} of {sum(jobs.values())} jobs failed"
    checks = [
        ("0 errors", errors == 0 and failed == 0, measured),
        (
            "RSS growth < 5 % from minute 2 to the last minute",
            growth is not None and growth < 5.0,
            "not measured (run shorter than 3 minutes)" if growth is None else f"{growth:+.2f} %",
        ),
    ]  # fmt: skip
    return [{"target": t, "met": met, "measured": m} for t, met, m in checks]


def main(argv: list[str]) -> int:
    """Run the soak suite and write bench/results/soak.{json,md}."""
    parser = argparse.ArgumentParser(prog="python -m bench soak")
    parser.add_argument("--minutes", type=int, default=10, help="length of the soak (one-minute segments)")
    parser.add_argument("--probe-seconds", type=int, default=15, help="length of the flat-out run")
    parser.add_argument("--database-url", default=None, help="a PostgreSQL server (default: embedded SQLite)")
    parser.add_argument("--quiet-load", type=float, default=1.5, help="wait for a 1-minute load under this")
    parser.add_argument("--quiet-minutes", type=float, default=30.0, help="at most this long (0: do not wait)")
    args = parser.parse_args(argv)
    wrk = _ensure_wrk()
    quiet = wait_for_quiet(args.quiet_load, args.quiet_minutes) if args.quiet_minutes > 0 else None
    begin_run()
    workdir = Path(tempfile.mkdtemp(prefix="catalytic-soak-"))
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("CATALYTIC_", "PROMETHEUS_", "DATABASE_URL", "REDIS_URL"))
    }
    sqlite_path = workdir / "catalytic.db"
    env |= {"CATALYTIC_SQLITE_PATH": str(sqlite_path), "LOG_LEVEL": "WARNING", "METRICS_PORT": "0"} | UNLIMITED_TENANT
    if args.database_url:
        env["DATABASE_URL"] = _fresh_database(args.database_url, "bench_soak")
        subprocess.run([sys.executable, "-m", "catalytic.cli", "migrate"], env=env, check=True, cwd=workdir)
    port = _free_port()
    service = Server(
        [sys.executable, "-m", "catalytic.cli", "serve", "--workers", "2", "--port", str(port)],
        env, port, "/ready", workdir / "service.log",
    )  # fmt: skip
    minutes: list[dict[str, Any]] = []
    sampler: RssSampler | None = None
    try:
        created = httpx.post(f"{service.base}/api/lattice/create", json={"shape": SHAPE, "obstacles": OBSTACLES})
        created.raise_for_status()
        lattice_id = created.json()["id"]
        points = _open_points(1500)
        pid = service.process.pid
        _wrk(wrk, f"{service.base}/", _mix_script(lattice_id, points, 0, 0), 3, PROBE_CONNECTIONS, workdir,
             "warmup", pid)  # fmt: skip
        probe = _wrk(wrk, f"{service.base}/", _mix_script(lattice_id, points, 0, 10_000_000), args.probe_seconds,
                     PROBE_CONNECTIONS, workdir, "probe", pid)  # fmt: skip
        target = (probe["requests"] - probe["errors"]) / probe["duration_s"] / 2
        probe["backlog_drained_s"] = _drain_jobs(env.get("DATABASE_URL"), sqlite_path)
        delay_ms = 1000.0 * SOAK_CONNECTIONS / target
        sampler = RssSampler(pid)
        for minute in range(args.minutes):
            script = _mix_script(lattice_id, points, delay_ms, 20_000_000 * (minute + 2))
            row = _wrk(wrk, f"{service.base}/", script, 60, SOAK_CONNECTIONS, workdir, f"minute_{minute + 1}", pid)
            row |= {"minute": minute + 1, "delay_ms": round(delay_ms, 2), "rss_mib": round(_tree_rss(pid) / 2**20, 1)}
            minutes.append(row)
            # Toward the target rate: the wait per request shrinks by the time the answers themselves took.
            delay_ms = max(0.0, delay_ms * row["req_per_s"] / target - (target - row["req_per_s"]) / target * 5)
        sampler.stop()
        time.sleep(2)  # the last jobs finish
        jobs = _job_statuses(env.get("DATABASE_URL"), sqlite_path)
        stored = jobs.pop("lattices stored", 0)
    finally:
        if sampler is not None:
            sampler.stop()
        service.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    growth = None
    if sampler is not None and args.minutes >= 3:
        # Means over minute 2 and over the last minute: a job worker replaced after its N jobs moves single samples.
        minute_two = [b for t, b in sampler.samples if 60.0 <= t < 120.0]
        last = [b for t, b in sampler.samples if t >= sampler.samples[-1][0] - 60.0]
        growth = 100.0 * (statistics.mean(last) - statistics.mean(minute_two)) / statistics.mean(minute_two)
    targets = _targets(minutes, jobs, growth)
    rss = [{"second": round(t, 1), "rss_mib": round(b / 2**20, 1)} for t, b in (sampler.samples if sampler else [])]
    mix = {"cached_path": 0.44, "uncached_path": 0.2, "create": 0.1, "delete": 0.1, "read": 0.14, "job": 0.02}
    payload: dict[str, Any] = {
        "setup": {
            "server": "catalytic serve --workers 2, " + ("PostgreSQL" if args.database_url else "SQLite (embedded)"),
            "mix": mix,
            "probe": probe,
            "target_req_per_s": round(target, 1),
            "minutes": args.minutes,
            "soak_connections": SOAK_CONNECTIONS,
            "tenant_quotas": UNLIMITED_TENANT,
            "quiet_wait": quiet,
        },
        "minutes": minutes,
        "rss": rss,
        "jobs": jobs,
        "lattices_stored_at_end": stored,
        "rss_growth_pct_minute2_to_end": None if growth is None else round(growth, 2),
        "targets": targets,
    }
    header = ["minute", "req/s", "p50 ms", "p95 ms", "p99 ms", "max ms", "requests", "errors", "not 2xx", "RSS MiB"]
    table = [
        [m["minute"], m["req_per_s"], m["p50_ms"], m["p95_ms"], m["p99_ms"], m["max_ms"], m["requests"], m["errors"],
         _not_ok(m), m["rss_mib"]]
        for m in minutes
    ]  # fmt: skip
    verdicts = [[t["target"], "met" if t["met"] else "MISSED", t["measured"]] for t in targets]
    mean_rate = statistics.mean(m["req_per_s"] for m in minutes) if minutes else 0.0
    markdown = (
        f"Mixed load ({', '.join(f'{k} {int(100 * v)} %' for k, v in mix.items())}) on "
        f"{payload['setup']['server']}. Flat out at {PROBE_CONNECTIONS} connections for {args.probe_seconds} s the "
        f"mix ran at {probe['req_per_s']:.0f} req/s (p95 {probe['p95_ms']:.0f} ms), and the jobs it left queued "
        f"finished {probe.get('backlog_drained_s', 0):g} s later, before the soak began; the soak aimed at half, "
        f"{target:.0f} req/s, over {SOAK_CONNECTIONS} paced connections for {args.minutes} minutes and ran at "
        f"{mean_rate:.0f} req/s on average. Jobs by status at the end: {jobs}; lattices left stored: {stored}. "
        "RSS is the sum over the server's "
        f"process tree, sampled every {SAMPLE_S:.0f} s; its growth compares the mean over minute 2 with the mean "
        f"over the last minute. Quiet wait: {quiet}.\n\n"
        + markdown_table(header, table)
        + "\n\n"
        + markdown_table(["target", "verdict", "measured"], verdicts)
        + "\n"
    )
    write_results("soak", payload, markdown, plots=False)
    print(markdown)
    return 0
