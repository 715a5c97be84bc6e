"""What a run measures: rows (one implementation, one task, one lattice) gathered per case, and their agreement."""

from __future__ import annotations

import collections
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Row:
    """One implementation doing one task on one lattice."""

    case: str
    task: str
    impl: str
    build: dict[str, float] | None
    query: dict[str, float]
    answer: Any
    note: str = ""
    agrees: bool | None = None

    @property
    def total_s(self) -> float:
        """Median build plus median query (the query alone when nothing is built)."""
        return self.query["median_s"] + (self.build["median_s"] if self.build else 0.0)

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {
            "case": self.case,
            "task": self.task,
            "impl": self.impl,
            "build": self.build,
            "query": self.query,
            "total_s": self.total_s,
            "answer": self.answer,
            "agrees": self.agrees,
            "note": self.note,
        }


@dataclass
class Case:
    """The lattice of one case and the rows measured on it."""

    name: str
    spec: dict[str, Any]
    facts: dict[str, Any]
    rows: list[Row] = field(default_factory=list)
    pairs: list[dict[str, Any]] = field(default_factory=list)
    profile: dict[str, Any] = field(default_factory=dict)

    def add(self, row: Row) -> Row:
        self.rows.append(row)
        print(f"  {row.task:<15} {row.impl:<44} total {row.total_s * 1e3:10.3f} ms  answer {row.answer}", flush=True)
        return row


def check_answers(rows: Sequence[Row]) -> dict[str, Any]:
    """Flag rows whose answer differs from the most common answer of their task; returns the references."""
    references: dict[str, Any] = {}
    for task in dict.fromkeys(r.task for r in rows):
        answers = [json.dumps(r.answer, sort_keys=True) for r in rows if r.task == task]
        reference, _ = collections.Counter(answers).most_common(1)[0]
        references[task] = json.loads(reference)
        for r in rows:
            if r.task == task:
                r.agrees = json.dumps(r.answer, sort_keys=True) == reference
    return references
