"""Plots of the suites' results, drawn from their JSON files and embedded in their Markdown.

Every suite that has a plotter here gets PNG files ``<suite>-<name>.png`` beside ``<suite>.md``, and a "Plots"
section at the end of that Markdown (between two HTML comments, so a redraw replaces it). ``python -m bench
plots`` redraws them from the stored JSON without running anything.

Times are drawn on log scales where the implementations differ by orders of magnitude; each plot names its
units and, where there is one, its baseline or target.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

BEGIN = "<!-- plots: drawn by bench/plots.py from the JSON; `python -m bench plots` redraws them -->"
END = "<!-- /plots -->"

OURS = "#1f77b4"
PEER = "#9a9a9a"
PEER_ALT = "#e07b39"
TARGET = "#d62728"
DPI = 110


@dataclass
class Plot:
    """One figure of a suite: its file name part, its caption in the Markdown, and the figure itself."""

    name: str
    caption: str
    figure: Any


def pyplot() -> Any:
    """matplotlib's pyplot on the Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def ms(seconds: float) -> float:
    return seconds * 1e3


def hbars(ax: Any, labels: Sequence[str], values: Sequence[float], colors: Sequence[str], **kw: Any) -> Any:
    """Horizontal bars, first label on top."""
    positions = list(range(len(labels)))[::-1]
    bars = ax.barh(positions, values, color=colors, **kw)
    ax.set_yticks(positions, labels)
    return bars


def number(value: float) -> str:
    """Three significant figures, without exponents for large values."""
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"


def label_bars(ax: Any, bars: Any, values: Sequence[float], unit: str) -> None:
    """Write each bar's value at its end."""
    for bar, value in zip(bars, values, strict=True):
        middle = bar.get_y() + bar.get_height() / 2
        ax.text(bar.get_width() * 1.08, middle, f"{number(value)} {unit}", va="center", fontsize=7)


# ---- kernels ---------------------------------------------------------------------------------------------------


TASK_TITLES = {
    "path": "shortest path, corner to corner",
    "components": "components",
    "distance_field": "distance field",
}


def kernels_case(name: str, case: dict[str, Any]) -> Plot | None:
    """Build + query time of every row of one case, per task, log scale; catalytic's rows in blue."""
    rows = case["rows"]
    if not rows:
        return None
    plt = pyplot()
    tasks = list(dict.fromkeys(r["task"] for r in rows))
    heights = [sum(r["task"] == t for r in rows) for t in tasks]
    fig, axes = plt.subplots(
        len(tasks),
        1,
        figsize=(9.5, 0.32 * sum(heights) + 1.2 * len(tasks) + 0.6),
        squeeze=False,
        gridspec_kw={"height_ratios": heights},
    )
    facts = case["facts"]
    shape = "x".join(map(str, facts["shape"]))
    fig.suptitle(f"kernels {name}: {shape} lattice, {facts['obstacle_density']:.0%} obstacles", fontsize=11)
    for ax, task in zip(axes[:, 0], tasks, strict=True):
        mine = [r for r in rows if r["task"] == task]
        labels = [r["impl"] for r in mine]
        totals = [ms(r["total_s"]) for r in mine]
        queries = [ms(r["query"]["median_s"]) for r in mine]
        colors = [OURS if r["impl"].startswith("catalytic") else PEER for r in mine]
        bars = hbars(ax, labels, totals, colors, height=0.75, alpha=0.45, label="build + query")
        hbars(ax, labels, queries, colors, height=0.35, label="query alone")
        label_bars(ax, bars, totals, "ms")
        ax.set_xscale("log")
        ax.set_xlim(min(queries + totals) / 3, max(totals) * 12)
        ax.set_title(TASK_TITLES.get(task, task), fontsize=9, loc="left")
        ax.tick_params(axis="y", labelsize=7)
        ax.grid(axis="x", which="major", alpha=0.3)
    axes[-1, 0].set_xlabel("median time per call, ms (log scale); wide bar = build + query, narrow bar = query alone")
    axes[0, 0].legend(
        handles=[plt.Rectangle((0, 0), 1, 1, color=OURS), plt.Rectangle((0, 0), 1, 1, color=PEER)],
        labels=["catalytic", "peer"],
        fontsize=7,
        loc="lower right",
    )
    fig.tight_layout()
    caption = (
        f"{name}: median time per call of each implementation (log scale). Wide bars: build + query (catalytic's "
        "end-to-end rows include building the lattice and its mask); narrow bars: the query alone."
    )
    return Plot(name, caption, fig)


