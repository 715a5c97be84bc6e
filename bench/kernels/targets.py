"""The targets of the issue, each read off the rows of the same run: measured value, met or missed, and the
measured cause of a miss (from the profiles)."""

from __future__ import annotations

from typing import Any

from bench.kernels.rows import Case, Row

Target = dict[str, Any]


def target(name: str, goal: str, measured: str, met: bool, cause: str = "") -> Target:
    return {"target": name, "goal": goal, "measured": measured, "met": met, "cause": cause}


def find_row(cases: dict[str, Case], case: str, task: str, impl: str) -> Row | None:
    if case not in cases:
        return None
    return next((r for r in cases[case].rows if r.task == task and r.impl == impl), None)


def fastest_route(cases: dict[str, Case], case: str, call: str, by: str = "total") -> Row | None:
    """The row of ``call`` (a peer's query, such as ``igraph get_shortest_path``) whose build route is fastest.

    A peer's rows are named ``<call> (<route>)``; ``by`` is ``total`` (build + query) or ``query``.
    """
    if case not in cases:
        return None
    rows = [r for r in cases[case].rows if r.impl.startswith(call + " (")]
    if by == "query":
        return min(rows, key=lambda r: r.query["median_s"], default=None)
    return min(rows, key=lambda r: r.total_s, default=None)


def ms(seconds: float) -> str:
    return f"{seconds * 1e3:.4g} ms"


def breakdown(stages: dict[str, float], total: str) -> str:
    """Stages of a profile, largest first, with their share of ``total``."""
    whole = stages[total]
    parts = sorted(((v, k) for k, v in stages.items() if k != total and not k.endswith("_se")), reverse=True)
    listed = ", ".join(f"{k} {ms(v)} ({100 * v / whole:.0f}%)" for v, k in parts)
    return f"{total} {ms(whole)} = {listed}"


def path_cause(cases: dict[str, Case], method: str) -> str:
    """The measured breakdown of an end-to-end numba shortest path."""
    stages = cases["5d-corner"].profile.get("path", {}).get(method)
    return breakdown(stages, "end_to_end") if stages else "no profile"


PEER_CALLS = {
    "bfs": ("igraph get_shortest_path", "networkx shortest_path_length"),
    "auto": ("igraph get_shortest_path_astar", "networkx astar_path_length"),
}
"""What each method is held against: BFS against the peers' BFS, ``auto`` (which runs A*) against their A*."""


def corner_path_targets(cases: dict[str, Case]) -> list[Target]:
    """The 5-D corner path against igraph (query alone) and against igraph and networkx (end to end, cold).

    Each peer is taken by its fastest measured build route; BFS is held against the peers' BFS and ``auto``
    against their A* with the same Manhattan heuristic.
    """
    targets: list[Target] = []
    for method, (igraph_call, networkx_call) in PEER_CALLS.items():
        warm = find_row(cases, "5d-corner", "path", f"catalytic[numba] {method}")
        e2e = find_row(cases, "5d-corner", "path", f"catalytic[numba] {method}, end to end")
        igraph_query = fastest_route(cases, "5d-corner", igraph_call, by="query")
        igraph = fastest_route(cases, "5d-corner", igraph_call)
        networkx = fastest_route(cases, "5d-corner", networkx_call)
        if warm and igraph_query:
            ratio = igraph_query.query["median_s"] / warm.query["median_s"]
            met = ratio >= 3
            targets.append(
                target(
                    f"5-D 10^5 corner path, query, method={method}",
                    f"catalytic query <= 1/3 of {igraph_call}'s query (prebuilt graph)",
                    f"{ms(warm.query['median_s'])} vs {igraph_query.impl} {ms(igraph_query.query['median_s'])}: "
                    f"{ratio:.2f}x",
                    met,
                    "" if met else path_cause(cases, method),
                )
            )
        if e2e and igraph and networkx:
            vs_ig = igraph.total_s / e2e.total_s
            vs_nx = networkx.total_s / e2e.total_s
            met = vs_ig >= 50 and vs_nx >= 1000
            targets.append(
                target(
                    f"5-D 10^5 corner path, end to end (cold), method={method}",
                    f">= 50x {igraph_call} and >= 1000x {networkx_call}, build + query, fastest build route",
                    f"{ms(e2e.total_s)}: {vs_ig:.1f}x {igraph.impl} ({ms(igraph.total_s)}), "
                    f"{vs_nx:.0f}x {networkx.impl} ({ms(networkx.total_s)})",
                    met,
                    "" if met else path_cause(cases, method),
                )
            )
    return targets


