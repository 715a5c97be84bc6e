"""Shared helpers for the benchmark suites: timing with warm-up, machine facts, result files."""

from __future__ import annotations

import datetime as dt
import gc
import json
import os
import platform
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).parent / "results"


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
    try:
        load = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        load = []
    return {
        "cpu": cpu,
        # Other work on the machine slows every timing: the 1/5/15-minute load averages at write time say how much.
        "load_average": load,
        "cores": os.cpu_count(),
        "memory_gib": round(mem_gib, 1),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }


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


def write_results(suite: str, payload: dict[str, Any], markdown: str) -> tuple[Path, Path]:
    """Write ``bench/results/<suite>.json`` and ``.md``; the machine facts are added to both."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    facts = machine()
    payload = {"suite": suite, "machine": facts, **payload}
    json_path = RESULTS / f"{suite}.json"
    md_path = RESULTS / f"{suite}.md"
    json_path.write_text(json.dumps(payload, indent=2, default=str) + "\n", encoding="utf-8")
    header = (
        f"# bench: {suite}\n\nMachine: {facts['cpu']}, {facts['cores']} cores, {facts['memory_gib']} GiB, "
        f"Python {facts['python']}; run {facts['date']}; load average {facts['load_average']}.\n\n"
    )
    md_path.write_text(header + markdown.rstrip() + "\n", encoding="utf-8")
    return json_path, md_path