def kernels_pairs(case: dict[str, Any]) -> Plot | None:
    """p50 and p99 per query of every implementation over the random pairs."""
    pairs = case["pairs"]
    if not pairs:
        return None
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(9.5, 0.45 * len(pairs) + 1.4))
    labels = [f"{p['impl']} (n={p['n']})" for p in pairs]
    colors = [OURS if p["impl"].startswith("catalytic") else PEER for p in pairs]
    p99 = [ms(p["p99_s"]) for p in pairs]
    p50 = [ms(p["p50_s"]) for p in pairs]
    bars = hbars(ax, labels, p99, colors, height=0.75, alpha=0.45)
    hbars(ax, labels, p50, colors, height=0.35)
    label_bars(ax, bars, p99, "ms p99")
    ax.set_xscale("log")
    ax.set_xlim(min(p50) / 3, max(p99) * 15)
    ax.tick_params(axis="y", labelsize=7)
    ax.grid(axis="x", alpha=0.3)
    ax.set_xlabel("time per query, ms (log scale); wide bar = p99, narrow bar = p50")
    ax.set_title("kernels 5d-pairs: random same-component pairs on 5-D 10^5, each query timed alone", fontsize=10)
    fig.tight_layout()
    return Plot("5d-pairs", "5d-pairs: per-query p50 (narrow) and p99 (wide) on prebuilt structures, log scale.", fig)


def kernels_plots(payload: dict[str, Any]) -> list[Plot]:
    plots = []
    for name, case in payload["cases"].items():
        plot = kernels_pairs(case) if case["pairs"] else kernels_case(name, case)
        if plot:
            plots.append(plot)
    return plots


# ---- memory ----------------------------------------------------------------------------------------------------


def memory_plots(payload: dict[str, Any]) -> list[Plot]:
    """Bytes per vertex of what catalytic holds or allocates, against the explicit-graph baselines, per case."""
    plt = pyplot()
    rows = payload["search"]
    cases = list(dict.fromkeys(r["case"] for r in rows))
    whats = list(dict.fromkeys(r["what"] for r in rows))
    series: list[tuple[str, list[float], str]] = []
    shades = ["#1f77b4", "#4a9fd8", "#9ccaf0"]
    per_vertex = {(r["case"], r["what"]): r["measured_bytes"] / r["vertices"] for r in rows}
    for i, what in enumerate(whats):
        values = [per_vertex[c, what] for c in cases]
        series.append((f"catalytic: {what}", values, shades[i % len(shades)]))
    first = {c: next(r for r in rows if r["case"] == c) for c in cases}
    for key, label, color in (
        ("igraph_bytes", "baseline: igraph graph (32 B/edge + 16 B/vertex)", PEER),
        ("csr_bytes", "baseline: SciPy CSR, both directions", PEER_ALT),
        ("dense_bitmap_bytes", "baseline: dense adjacency bitmap (V²/8)", "#b0b0b0"),
    ):
        series.append((label, [first[c][key] / first[c]["vertices"] for c in cases], color))
    fig, ax = plt.subplots(figsize=(10, 5.2))
    width = 0.8 / len(series)
    for i, (label, values, color) in enumerate(series):
        xs = [j + (i - (len(series) - 1) / 2) * width for j in range(len(cases))]
        ax.bar(xs, values, width=width, label=label, color=color, edgecolor="white", linewidth=0.4)
    ax.set_yscale("log")
    ax.set_xticks(range(len(cases)), [f"{c}\n{first[c]['vertices']:,} vertices" for c in cases], fontsize=8)
    ax.set_ylabel("bytes per vertex (log scale)")
    ax.set_title("memory: bytes per vertex, catalytic against explicit-graph baselines (same lattice)", fontsize=10)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", ncol=2)
    ax.set_ylim(top=max(max(v) for _, v, _ in series) * 30)
    fig.tight_layout()
    caption = "Bytes per vertex of each measured row against the igraph, CSR and dense-bitmap baselines (log scale)."
    return [Plot("bytes-per-vertex", caption, fig)]


