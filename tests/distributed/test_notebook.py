"""The example notebook runs end to end against the shared local Ray (direct calls, a submitted job, a plot)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOK = Path(__file__).resolve().parents[2] / "ray_cluster" / "examples" / "ray_batch_and_slabs.ipynb"

pytestmark = [pytest.mark.ray, pytest.mark.xdist_group("ray")]


def test_notebook_is_committed_without_outputs() -> None:
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(notebook)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert code
    assert all(not cell.outputs and cell.execution_count is None for cell in code)


@pytest.mark.slow
def test_notebook_executes_against_local_ray(
    ray_cluster: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RAY_ADDRESS", ray_cluster["address"])
    monkeypatch.setenv("RAY_DASHBOARD_URL", ray_cluster["dashboard"])
    monkeypatch.setenv("CATALYTIC_REPO", str(NOTEBOOK.parents[2]))
    monkeypatch.setenv("NOTEBOOK_OUTPUT", str(tmp_path))
    monkeypatch.setenv("CATALYTIC_BACKEND", "numpy")
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(
        notebook, timeout=240, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    ).execute()
    text = "\n".join(
        output.get("text", "") for cell in notebook.cells if cell.cell_type == "code" for output in cell.outputs
    )
    assert "identical to the single-node field: True" in text
    summary = json.loads((tmp_path / "job_summary.json").read_text(encoding="utf-8"))
    assert summary["pairs"] == 100
    assert 0 < summary["reachable"] <= 100
    png = (tmp_path / "distance_slice.png").read_bytes()
    assert png.startswith(b"\x89PNG")
