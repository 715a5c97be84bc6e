"""The KubeRay manifests validate against the upstream RayCluster / RayJob CRDs (KubeRay v1.7.0).

The CRDs are read from ``../shared/crds/ray.io`` (never copied into the project); without that folder these tests
skip. The CRD's OpenAPI schema is made strict, as the API server is not (it prunes unknown fields silently): every
object without ``additionalProperties`` or ``x-kubernetes-preserve-unknown-fields`` refuses unknown fields, so a
misspelled field fails here instead of vanishing in the cluster.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml
from deploy.deploy_checks import CRDS, crd_validator

ROOT = Path(__file__).resolve().parents[2] / "ray_cluster"

pytestmark = pytest.mark.skipif(not (CRDS / "ray.io").is_dir(), reason=f"no KubeRay CRDs at {CRDS / 'ray.io'}")


def _load(name: str) -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load((ROOT / name).read_text(encoding="utf-8"))
    return document


def _errors(document: dict[str, Any]) -> list[str]:
    validator = crd_validator(document["apiVersion"], document["kind"])
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(document)]


@pytest.mark.parametrize("name", ["raycluster.yaml", "rayjob-batch-paths.yaml"])
def test_manifests_are_valid(name: str) -> None:
    assert _errors(_load(name)) == []


def test_raycluster_scales_cpu_and_gpu_groups_from_zero() -> None:
    spec = _load("raycluster.yaml")["spec"]
    assert spec["enableInTreeAutoscaling"] is True
    groups = {group["groupName"]: group for group in spec["workerGroupSpecs"]}
    assert set(groups) == {"cpu", "gpu"}
    assert all(group["minReplicas"] == 0 for group in groups.values())
    gpu_pod = groups["gpu"]["template"]["spec"]
    assert gpu_pod["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in gpu_pod["tolerations"]


def test_rayjob_runs_a_script_that_exists() -> None:
    entrypoint = _load("rayjob-batch-paths.yaml")["spec"]["entrypoint"]
    script = entrypoint.split()[1]
    assert (ROOT.parent / script).is_file()


def _mutate(document: dict[str, Any], path: list[Any], value: Any, *, rename: str | None = None) -> dict[str, Any]:
    broken = copy.deepcopy(document)
    node = broken
    for key in path[:-1]:
        node = node[key]
    if rename is not None:
        node[rename] = node.pop(path[-1])
    else:
        node[path[-1]] = value
    return broken


@pytest.mark.parametrize(
    ("name", "path", "value", "rename", "expected"),
    [
        ("raycluster.yaml", ["spec", "workerGroupSpecs", 0, "minReplicas"], None, "minReplica", "minReplica"),
        ("raycluster.yaml", ["spec", "enableInTreeAutoscaling"], "yes", None, "is not of type 'boolean'"),
        ("raycluster.yaml", ["spec", "headGroupSpec", "rayStartParams", "num-cpus"], 0, None, "is not of type"),
        (
            "raycluster.yaml",
            ["spec", "workerGroupSpecs", 1, "template", "spec", "containers", 0, "resources"],
            None,
            "resource",
            "resource",
        ),
        (
            "raycluster.yaml",
            ["spec", "workerGroupSpecs", 1, "template", "spec", "containers", 0, "image"],
            None,
            "imag",
            "imag",
        ),
        ("raycluster.yaml", ["spec", "headGroupSpec", "template"], None, "templates", "'template' is a required"),
        ("rayjob-batch-paths.yaml", ["spec", "shutdownAfterJobFinishes"], None, "shutdownAfterJobFinish", "Finish"),
        ("rayjob-batch-paths.yaml", ["spec", "ttlSecondsAfterFinished"], "600", None, "is not of type 'integer'"),
        ("rayjob-batch-paths.yaml", ["spec", "rayClusterSpec", "rayVersion"], 2.6, None, "is not of type 'string'"),
    ],
)
def test_misspelled_or_mistyped_fields_fail(
    name: str, path: list[Any], value: Any, rename: str | None, expected: str
) -> None:
    errors = _errors(_mutate(_load(name), path, value, rename=rename))
    assert errors, "the broken manifest validated"
    assert any(expected in error for error in errors), errors