# ---- load ------------------------------------------------------------------------------------------------------


def load_plots(payload: dict[str, Any]) -> list[Plot]:
    """Latency percentiles per case, and throughput against bare Starlette."""
    plt = pyplot()
    rows = payload["rows"]
    labels = [f"{r['case']}\n({r['connections']} conn.)" for r in rows]
    fig, ax = plt.subplots(figsize=(9.5, 4.6))
    keys = [("p50_ms", "p50", "#9ccaf0"), ("p95_ms", "p95", "#4a9fd8"), ("p99_ms", "p99", "#1f4f7a")]
    width = 0.26
    for i, (key, label, color) in enumerate(keys):
        xs = [j + (i - 1) * width for j in range(len(rows))]
        ax.bar(xs, [r[key] for r in rows], width=width, label=label, color=color)
    ax.set_yscale("log")
    ax.set_xticks(range(len(rows)), labels, fontsize=8)
    ax.set_ylabel("request latency, ms (log scale)")
    ax.set_title("load: latency percentiles per case (wrk, server on the same 2-core machine)", fontsize=10)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    latency = Plot("latency", "Latency percentiles (p50, p95, p99) of each load case, log scale.", fig)

    fig, ax = plt.subplots(figsize=(9.5, 4.4))
    bare = next((r for r in rows if r["case"] == "bare"), None)
    colors = [PEER if r["case"] == "bare" else OURS for r in rows]
    bars = ax.bar(range(len(rows)), [r["req_per_s"] for r in rows], color=colors)
    for bar, r in zip(bars, rows, strict=True):
        share = f"\n{r['req_per_s'] / bare['req_per_s']:.0%} of bare" if bare and r is not bare else ""
        ax.text(
            bar.get_x() + bar.get_width() / 2,
            bar.get_height(),
            f"{r['req_per_s']:,.0f}{share}",
            ha="center",
            va="bottom",
            fontsize=7,
        )
    if bare:
        ax.axhline(bare["req_per_s"], color=PEER, linestyle="--", linewidth=1, label="bare Starlette (baseline)")
        ax.legend(fontsize=8)
    ax.set_xticks(range(len(rows)), labels, fontsize=8)
    ax.set_ylabel("throughput, requests per second")
    ax.set_title("load: throughput per case against a bare Starlette app on the same server stack", fontsize=10)
    ax.set_ylim(top=max(r["req_per_s"] for r in rows) * 1.2)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    throughput = Plot("throughput", "Requests per second of each case; the dashed line is bare Starlette.", fig)
    return [latency, throughput]


# ---- webhooks --------------------------------------------------------------------------------------------------