def pairs_targets(cases: dict[str, Case]) -> list[Target]:
    """Per-query p50 and p99 of the warm numba ``auto`` path over the random pairs."""
    if "5d-pairs" not in cases:
        return []
    entry = next((p for p in cases["5d-pairs"].pairs if p["impl"] == "catalytic[numba] auto"), None)
    if not entry:
        return []
    met = entry["p50_s"] <= 0.3e-3 and entry["p99_s"] <= 3e-3
    peer = next((p for p in cases["5d-pairs"].pairs if p["impl"].startswith("igraph get_shortest_path_astar")), None)
    against = f"; {peer['impl']} p50 {ms(peer['p50_s'])}, p99 {ms(peer['p99_s'])}" if peer else ""
    stages = cases["5d-pairs"].profile.get("per-query shortest_path auto")
    cause = "" if met or not stages else "per-query medians: " + breakdown(stages, "shortest_path() warm")
    return [
        target(
            "5-D 10^5, 1,000 random pairs, method=auto",
            "p50 <= 0.3 ms and p99 <= 3 ms per query",
            f"p50 {ms(entry['p50_s'])}, p99 {ms(entry['p99_s'])} over {entry['n']} queries{against}",
            met,
            cause,
        )
    ]


def components_targets(cases: dict[str, Case]) -> list[Target]:
    """Components against cc3d (3-D) and scipy.ndimage.label (5-D), by the alternating head-to-head if measured."""
    targets: list[Target] = []
    for case, peer, factor in (("3d-200", "cc3d connectivity=6", 1.0), ("5d-20", "scipy.ndimage.label", 3.0)):
        ours = find_row(cases, case, "components", "catalytic[numba]")
        theirs = find_row(cases, case, "components", peer)
        if not (ours and theirs):
            continue
        sequential = f"in separate blocks (table above) {ms(ours.total_s)} vs {ms(theirs.total_s)}"
        duel = cases[case].profile.get("components head-to-head", {})
        if "catalytic[numba]" in duel and peer in duel:
            ours_s, theirs_s = duel["catalytic[numba]"], duel[peer]
            how = f"alternating calls {ms(ours_s)} vs {ms(theirs_s)}"
        else:
            ours_s, theirs_s, how = ours.total_s, theirs.total_s, sequential
            sequential = ""
        ratio = theirs_s / ours_s
        measured = f"{how}: {ratio:.2f}x"
        if sequential:
            measured += f"; {sequential}: {theirs.total_s / ours.total_s:.2f}x"
        met = ratio >= factor
        cause = ""
        if not met:
            stages = dict(cases[case].profile.get("components", {}))
            stages.pop("mask_materialisation (first call only)", None)
            cause = breakdown(stages, "components() warm") if stages else "no profile"
        targets.append(
            target(
                f"components {case}",
                f">= {factor:g}x faster than {peer}" if factor != 1 else f"no slower than {peer}",
                measured,
                met,
                cause,
            )
        )
    return targets


def evaluate_targets(cases: dict[str, Case]) -> list[Target]:
    """Each target of the issue: measured value, met or missed, and the measured cause of a miss."""
    return corner_path_targets(cases) + pairs_targets(cases) + components_targets(cases)
