"""What the kernels suite refuses to publish: figures that cannot be what their labels say.

* a profile whose stages add up to more than its total (its ``python_overhead``, total minus parts round by round,
  negative beyond three standard errors);
* an end-to-end row whose calls were not each checked to be cold.

An end-to-end row and a profile stage are timed in different blocks, so on a shared machine one can come out
faster than the other by noise alone; the profile compares its end-to-end total with its stages round by round.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from bench.kernels.rows import Case, Row
from bench.kernels.timing import overhead_problem


def profiles_of(case: Case) -> Iterator[tuple[str, Mapping[str, float]]]:
    """Every stage profile of a case with its title (path profiles hold one per method)."""
    for what, stages in case.profile.items():
        if what == "path":
            for method, parts in stages.items():
                yield f"{case.name} path method={method}", parts
        else:
            yield f"{case.name} {what}", stages


def end_to_end_problem(row: Row) -> str | None:
    """Why an end-to-end row cannot be published, or None."""
    calls = row.query.get("cold_checked", 0)
    if calls != row.query["repeat"] + 1:
        return f"only {calls} of {row.query['repeat'] + 1} calls were checked to be cold"
    return None


def publication_problems(cases: Mapping[str, Case]) -> list[str]:
    """Each figure of the run that must not be published, with the reason; empty when all may be."""
    problems = []
    for case in cases.values():
        for title, stages in profiles_of(case):
            reason = overhead_problem(stages)
            if reason:
                problems.append(f"profile {title}: {reason}")
        for row in case.rows:
            if row.impl.endswith(", end to end"):
                reason = end_to_end_problem(row)
                if reason:
                    problems.append(f"{case.name} {row.impl}: {reason}")
    return problems