def webhooks_plots(payload: dict[str, Any]) -> list[Plot]:
    """Delivery throughput and event-to-delivery latency per database, against the targets."""
    plt = pyplot()
    runs = payload["runs"]
    targets = payload["targets"]
    names = [r["database"] for r in runs]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4.2))
    rates = [r["throughput"]["deliveries_per_s"] for r in runs]
    bars = left.bar(range(len(runs)), rates, color=OURS)
    for bar, rate in zip(bars, rates, strict=True):
        left.text(bar.get_x() + bar.get_width() / 2, rate, f"{rate:,.0f}", ha="center", va="bottom", fontsize=8)
    left.axhline(
        targets["deliveries_per_s"],
        color=TARGET,
        linestyle="--",
        linewidth=1,
        label=f"target {targets['deliveries_per_s']:,.0f}/s",
    )
    left.set_xticks(range(len(runs)), names, fontsize=8)
    left.set_ylabel("deliveries per second")
    left.set_title("throughput (batch of events, one worker)", fontsize=9)
    left.set_ylim(top=max(rates) * 1.2)
    left.legend(fontsize=8)
    keys = [("p50_s", "p50", "#9ccaf0"), ("p95_s", "p95", "#4a9fd8"), ("max_s", "max", "#1f4f7a")]
    for i, (key, label, color) in enumerate(keys):
        xs = [j + (i - 1) * 0.26 for j in range(len(runs))]
        right.bar(xs, [ms(r["latency"][key]) for r in runs], width=0.26, label=label, color=color)
    right.axhline(
        ms(targets["p95_s"]),
        color=TARGET,
        linestyle="--",
        linewidth=1,
        label=f"target p95 {ms(targets['p95_s']):,.0f} ms",
    )
    right.set_yscale("log")
    right.set_xticks(range(len(runs)), names, fontsize=8)
    right.set_ylabel("event to delivery, ms (log scale)")
    right.set_title("latency at a steady event rate", fontsize=9)
    right.legend(fontsize=8)
    fig.suptitle("webhooks: delivery throughput and latency per database", fontsize=10)
    fig.tight_layout()
    caption = "Deliveries per second and event-to-delivery latency per database; dashed lines are the targets."
    return [Plot("delivery", caption, fig)]


# ---- ray -------------------------------------------------------------------------------------------------------


def ray_plots(payload: dict[str, Any]) -> list[Plot]:
    """Query throughput against the number of Ray workers, with linear scaling and the controls beside it."""
    plt = pyplot()
    workers = sorted(int(k) for k in payload["ray"])
    rates = [payload["ray"][str(w)]["queries_per_s"] for w in workers]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10.5, 4.2), gridspec_kw={"width_ratios": [1.2, 1]})
    left.plot(workers, rates, marker="o", color=OURS, label="catalytic on Ray (whole call)")
    left.plot(
        workers, [rates[0] * w / workers[0] for w in workers], linestyle="--", color=PEER, label="linear from 1 worker"
    )
    left.axhline(payload["in_process_queries_per_s"], color=PEER_ALT, linestyle=":", label="in process, one core")
    if "speed_target" in payload:
        left.axhline(
            payload["in_process_queries_per_s"] * payload["speed_target"],
            color=TARGET,
            linestyle="--",
            linewidth=1,
            label=f"target: 2 workers {payload['speed_target']}x in process",
        )
    for w, rate in zip(workers, rates, strict=True):
        left.annotate(f"{rate:,.0f}/s", (w, rate), textcoords="offset points", xytext=(-8, 8), ha="right", fontsize=8)
    left.set_xticks(workers)
    left.set_xlabel("Ray workers")
    left.set_ylabel("queries per second")
    top = payload["in_process_queries_per_s"] * payload.get("speed_target", 1.0)
    left.set_ylim(bottom=0, top=max([*rates, top]) * 1.25)
    left.set_title(
        f"scaling: {payload['pairs']:,} path queries, 2 over 1 = {payload['scaling_2_over_1']:.2f}x", fontsize=9
    )
    left.legend(fontsize=7, loc="lower right")
    controls = [("Ray", payload["scaling_2_over_1"])]
    if "control_plain_processes" in payload:
        controls.append(("plain\nprocesses", payload["control_plain_processes"]["throughput_2_over_1"]))
    for when, entry in payload.get("control_parallel_capacity", {}).items():
        controls.append((f"spin tasks\n({when})", entry["throughput_2_over_1"]))
    bars = right.bar(range(len(controls)), [c[1] for c in controls], color=[OURS] + [PEER] * (len(controls) - 1))
    for bar, (_, value) in zip(bars, controls, strict=True):
        right.text(bar.get_x() + bar.get_width() / 2, value, f"{value:.2f}x", ha="center", va="bottom", fontsize=8)
    if "scaling_share_target" in payload and "control_plain_processes" in payload:
        share = payload["scaling_share_target"]
        right.axhline(
            share * payload["control_plain_processes"]["throughput_2_over_1"],
            color=TARGET,
            linestyle="--",
            linewidth=1,
            label=f"target: Ray {share:.0%} of plain processes",
        )
    else:  # results from before the share target
        right.axhline(payload["scaling_target"], color=TARGET, linestyle="--", linewidth=1,
                      label=f"target {payload['scaling_target']}x")  # fmt: skip
    right.set_xticks(range(len(controls)), [c[0] for c in controls], fontsize=7)
    right.set_ylabel("throughput, 2 workers over 1 (x)")
    right.set_ylim(0, 2.3)
    right.set_title("2-over-1 scaling against the machine's own controls", fontsize=9)
    right.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    caption = "Ray batch throughput by worker count against linear scaling, and the 2-over-1 ratio beside controls."
    return [Plot("scaling", caption, fig)]


