"""How the kernels suite times things: whole rows, cold calls, single queries, and stages called in alternation."""

from __future__ import annotations

import gc
import math
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from bench import common


def timed(fn: Callable[[], Any], repeat: int) -> tuple[dict[str, float], Any]:
    """One row's timing: garbage collected first, the first call apart, then ``repeat`` calls; and the last value."""
    return common.timed(fn, repeat, collect_garbage=True)


class WarmStateError(RuntimeError):
    """A call timed as cold found state that an earlier call had prepared."""


def cold_timed(
    fn: Callable[[], Any], keep: Callable[[Any], Any], is_warm: Callable[[], bool], repeat: int
) -> tuple[dict[str, Any], Any]:
    """Time ``fn`` as a cold call: before every call (untimed) garbage is collected and ``is_warm()`` must be false.

    ``keep`` turns a call's value into what is kept after it (the value itself is dropped at once, so nothing it
    refers to outlives the call). Returns the timing (the first call apart, then ``repeat`` calls, as
    :func:`timed`; ``cold_checked`` counts the calls checked) and what ``keep`` made of the last value.

    Raises
    ------
    WarmStateError
        ``is_warm()`` was true before a call.
    """
    samples: list[float] = []
    kept: Any = None
    for _ in range(1 + max(repeat, 0)):
        gc.collect()
        if is_warm():
            raise WarmStateError("state prepared by an earlier call is still alive before a call timed as cold")
        t0 = time.perf_counter()
        value = fn()
        samples.append(time.perf_counter() - t0)
        kept = keep(value)
        del value
    first, warm = samples[0], samples[1:] or samples
    stats = {
        "cold_s": first,
        "median_s": statistics.median(warm),
        "min_s": min(warm),
        "max_s": max(warm),
        "repeat": repeat,
        "cold_checked": len(samples),
    }
    return stats, kept


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


@dataclass(frozen=True)
class Stage:
    """A timed call, with an untimed ``setup`` whose value it is handed (for inputs a stage consumes)."""

    call: Callable[[Any], Any]
    setup: Callable[[], Any] = lambda: None


def stage(fn: Callable[[], Any]) -> Stage:
    """A stage that needs no set-up."""
    return Stage(lambda _: fn())


def interleaved(stages: Mapping[str, Stage], repeat: int) -> dict[str, list[float]]:
    """Seconds of each stage in each round, timed in rounds that call every stage once (after one untimed round).

    Round-robin order keeps a shift in machine load from landing on one stage only, and lets a total be compared
    with its parts round by round.
    """
    for s in stages.values():
        s.call(s.setup())
    samples: dict[str, list[float]] = {name: [] for name in stages}
    for _ in range(repeat):
        for name, s in stages.items():
            given = s.setup()
            t0 = time.perf_counter()
            s.call(given)
            samples[name].append(time.perf_counter() - t0)
    return samples


def medians(samples: Mapping[str, Sequence[float]]) -> dict[str, float]:
    """The median of each stage's samples."""
    return {name: statistics.median(values) for name, values in samples.items()}


def with_overhead(samples: Mapping[str, Sequence[float]], total: str, parts: Sequence[str]) -> dict[str, float]:
    """Stage medians plus ``python_overhead``: the total minus its parts, round by round, and its median.

    ``python_overhead_se`` is the standard error of that median (1.2533 x 1.4826 x the median absolute deviation
    over sqrt(rounds)), so a reader (and :func:`overhead_problem`) can tell noise from parts that outweigh the total.
    """
    rounds = len(samples[total])
    paired = [samples[total][i] - sum(samples[p][i] for p in parts) for i in range(rounds)]
    centre = statistics.median(paired)
    mad = statistics.median(abs(x - centre) for x in paired)
    se = 1.2533 * 1.4826 * mad / math.sqrt(rounds)
    return {**medians(samples), "python_overhead": centre, "python_overhead_se": se}


OVERHEAD_SIGMAS = 3.0
"""A profile is refused when its overhead is negative by more than this many standard errors."""


def overhead_problem(stages: Mapping[str, float]) -> str | None:
    """Why a profile cannot be published (its parts add up to more than its total), or None."""
    if "python_overhead" not in stages:
        return None
    overhead, se = stages["python_overhead"], stages.get("python_overhead_se", 0.0)
    if overhead + OVERHEAD_SIGMAS * se < 0:
        return (
            f"the stages add up to more than the total: overhead {overhead * 1e3:.4g} ms "
            f"(standard error {se * 1e3:.2g} ms) is negative"
        )
    return None
