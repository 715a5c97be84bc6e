"""The kernels suite's report: the JSON payload and the Markdown body that ``bench.common.write_results`` writes."""

from __future__ import annotations

from typing import Any

from bench.common import markdown_table, source_state
from bench.kernels.config import HUGE_VERTICES, Config
from bench.kernels.ours import NUMPY_MAX_VERTICES
from bench.kernels.rows import Case, Row

PREAMBLE = (
    "Times in ms: medians over warm repeats (`first` = the first call, apart). Peers get the materialised open "
    "mask for free; `build` is their graph construction from it, `query` the call itself. A graph peer is built "
    "by each of its documented routes (igraph: `Graph.Lattice` + `delete_vertices`, or an edge list; networkx: "
    "`grid_graph` + `remove_nodes_from`, or an edge list), each route a row; its A* rows use the Manhattan "
    "heuristic that catalytic's `auto` (A*) uses. catalytic rows query a prebuilt Lattice (mask cached) unless "
    "marked *end to end*: spec -> answer on a new Lattice per call, timed while no equal lattice is alive (checked "
    "before every call), so every call builds its mask. `ok` = the answer matches the answer most rows give (path "
    "length in hops, component count, distance-field digest).\n"
)


def fmt_ms(value: float | None) -> str:
    return "" if value is None else f"{value * 1e3:.4g}"


def answer_text(answer: Any) -> str:
    if isinstance(answer, dict):
        return ", ".join(f"{k}={v}" for k, v in answer.items())
    return str(answer)


def ok(agrees: bool | None) -> str:
    return "yes" if agrees else "**NO**"


def lattice_lines(cases: dict[str, Case]) -> list[str]:
    """One line per case's lattice, then the caveats that apply to this run."""
    lines = ["Lattices (random obstacles `{kind: random, p, seed: 1}`, no periodic axes):\n"]
    for case in cases.values():
        f = case.facts
        moved = []
        if f["start_substituted"]:
            moved.append("start corner blocked: first open vertex in linear order used")
        if f["goal_substituted"]:
            moved.append("goal corner blocked: last open vertex in linear order used")
        lines.append(
            f"- `{case.name}`: shape {f['shape']}, {f['obstacle_density']:.0%} obstacles, {f['open_vertices']:,} of "
            f"{f['vertices']:,} open; start {f['start']}, goal {f['goal']}"
            + (f" ({'; '.join(moved)})" if moved else "")
            + (f"; {f['pairs']} pairs, seed {f['pair_seed']}" if "pairs" in f else "")
            + f"; load average at start {f['load_average_at_start']}"
        )
    if "2d-4096" in cases:
        lines.append("- The 2-D case uses 20% obstacles (the issue gives no density for it).")
    if any(c.facts["vertices"] > HUGE_VERTICES for c in cases.values()):
        lines.append(
            f"- igraph is left out above {HUGE_VERTICES:,} vertices to bound the suite's run time; scipy csgraph "
            "stands in as the general-graph peer there."
        )
    lines.append(f"- The NumPy reference backend is timed only on lattices of at most {NUMPY_MAX_VERTICES:,} vertices.")
    return lines


def results_table(cases: dict[str, Case]) -> list[str]:
    header = ["case", "task", "implementation", "build", "query", "build+query", "first", "answer", "ok", "note"]
    rows = [
        [
            case.name,
            r.task,
            r.impl,
            fmt_ms(r.build["median_s"]) if r.build else "",
            fmt_ms(r.query["median_s"]),
            fmt_ms(r.total_s),
            fmt_ms(r.query["cold_s"]),
            answer_text(r.answer),
            ok(r.agrees),
            r.note,
        ]
        for case in cases.values()
        for r in by_task(case.rows)
    ]
    return ["", "## Results", "", markdown_table(header, rows)]


def by_task(rows: list[Row]) -> list[Row]:
    """The rows grouped by task (tasks in the order they first appear), in measured order within a task."""
    tasks = list(dict.fromkeys(r.task for r in rows))
    return sorted(rows, key=lambda r: tasks.index(r.task))