# ---- giant -----------------------------------------------------------------------------------------------------


def giant_plots(payload: dict[str, Any]) -> list[Plot]:
    """RSS over time of the giant run, stage by stage (or, for a run that kept no series, its measured parts)."""
    plt = pyplot()
    result = payload["result"]
    series = result.get("rss_series")
    fig, ax = plt.subplots(figsize=(9.5, 4.6))
    mib = 2**20
    target = 1.5 * 1024
    ax.axhline(target, color=TARGET, linestyle="--", linewidth=1, label="target: peak RSS 1.5 GiB")
    if series:
        times = [point[0] for point in series]
        ax.plot(times, [point[1] for point in series], color=OURS, linewidth=1.5, label="resident set (RSS)")
        starts: dict[str, float] = {}
        for t, _, stage in series:
            starts.setdefault(stage, t)
        bounds = [*starts.values(), times[-1]]
        for i, stage in enumerate(starts):
            lo, hi = bounds[i], bounds[i + 1]
            ax.axvspan(lo, hi, alpha=0.08 + 0.08 * (i % 2), color=PEER)
            ax.text((lo + hi) / 2, target * 0.05, stage, ha="center", va="bottom", fontsize=7, rotation=90)
        ax.set_xlabel("time since the measuring process started, s")
        title = "giant: resident set over time"
        caption = (
            "Resident set size of the measuring process over time (sampled every 0.1 s); the bands are the stages."
        )
    else:
        parts = [
            ("interpreter + JIT (after warm-up)", result["rss_after_warm_mib"]),
            ("open bits (1 bit/vertex)", result["open_bits_bytes"] / mib),
            ("search state (tiles: open + 2 code bits a vertex)", result["state_bytes"] / mib),
            (
                "search scratch (edge flags, summaries, level lists)",
                result.get("search_scratch_bytes", result.get("frontier_bitmap_bytes", 0)) / mib,
            ),
        ]
        bottom = 0.0
        for i, (label, value) in enumerate(parts):
            color = ["#cfe3f5", "#9ccaf0", "#4a9fd8", "#1f77b4"][i]
            ax.bar([0], [value], bottom=bottom, color=color, label=f"{label}: {value:,.0f} MiB")
            bottom += value
        peak = result["peak_rss_mib"]
        ax.bar([1], [peak], color="#555555", label=f"measured peak RSS (ru_maxrss): {peak:,.0f} MiB")
        ax.set_xticks([0, 1], ["allocated parts, summed", "peak, measured"])
        title = "giant: memory at the measured points\n(this run recorded no RSS series; a rerun records one)"
        caption = (
            "This run recorded RSS at two points only (after warm-up and the peak); a rerun of `python -m bench "
            "giant` records RSS over time. Bars: the allocated parts summed, against the measured peak."
        )
    ax.set_ylim(0, max(target, result["peak_rss_mib"]) * 1.3)
    ax.set_ylabel("resident memory, MiB")
    shape = "x".join(map(str, result["shape"]))
    ax.set_title(f"{title}\n{shape} lattice, {result['vertices']:,} vertices, frugal BFS corner to corner", fontsize=10)
    ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    return [Plot("rss", caption, fig)]


