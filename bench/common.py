"""Shared helpers for the benchmark suites: timing with warm-up, machine facts, result files."""

from __future__ import annotations

import datetime as dt
import gc
import json
import os
import platform
import resource
import statistics
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).parent / "results"
REPO = Path(__file__).resolve().parent.parent

_RUN_START: dict[str, Any] = {}
"""Load average, wall clock and CPU times when the current suite run began (set by :func:`begin_run`)."""


def load_average() -> list[float]:
    """The 1, 5 and 15-minute load averages, rounded; empty where the platform has none."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return []


def cpu_seconds() -> float:
    """CPU seconds (user + system) used so far by this process and its finished children."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def begin_run() -> dict[str, Any]:
    """Note the load average, wall clock and CPU time at the start of a suite run, for :func:`load_facts`."""
    _RUN_START.clear()
    _RUN_START.update(load=load_average(), wall=time.perf_counter(), cpu=cpu_seconds())
    return dict(_RUN_START)


def load_facts(started: dict[str, Any] | None = None) -> dict[str, Any]:
    """The load average before and after a run, and whether other work made the run noisy.

    The 1-minute load after a run counts the run's own threads too, so the run's mean CPU use (its CPU seconds
    over its wall seconds, children included) is taken off before the comparison. A run is noisy when the load
    before it, or the load of other work after it, exceeded the number of cores.
    """
    started = started if started is not None else (_RUN_START or None)
    cores = os.cpu_count() or 1
    after = load_average()
    before = started["load"] if started else []
    own = None
    if started:
        wall = time.perf_counter() - started["wall"]
        own = round((cpu_seconds() - started["cpu"]) / wall, 2) if wall > 0 else 0.0
    others_after = None if not after else round(max(0.0, after[0] - (own or 0.0)), 2)
    over = [x for x in (before[:1] + ([others_after] if others_after is not None else [])) if x > cores]
    return {
        "before": before,
        "after": after,
        "cores": cores,
        "run_cpu_cores": own,
        "others_after_1min": others_after,
        "noisy": bool(over),
    }


def wait_for_quiet(threshold: float, minutes: float, poll_s: float = 60.0) -> dict[str, Any]:
    """Wait until the 1-minute load average is under ``threshold``, polling every ``poll_s``, at most ``minutes``.

    Returns what happened (``quiet``, the loads seen, the seconds waited); a run that starts anyway is marked
    noisy by :func:`load_facts` when the load stays over the core count.
    """
    seen: list[float] = []
    started = time.monotonic()
    while True:
        current = load_average()[:1]
        seen += current
        if not current or current[0] < threshold:
            return {
                "threshold": threshold,
                "quiet": True,
                "loads_seen": seen,
                "waited_s": round(time.monotonic() - started),
            }
        if time.monotonic() - started + poll_s > minutes * 60:
            return {
                "threshold": threshold,
                "quiet": False,
                "loads_seen": seen,
                "waited_s": round(time.monotonic() - started),
            }
        time.sleep(poll_s)


def load_line(load: dict[str, Any]) -> str:
    """One Markdown line on the load average of a run, and a warning when the run was noisy."""
    before = load["before"][0] if load["before"] else "not recorded"
    after = load["after"][0] if load["after"] else "not recorded"
    own = "" if load["run_cpu_cores"] is None else f", of which this run's own mean CPU use {load['run_cpu_cores']}"
    text = f"1-minute load average {before} before and {after} after the run{own}, on {load['cores']} cores"
    if load["noisy"]:
        return f"**Noisy run**: {text}: other work exceeded the core count, so every timing here is slowed by it."
    return f"Quiet run: {text}: other work stayed within the core count."


def machine() -> dict[str, Any]:
    """Facts about the machine a suite ran on, stored beside every result."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        mem_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError):
        mem_gib = float("nan")
    return {
        "cpu": cpu,
        # Other work on the machine slows every timing: the 1/5/15-minute load averages at write time say how much.
        "load_average": load_average(),
        "cores": os.cpu_count(),
        "memory_gib": round(mem_gib, 1),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }


def source_state() -> dict[str, Any]:
    """The commit the code was measured at, and whether the library had uncommitted edits then."""

    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, check=False)
        return done.stdout.strip()

    edited = bool(git("status", "--short", "catalytic"))
    return {"commit": git("rev-parse", "--short", "HEAD"), "catalytic_edited": edited}


def percentile(samples: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100) by linear interpolation."""
    ordered = sorted(samples)
    if not ordered:
        return float("nan")
    pos = (len(ordered) - 1) * q / 100.0
    lo = int(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def measure(fn: Callable[[], Any], repeat: int = 5, warmup: int = 1) -> dict[str, float]:
    """Time ``fn`` after ``warmup`` untimed calls; returns the median and spread in seconds.

    The first call's time is reported separately as ``cold_s`` (it includes JIT compilation or caches
    being filled), so warm figures never mix with compile time.
    """
    t0 = time.perf_counter()
    fn()
    cold = time.perf_counter() - t0
    for _ in range(max(0, warmup - 1)):
        fn()
    samples = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t0)
    return {
        "cold_s": cold,
        "median_s": statistics.median(samples),
        "min_s": min(samples),
        "max_s": max(samples),
        "repeat": repeat,
    }


