"""How the kernels suite times things: whole rows, single queries, and stages called in alternation."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

from bench import common


def timed(fn: Callable[[], Any], repeat: int) -> tuple[dict[str, float], Any]:
    """One row's timing: garbage collected first, the first call apart, then ``repeat`` calls; and the last value."""
    return common.timed(fn, repeat, collect_garbage=True)


def per_query(calls: Sequence[Callable[[], Any]]) -> tuple[list[float], list[Any]]:
    """Time each call on its own with perf_counter; returns the times and the answers."""
    times, answers = [], []
    for call in calls:
        t0 = time.perf_counter()
        answer = call()
        times.append(time.perf_counter() - t0)
        answers.append(answer)
    return times, answers


def query_stats(times: Sequence[float]) -> dict[str, float]:
    """Per-query percentiles in seconds."""
    return {
        "p50_s": common.percentile(times, 50),
        "p99_s": common.percentile(times, 99),
        "mean_s": statistics.fmean(times),
        "max_s": max(times),
        "median_s": common.percentile(times, 50),
        "n": len(times),
    }


def interleaved(stages: dict[str, Callable[[], Any]], repeat: int) -> dict[str, float]:
    """Median seconds of each stage, timed in rounds that call every stage once (after one untimed round).

    Round-robin order keeps a shift in machine load from landing on one stage only.
    """
    for fn in stages.values():
        fn()
    samples: dict[str, list[float]] = {name: [] for name in stages}
    for _ in range(repeat):
        for name, fn in stages.items():
            t0 = time.perf_counter()
            fn()
            samples[name].append(time.perf_counter() - t0)
    return {name: statistics.median(values) for name, values in samples.items()}


def with_overhead(stages: dict[str, float], total: str, parts: Sequence[str]) -> dict[str, float]:
    """Add ``python_overhead``: the measured total minus the measured parts (may be < 0 within noise)."""
    return {**stages, "python_overhead": stages[total] - sum(stages[p] for p in parts)}
