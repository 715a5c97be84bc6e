"""gpu-nodepool/ agrees with the gpu overlay and ray_cluster/: taints, labels, driver, runtime class, images."""

from __future__ import annotations

import re
import shutil
import subprocess

import deploy_checks as checks
import pytest
import yaml
from conftest import rendered

from tools.deploylib import ROOT, find, one, pod_spec, render

POOLS = ROOT / "gpu-nodepool"
SCRIPTS = {"gke": "gke/create-node-pool.sh", "eks": "eks/create-node-group.sh", "aks": "aks/add-node-pool.sh"}


def _pool() -> dict[str, str]:
    pairs = [line.split("=", 1) for line in (POOLS / "nodepool.env").read_text().splitlines() if "=" in line]
    return {key: value for key, value in pairs if not key.startswith("#")}


def _label() -> dict[str, str]:
    pool = _pool()
    return {pool["GPU_POOL_LABEL_KEY"]: pool["GPU_POOL_LABEL_VALUE"]}


def _toleration() -> dict[str, str]:
    pool = _pool()
    return {"key": pool["GPU_TAINT_KEY"], "operator": "Equal", "value": pool["GPU_TAINT_VALUE"],
            "effect": pool["GPU_TAINT_EFFECT"]}  # fmt: skip


def _yaml(path: str) -> list[dict[str, object]]:
    return [d for d in yaml.safe_load_all((POOLS / path).read_text()) if d]


def test_the_gpu_overlay_selects_and_tolerates_the_node_pools() -> None:
    spec = pod_spec(one(rendered("gpu"), "Deployment", "catalytic-api-gpu"))
    assert spec["nodeSelector"] == _label()
    assert spec["tolerations"] == [_toleration()]
    assert _pool()["GPU_TAINT_KEY"] == "nvidia.com/gpu" and _pool()["GPU_TAINT_VALUE"] == "present"


def test_operator_runtime_class_and_check_pod_agree() -> None:
    (policy,) = _yaml("operator/clusterpolicy.yaml")
    (runtime,) = _yaml("operator/runtimeclass.yaml")
    (check,) = _yaml("verify/gpu-check.yaml")
    assert _toleration() in policy["spec"]["daemonsets"]["tolerations"]  # type: ignore[index]
    assert runtime["scheduling"] == {"nodeSelector": _label(), "tolerations": [_toleration()]}
    assert check["spec"]["nodeSelector"] == _label() and check["spec"]["tolerations"] == [_toleration()]  # type: ignore[index]
    assert check["spec"]["runtimeClassName"] == runtime["metadata"]["name"] == "nvidia"  # type: ignore[index]
    assert policy["spec"]["dcgmExporter"]["enabled"]  # type: ignore[index]
    # One scrape of the exporter: the monitoring component's ServiceMonitor, not the operator's as well.
    assert policy["spec"]["dcgmExporter"]["serviceMonitor"]["enabled"] is False  # type: ignore[index]
    monitors = yaml.safe_load_all((ROOT / "k8s/components/monitoring/monitors.yaml").read_text())
    assert any(m["kind"] == "ServiceMonitor" and m["metadata"]["name"] == "catalytic-dcgm" for m in monitors if m)


def test_the_driver_is_one_cuda_13_accepts() -> None:
    (policy,) = _yaml("operator/clusterpolicy.yaml")
    pinned = policy["spec"]["driver"]["version"]  # type: ignore[index]
    assert pinned == _pool()["NVIDIA_DRIVER_VERSION"]
    assert int(str(pinned).split(".")[0]) >= 580


def test_ray_gpu_workers_land_on_the_same_pool() -> None:
    cluster = yaml.safe_load((ROOT / "ray_cluster/raycluster.yaml").read_text())
    (gpu,) = [g for g in cluster["spec"]["workerGroupSpecs"] if g["groupName"] == "gpu"]
    spec = gpu["template"]["spec"]
    assert spec["nodeSelector"] == _label()
    toleration = _toleration()
    assert any(t["key"] == toleration["key"] and t["effect"] == toleration["effect"] for t in spec["tolerations"])


