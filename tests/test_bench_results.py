"""What every bench result carries: the load it ran under (noisy runs marked), plots drawn from its JSON, and
README figures that the current results contain. Timings are never asserted."""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from pathlib import Path

import pytest

import bench.common
from bench import plots, suite_plots
from bench.common import cpu_seconds, load_facts, write_results

README = Path(__file__).resolve().parents[1] / "README.md"
NUMBER = re.compile(r"(?<![\w.])\d[\d,]*(?:\.\d+)?(?:e[+-]?\d+)?(?![\w])")


def started(load_1min: float, own_cores: float) -> dict:
    """A run that began 10 s ago under ``load_1min`` and has used ``own_cores`` cores since."""
    return {"load": [load_1min, 0.0, 0.0], "wall": time.perf_counter() - 10, "cpu": cpu_seconds() - 10 * own_cores}


@pytest.mark.parametrize(
    ("before", "after", "own", "noisy"),
    [
        (0.5, 1.2, 1.0, False),
        (3.0, 1.0, 0.0, True),  # busy when the run began
        (0.5, 3.0, 1.5, False),  # the run's own threads raise the load, other work does not
        (0.5, 4.5, 1.0, True),  # other work exceeds the 2 cores by the end
    ],
)
def test_a_run_is_noisy_when_other_work_exceeds_the_cores(
    monkeypatch: pytest.MonkeyPatch, before: float, after: float, own: float, noisy: bool
) -> None:
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    monkeypatch.setattr(os, "getloadavg", lambda: (after, 0.0, 0.0))
    facts = load_facts(started(before, own))
    assert facts["before"][0] == before and facts["after"][0] == after
    assert facts["noisy"] is noisy


def test_results_record_the_load_and_mark_a_noisy_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bench.common, "RESULTS", tmp_path)
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    monkeypatch.setattr(os, "getloadavg", lambda: (9.0, 9.0, 9.0))
    json_path, md_path = write_results("demo", {"rows": []}, "body", load_started=started(8.0, 1.0), plots=False)
    payload = json.loads(json_path.read_text(encoding="utf-8"))
    assert payload["noisy"] is True
    assert payload["machine"]["load"]["before"][0] == 8.0
    assert "**Noisy run**" in md_path.read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def redrawn(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The stored results copied aside, their plots redrawn from the JSON alone."""
    out = tmp_path_factory.mktemp("plots")
    for path in bench.common.RESULTS.glob("*.json"):
        shutil.copy(path, out)
        if path.with_suffix(".md").exists():
            shutil.copy(path.with_suffix(".md"), out)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(bench.common, "RESULTS", out)
        # the stored Markdown already holds a plots section: one redraw shows it is replaced, not added to
        assert suite_plots.main([]) == 0
    return out


@pytest.mark.parametrize("suite", ["kernels", "memory", "load", "webhooks", "ray", "giant", "backends"])
def test_each_suite_plots_from_its_json_and_its_markdown_embeds_them(redrawn: Path, suite: str) -> None:
    markdown = (redrawn / f"{suite}.md").read_text(encoding="utf-8")
    assert markdown.count(plots.BEGIN) == 1  # a redraw replaces the section
    embedded = re.findall(rf"\]\(({re.escape(suite)}-[\w.-]+\.png)\)", markdown)
    assert embedded
    for name in embedded:
        assert (redrawn / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_stored_markdown_embeds_only_stored_plots() -> None:
    for md in bench.common.RESULTS.glob("*.md"):
        for name in re.findall(r"\]\(([\w.-]+\.png)\)", md.read_text(encoding="utf-8")):
            assert (bench.common.RESULTS / name).exists(), (md.name, name)


def readme_bench_section() -> str:
    text = README.read_text(encoding="utf-8")
    section = text[text.index("## Benchmarks") :]
    following = section.find("\n## ", 1)
    return section if following < 0 else section[:following]


def test_every_figure_the_readme_quotes_is_in_the_current_results() -> None:
    section = re.sub(r"\]\([^)]*\)", "]", readme_bench_section())  # image and link targets are no figures
    results = "\n".join(md.read_text(encoding="utf-8") for md in bench.common.RESULTS.glob("*.md"))
    published = set(NUMBER.findall(results))
    quoted = NUMBER.findall(section)
    assert quoted
    missing = sorted({figure for figure in quoted if figure not in published})
    assert not missing, f"README quotes figures that no bench/results/*.md contains: {missing}"


def test_the_readme_shows_stored_plots() -> None:
    shown = re.findall(r"\]\((bench/results/[\w.-]+\.png)\)", readme_bench_section())
    assert shown
    for path in shown:
        assert (README.parent / path).exists(), path