def pairs_table(cases: dict[str, Case]) -> list[str]:
    rows = [
        [p["impl"], p["n"], *(fmt_ms(p[k]) for k in ("p50_s", "p99_s", "mean_s", "max_s")), ok(p["agrees"]), p["note"]]
        for case in cases.values()
        for p in case.pairs
    ]
    if not rows:
        return []
    header = ["implementation", "queries", "p50", "p99", "mean", "max", "ok vs igraph", "note"]
    return ["", "## Random pairs (5-D 10^5, each query timed on its own)", "", markdown_table(header, rows)]


def targets_table(targets: list[dict[str, Any]]) -> list[str]:
    rows = [[t["target"], t["goal"], t["measured"], "met" if t["met"] else "**missed**", t["cause"]] for t in targets]
    return ["", "## Targets", "", markdown_table(["target", "goal", "measured", "verdict", "measured cause"], rows)]


def profile_tables(cases: dict[str, Case]) -> list[str]:
    def stage_table(title: str, stages: dict[str, float]) -> list[str]:
        rows = [[k, fmt_ms(v)] for k, v in stages.items() if not k.endswith("_se")]
        for row in rows:
            if row[0] == "python_overhead":
                row[1] += f" ± {fmt_ms(stages['python_overhead_se'])} (total minus parts, per round)"
        return ["", f"### Profile: {title}", "", markdown_table(["stage", "median ms"], rows)]

    lines: list[str] = []
    for case in cases.values():
        for what, stages in case.profile.items():
            if what == "path":
                for method, parts in stages.items():
                    title = f"{case.name} numba shortest_path method={method}, end to end (cold)"
                    lines += stage_table(title, parts)
            else:
                lines += stage_table(f"{case.name} numba {what}", stages)
    return lines


def cold_table(cold: list[dict[str, Any]]) -> list[str]:
    if not cold:
        return []
    rows = []
    for entry in cold:
        if "error" in entry:
            rows.append([entry["cache"], "error: " + " ".join(entry["error"]), "", ""])
            continue
        rows.append([entry["cache"], "import catalytic", fmt_ms(entry["import_s"]), ""])
        for name, value in entry.items():
            if isinstance(value, dict):
                rows.append([entry["cache"], name, fmt_ms(value["first_s"]), fmt_ms(value["second_s"])])
    title = "## First call in a fresh process (numba backend, 5-D corner lattice)"
    return ["", title, "", markdown_table(["numba cache", "call (in this order)", "first ms", "second ms"], rows)]


def render(cases: dict[str, Case], targets: list[dict[str, Any]], cold: list[dict[str, Any]], cfg: Config) -> str:
    """The Markdown report: one results table, the per-query table, targets, profiles and compile times."""
    lines = ["**Quick run (tiny lattices): timings are not meaningful.**\n"] if cfg.quick else []
    lines.append(PREAMBLE)
    lines += lattice_lines(cases)
    lines += results_table(cases)
    lines += pairs_table(cases)
    lines += targets_table(targets)
    lines += profile_tables(cases)
    lines += cold_table(cold)
    return "\n".join(lines)


def payload(
    cases: dict[str, Case],
    references: dict[str, Any],
    targets: list[dict[str, Any]],
    cold: list[dict[str, Any]],
    cfg: Config,
    backends: list[str],
) -> dict[str, Any]:
    """The JSON result: configuration, every case's rows and profiles, agreement, targets and compile times."""
    disagreements = [f"{r.case}/{r.task}/{r.impl}" for c in cases.values() for r in c.rows if not r.agrees]
    disagreements += [f"{c.name}/pairs/{p['impl']}" for c in cases.values() for p in c.pairs if not p["agrees"]]
    return {
        "config": {
            "quick": cfg.quick,
            "cases": list(cases),
            "repeat_fast": cfg.repeat_fast,
            "repeat_slow": cfg.repeat_slow,
            "backends": backends,
            "source": source_state(),
        },
        "cases": {
            name: {
                "spec": {**c.spec, "shape": list(c.spec["shape"])},
                "facts": c.facts,
                "rows": [r.to_dict() for r in c.rows],
                "pairs": [{k: v for k, v in p.items() if k != "lengths"} for p in c.pairs],
                "references": references[name],
                "profile": c.profile,
            }
            for name, c in cases.items()
        },
        "answers_agree": not disagreements,
        "disagreements": disagreements,
        "targets": targets,
        "cold": cold,
    }
