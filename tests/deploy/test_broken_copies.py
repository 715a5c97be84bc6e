"""Each check catches the breakage it exists for: a field broken on purpose in a copy of a rendered overlay."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import deploy_checks as checks
import pytest
from conftest import rendered

from tools.deploylib import Doc, find, one, pod_spec


def _api(docs: list[Doc]) -> Doc:
    return pod_spec(one(docs, "Deployment", "catalytic-api"))["containers"][0]


def _worker(docs: list[Doc]) -> Doc:
    return pod_spec(one(docs, "Deployment", "catalytic-worker"))["containers"][0]


def _config(docs: list[Doc]) -> dict[str, str]:
    (config,) = [c for c in find(docs, "ConfigMap") if c["metadata"]["name"].startswith("catalytic-config")]
    data: dict[str, str] = config["data"]
    return data


def _set(target: dict[str, Any], key: str, value: Any) -> None:
    target[key] = value


def _env_item(docs: list[Doc], name: str) -> dict[str, Any]:
    item: dict[str, Any] = next(e for e in _api(docs)["env"] if e["name"] == name)
    return item


BREAKAGES: dict[str, tuple[Callable[[list[Doc]], None], Callable[[list[Doc]], list[str]], str]] = {
    "probe path not a route": (
        lambda d: _set(_api(d)["readinessProbe"]["httpGet"], "path", "/readyz"),
        checks.consistency_problems,
        "/readyz is not a route",
    ),
    "worker probe path": (
        lambda d: _set(_worker(d)["livenessProbe"]["httpGet"], "path", "/healthz"),
        checks.consistency_problems,
        "/healthz is not a route",
    ),
    "unknown CLI flag": (
        lambda d: _api(d)["command"].append("--threads=4"),
        checks.consistency_problems,
        "parser refuses",
    ),
    "unknown command": (
        lambda d: _set(_worker(d), "command", ["catalytic", "webhooks"]),
        checks.consistency_problems,
        "parser refuses",
    ),
    "port not served": (
        lambda d: _set(_api(d)["ports"][0], "containerPort", 8000),
        checks.consistency_problems,
        "is not the one it serves",
    ),
    "metrics port disagrees": (
        lambda d: _set(_config(d), "METRICS_PORT", "9090"),
        checks.consistency_problems,
        "METRICS_PORT is 9090",
    ),
    "ConfigMap key the code never reads": (
        lambda d: _set(_config(d), "CATALYTIC_MAX_VERTICIES", "100"),
        checks.consistency_problems,
        "CATALYTIC_MAX_VERTICIES is not a setting",
    ),
    "image name": (
        lambda d: _set(_api(d), "image", "catalytic-api:0.1.0"),
        checks.consistency_problems,
        "is not one of",
    ),
    "unpinned third-party image": (
        lambda d: _set(pod_spec(one(d, "Deployment", "catalytic-redis"))["containers"][0], "image", "redis:latest"),
        checks.consistency_problems,
        "not pinned",
    ),
    "image version": (
        lambda d: _set(_api(d), "image", "catalytic:0.0.9"),
        checks.consistency_problems,
        "is not one of",
    ),
    "migrate on start": (
        lambda d: _set(_config(d), "CATALYTIC_MIGRATE_ON_START", "true"),
        checks.consistency_problems,
        "migrate-on-start",
    ),
    "ingress body limit": (
        lambda d: _set(
            one(d, "Ingress", "catalytic-api")["metadata"]["annotations"],
            "nginx.ingress.kubernetes.io/proxy-body-size",
            "1m",
        ),
        checks.consistency_problems,
        "body limit 1m",
    ),
    "misspelled Deployment field": (
        lambda d: _set(pod_spec(one(d, "Deployment", "catalytic-api")), "terminationGracePeriod", 60),
        checks.schema_problems,
        "terminationGracePeriod",
    ),
    "mistyped probe field": (
        lambda d: _set(_api(d)["livenessProbe"], "periodSeconds", "10s"),
        checks.schema_problems,
        "periodSeconds",
    ),
    "misspelled CloudNativePG field": (
        lambda d: _set(one(d, "Cluster", "catalytic-db")["spec"], "instance", 3),
        checks.crd_problems,
        "instance",
    ),
    "misspelled ExternalSecret field": (
        lambda d: _set(one(d, "ExternalSecret", "catalytic-secrets")["spec"], "refreshIntervall", "1h"),
        checks.crd_problems,
        "refreshIntervall",
    ),
    "DNS cut": (
        lambda d: d.remove(one(d, "NetworkPolicy", "allow-dns")),
        checks.network_problems,
        "DNS egress",
    ),
    "metadata endpoint reachable": (
        lambda d: one(d, "NetworkPolicy", "worker-webhook-egress")["spec"]["egress"][0]["to"][0]["ipBlock"][
            "except"
        ].remove("169.254.0.0/16"),
        checks.network_problems,
        "does not except 169.254.0.0/16",
    ),
    "rolling update drops pods": (
        lambda d: _set(one(d, "Deployment", "catalytic-api")["spec"]["strategy"]["rollingUpdate"], "maxUnavailable", 1),
        checks.shape_problems,
        "rolling update",
    ),
    "HPA bounds": (
        lambda d: _set(one(d, "HorizontalPodAutoscaler", "catalytic-api")["spec"], "maxReplicas", 10),
        checks.shape_problems,
        "no HPA from 3 to 20",
    ),
    "writable root filesystem": (
        lambda d: _set(_worker(d)["securityContext"], "readOnlyRootFilesystem", False),
        checks.shape_problems,
        "not restricted",
    ),
    "Secret key misspelled": (
        lambda d: _set(_env_item(d, "AWS_SECRET_ACCESS_KEY")["valueFrom"]["secretKeyRef"], "key", "secret-key"),
        checks.secret_reference_problems,
        "has no key secret-key",
    ),
    "Secret made by nothing": (
        lambda d: d.remove(one(d, "ExternalSecret", "catalytic-secrets")),
        checks.secret_reference_problems,
        "Secret catalytic-secrets is made by nothing",
    ),
    "environment variable from a Secret the code never reads": (
        lambda d: _set(_env_item(d, "AWS_ACCESS_KEY_ID"), "name", "AWS_ACCESS_KEY"),
        checks.consistency_problems,
        "AWS_ACCESS_KEY is not a setting the code reads",
    ),
    "results bucket unreachable": (
        lambda d: d.remove(one(d, "NetworkPolicy", "api-results-egress")),
        checks.results_store_problems,
        "no egress to the results bucket on TCP 443",
    ),
    "results bucket endpoint on a port egress does not allow": (
        lambda d: _set(_config(d), "RESULTS_S3_ENDPOINT_URL", "https://objects.example:9000"),
        checks.results_store_problems,
        "no egress to the results bucket on TCP 9000",
    ),
    "results bucket without credentials": (
        lambda d: _api(d)["env"].remove(_env_item(d, "AWS_SECRET_ACCESS_KEY")),
        checks.results_store_problems,
        "AWS_SECRET_ACCESS_KEY comes from no Secret",
    ),
    "results in each replica's own directory": (
        lambda d: _config(d).pop("RESULTS_S3_BUCKET"),
        checks.results_store_problems,
        "keep results in their own /var/lib/catalytic/results",
    ),
    "results directory on the read-only root": (
        lambda d: (_config(d).pop("RESULTS_S3_BUCKET"), _set(_config(d), "RESULTS_DIR", "catalytic-results")),
        checks.results_store_problems,
        "RESULTS_DIR 'catalytic-results' is not on a writable volume",
    ),
    "plaintext secret": (
        lambda d: d.append(
            {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "leak"}, "stringData": {"k": "v"}}
        ),
        checks.secret_problems,
        "Secret/leak",
    ),
}


@pytest.mark.parametrize("name", sorted(BREAKAGES))
def test_a_broken_copy_is_caught(name: str) -> None:
    if name.startswith(("misspelled C", "misspelled E")) and not checks.CRDS.is_dir():
        pytest.skip(f"no CRD schemas at {checks.CRDS}")
    if name in ("misspelled Deployment field", "mistyped probe field"):
        pytest.importorskip("kubernetes_validate", reason="kubernetes-validate is not installed")
    original = rendered("prod")
    check = BREAKAGES[name][1]
    assert check(original) == [], "the unbroken overlay must pass first"
    broken = copy.deepcopy(original)
    BREAKAGES[name][0](broken)
    problems = check(broken)
    assert any(BREAKAGES[name][2] in problem for problem in problems), problems


@pytest.mark.slow
def test_checkov_catches_a_privileged_container(tmp_path: Path) -> None:
    if not checks.CHECKOV.exists():
        pytest.skip(f"checkov is not installed at {checks.CHECKOV}")
    import yaml

    broken = copy.deepcopy(rendered("dev"))
    context = _api(broken)["securityContext"]
    context.update({"privileged": True, "allowPrivilegeEscalation": True})
    path = tmp_path / "broken.yaml"
    path.write_text(yaml.safe_dump_all(broken), encoding="utf-8")
    problems = checks.checkov_problems([path])
    assert any(p.startswith(("CKV_K8S_16", "CKV_K8S_20")) for p in problems), problems