def timed(fn: Callable[[], Any], repeat: int, *, collect_garbage: bool = False) -> tuple[dict[str, float], Any]:
    """``measure(fn)`` (first call apart, then ``repeat`` timed calls) plus the value of the last call.

    A repeat of 0 times one call only, reported as both first and median. With ``collect_garbage`` a full
    collection runs before the first call, so garbage left by the previous row is not collected inside this one.
    """
    answers: list[Any] = []

    def recorded() -> None:
        answers[:] = [fn()]

    if collect_garbage:
        gc.collect()
    if repeat == 0:
        t0 = time.perf_counter()
        recorded()
        once = time.perf_counter() - t0
        return {"cold_s": once, "median_s": once, "min_s": once, "max_s": once, "repeat": 0}, answers[0]
    return measure(recorded, repeat=repeat, warmup=1), answers[0]


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A GitHub-flavoured Markdown table."""

    def cell(value: Any) -> str:
        if isinstance(value, float):
            return f"{value:.4g}"
        return str(value)

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def write_results(
    suite: str,
    payload: dict[str, Any],
    markdown: str,
    *,
    load_started: dict[str, Any] | None = None,
    plots: bool = True,
) -> tuple[Path, Path]:
    """Write ``bench/results/<suite>.json`` and ``.md``; the machine facts and the run's load are added to both.

    ``load_started`` is the :func:`begin_run` snapshot of this run (default: the last one taken). With ``plots``
    the suite's plots are drawn from the JSON beside the Markdown, which embeds them (``bench.plots``).
    """
    RESULTS.mkdir(parents=True, exist_ok=True)
    facts = machine()
    load = load_facts(load_started)
    facts["load"] = load
    source = source_state()
    payload = {"suite": suite, "machine": facts, "noisy": load["noisy"], "source": source, **payload}
    json_path = RESULTS / f"{suite}.json"
    md_path = RESULTS / f"{suite}.md"
    json_path.write_text(json.dumps(payload, indent=2, default=str) + "\n", encoding="utf-8")
    header = (
        f"# bench: {suite}\n\nMachine: {facts['cpu']}, {facts['cores']} cores, {facts['memory_gib']} GiB, "
        f"Python {facts['python']}; run {facts['date']}; load average {facts['load_average']}.\n\n"
        f"{load_line(load)}\n\nCode: commit {source['commit']}"
        + (" with uncommitted edits to `catalytic/`" if source["catalytic_edited"] else "")
        + ".\n\n"
    )
    md_path.write_text(header + markdown.rstrip() + "\n", encoding="utf-8")
    if plots:
        from bench import plots as drawing

        drawing.refresh(suite, RESULTS)
    return json_path, md_path


BANDWIDTH_BYTES = 256 * 2**20
"""Bytes streamed by :func:`memory_bandwidth`: far past any cache, so the figure is the memory's."""


def memory_bandwidth(size: int = BANDWIDTH_BYTES, repeat: int = 5) -> dict[str, Any]:
    """The sequential memory bandwidth of one core, in GB/s: a streaming read and a streaming copy.

    Measured in the same run as the kernels it is set beside, so that a ``ns per vertex`` figure can be read
    against the time the bytes it must touch take to stream: the read sums ``size`` bytes of uint64 (NumPy's
    reduction streams them), the copy moves them to a second buffer (``np.copyto``, a ``memcpy``; the figure
    counts the bytes read and written). Best of ``repeat``: the other work of a shared machine only slows it.
    """
    import numpy as np

    words = size // 8
    source = np.ones(words, dtype=np.uint64)
    target = np.empty_like(source)
    np.copyto(target, source)  # both buffers resident before timing
    read_s = copy_s = float("inf")
    for _ in range(repeat):
        began = time.perf_counter()
        source.sum()
        read_s = min(read_s, time.perf_counter() - began)
        began = time.perf_counter()
        np.copyto(target, source)
        copy_s = min(copy_s, time.perf_counter() - began)
    return {
        "bytes": words * 8,
        "read_gb_s": round(words * 8 / read_s / 1e9, 2),
        "copy_gb_s": round(2 * words * 8 / copy_s / 1e9, 2),
        "threads": 1,
        "load_average": load_average(),
    }


def bandwidth_floor_ns(bytes_per_vertex: float, bandwidth: dict[str, Any]) -> float:
    """Nanoseconds per vertex to stream ``bytes_per_vertex`` at the measured read bandwidth (GB/s = bytes/ns)."""
    return float(bytes_per_vertex / bandwidth["read_gb_s"])