# ---- backends --------------------------------------------------------------------------------------------------


def backends_plots(payload: dict[str, Any]) -> list[Plot]:
    """Warm median of each task on each measured backend, log scale."""
    plt = pyplot()
    rows = [r for r in payload["rows"] if r.get("status") == "measured"]
    if not rows:
        return []
    tasks = list(dict.fromkeys(r["task"] for r in rows))
    backends = list(dict.fromkeys(r["backend"] for r in rows))
    fig, ax = plt.subplots(figsize=(9, 4.2))
    width = 0.8 / len(backends)
    palette = {"numba": OURS, "numpy": PEER, "cupy": PEER_ALT}
    for i, backend in enumerate(backends):
        found = {r["task"]: ms(r["median_s"]) for r in rows if r["backend"] == backend}
        xs = [j + (i - (len(backends) - 1) / 2) * width for j, t in enumerate(tasks) if t in found]
        values = [found[t] for t in tasks if t in found]
        bars = ax.bar(xs, values, width=width, label=backend, color=palette.get(backend, PEER))
        for bar, value in zip(bars, values, strict=True):
            ax.text(bar.get_x() + bar.get_width() / 2, value, number(value), ha="center", va="bottom", fontsize=7)
    lattices = {r["task"]: r["lattice"].split(" (")[0] for r in rows}
    ax.set_xticks(range(len(tasks)), [f"{t}\n{lattices[t]}" for t in tasks], fontsize=8)
    ax.set_yscale("log")
    ax.set_ylabel("warm median per call, ms (log scale)")
    ax.set_title("backends: each primitive on each backend (warm, through the backend interface)", fontsize=10)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return [Plot("primitives", "Warm median per call of each primitive on each backend, log scale.", fig)]


PLOTTERS: dict[str, Callable[[dict[str, Any]], list[Plot]]] = {
    "kernels": kernels_plots,
    "memory": memory_plots,
    "load": load_plots,
    "webhooks": webhooks_plots,
    "ray": ray_plots,
    "giant": giant_plots,
    "backends": backends_plots,
}


def plotter_for(suite: str) -> Callable[[dict[str, Any]], list[Plot]] | None:
    """The plotter of a suite; a run written under a variant name (``giant-20x20x20x20x20``) uses its suite's."""
    return PLOTTERS.get(suite) or PLOTTERS.get(suite.split("-", 1)[0])


def embed(markdown: str, suite: str, plots: Sequence[Plot]) -> str:
    """The Markdown with its plots section replaced (or appended) by one that shows ``plots``."""
    if BEGIN in markdown:
        head, _, rest = markdown.partition(BEGIN)
        _, _, tail = rest.partition(END)
        markdown = head.rstrip() + "\n" + tail.lstrip("\n")
    if not plots:
        return markdown
    lines = [BEGIN, "", "## Plots", ""]
    for plot in plots:
        lines += [f"![{plot.caption}]({suite}-{plot.name}.png)", "", plot.caption, ""]
    lines.append(END)
    return markdown.rstrip() + "\n\n" + "\n".join(lines) + "\n"


def refresh(suite: str, results: Path) -> list[Path]:
    """Draw the plots of ``<suite>.json`` under ``results``, save them beside it and embed them in ``<suite>.md``.

    Returns the PNG files written (none for a suite without a plotter).
    """
    draw = plotter_for(suite)
    json_path, md_path = results / f"{suite}.json", results / f"{suite}.md"
    if draw is None or not json_path.exists():
        return []
    plt = pyplot()
    plots = draw(json.loads(json_path.read_text(encoding="utf-8")))
    written = []
    for plot in plots:
        path = results / f"{suite}-{plot.name}.png"
        plot.figure.savefig(path, dpi=DPI)
        plt.close(plot.figure)
        written.append(path)
    if md_path.exists():
        md_path.write_text(embed(md_path.read_text(encoding="utf-8"), suite, plots), encoding="utf-8")
    return written