@pytest.mark.parametrize("cloud", sorted(SCRIPTS))
def test_each_script_applies_the_shared_label_and_taint_and_scales_from_zero(cloud: str) -> None:
    text = (POOLS / SCRIPTS[cloud]).read_text()
    for variable in (
        "GPU_POOL_LABEL_KEY",
        "GPU_POOL_LABEL_VALUE",
        "GPU_TAINT_KEY",
        "GPU_TAINT_VALUE",
        "GPU_TAINT_EFFECT",
    ):
        assert f"${{{variable}}}" in text, f"{cloud}: does not use {variable}"
    accelerator = {"gke": "ACCELERATOR", "eks": "INSTANCE_TYPE", "aks": "VM_SIZE"}[cloud]
    assert re.search(rf"^{accelerator}=\$\{{{accelerator}:-", text, re.M), f"{cloud}: {accelerator} is no parameter"
    assert re.search(r"min(-nodes|Size|-count)[: ]+0\b", text), f"{cloud}: does not scale from zero"


def test_eks_node_group_carries_the_autoscaler_node_template_tags() -> None:
    if shutil.which("bash") is None:
        pytest.skip("bash is not installed")
    result = subprocess.run(
        ["bash", str(POOLS / SCRIPTS["eks"])],
        env={"DRY_RUN": "1", "CLUSTER": "test", "REGION": "eu-west-1", "PATH": "/usr/bin:/bin"},
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    (group,) = yaml.safe_load(result.stdout)["managedNodeGroups"]
    template = "k8s.io/cluster-autoscaler/node-template"
    (key, value), toleration = next(iter(_label().items())), _toleration()
    assert group["tags"][f"{template}/label/{key}"] == value
    assert group["tags"][f"{template}/taint/{toleration['key']}"] == f"{toleration['value']}:{toleration['effect']}"
    assert group["tags"][f"{template}/resources/nvidia.com/gpu"] == "1"
    assert group["minSize"] == 0 and group["labels"] == _label()


def test_gke_rendering_drops_the_runtime_class() -> None:
    docs = render(POOLS / "gke")
    assert "runtimeClassName" not in pod_spec(one(docs, "Deployment", "catalytic-api-gpu"))
    assert checks.consistency_problems(docs) == []


def test_node_pool_objects_validate() -> None:
    docs = [
        *_yaml("operator/clusterpolicy.yaml"),
        *_yaml("operator/runtimeclass.yaml"),
        *_yaml("verify/gpu-check.yaml"),
    ]
    if checks.CRDS.is_dir():
        assert checks.crd_problems(docs) == []
    pytest.importorskip("kubernetes_validate", reason="kubernetes-validate is not installed")
    assert checks.schema_problems(docs) == []


def test_image_names_agree_across_k8s_gpu_nodepool_and_ray_cluster() -> None:
    images: dict[str, set[str]] = {}
    sources = {f"k8s/overlays/{o}": rendered(o) for o in ("dev", "prod", "gpu", "prod-ray")}
    sources["gpu-nodepool/verify"] = _yaml("verify/gpu-check.yaml")
    for name in ("raycluster.yaml", "rayjob-batch-paths.yaml"):
        sources[f"ray_cluster/{name}"] = [yaml.safe_load((ROOT / "ray_cluster" / name).read_text())]
    for source, docs in sources.items():
        text = yaml.safe_dump_all(docs)
        images[source] = {m for m in re.findall(r"image: (\S+)", text) if m.split(":")[0].startswith("catalytic")}
    ours = set().union(*checks.OWN_IMAGES.values())
    assert all(found <= ours for found in images.values()), images
    built = set()
    for dockerfile in (ROOT / "Dockerfile", ROOT / "Dockerfile.gpu", *ROOT.glob("ray_cluster/Dockerfile*")):
        built |= set(re.findall(r"docker build .*-t (\S+)", dockerfile.read_text()))
    assert built == ours, "each image the manifests name is built by one Dockerfile"
    assert set().union(*images.values()) == ours
    assert find(sources["k8s/overlays/gpu"], "Deployment", "catalytic-api-gpu")


def test_readme_says_how_to_create_verify_and_scale_to_zero() -> None:
    text = (POOLS / "README.md").read_text().lower()
    for topic in ("create", "verify", "scale", "zero", "gpu-check.yaml", "580"):
        assert topic in text, topic


def test_rendered_gpu_overlay_runs_on_the_pool() -> None:
    spec = pod_spec(one(rendered("gpu"), "Deployment", "catalytic-api-gpu"))
    assert (
        spec["runtimeClassName"]
        == yaml.safe_load((POOLS / "operator/runtimeclass.yaml").read_text())["metadata"]["name"]
    )
