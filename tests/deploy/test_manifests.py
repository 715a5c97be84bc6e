"""Every overlay renders, validates against the Kubernetes and CRD schemas, and agrees with the code."""

from __future__ import annotations

from collections import Counter

import deploy_checks as checks
import pytest
from conftest import monitoring_note, rendered

from tools.deploylib import OVERLAYS, find

NAMESPACED_EXCEPTIONS = {"Namespace", "ClusterPolicy", "RuntimeClass", "ClusterIssuer", "ClusterSecretStore"}


def test_every_overlay_renders(overlay: str) -> None:
    docs = rendered(overlay)
    kinds = Counter(d["kind"] for d in docs)
    print(f"{overlay} ({monitoring_note()}): {len(docs)} objects, {dict(sorted(kinds.items()))}")
    assert kinds["Deployment"] >= 3 and kinds["NetworkPolicy"] >= 6 and kinds["Job"] == 1
    unplaced = [
        f"{d['kind']}/{d['metadata']['name']}"
        for d in docs
        if d["kind"] not in NAMESPACED_EXCEPTIONS and d["metadata"].get("namespace") != "catalytic"
    ]
    assert unplaced == [], "objects outside the catalytic namespace"


def test_builtin_kinds_validate_strictly(overlay: str) -> None:
    pytest.importorskip("kubernetes_validate", reason="kubernetes-validate is not installed (make test installs it)")
    assert checks.schema_problems(rendered(overlay)) == []


def test_custom_resources_validate_against_their_crds(overlay: str) -> None:
    if not checks.CRDS.is_dir():
        pytest.skip(f"no CRD schemas at {checks.CRDS} (the shared folder beside the project)")
    docs = rendered(overlay)
    custom = [d for d in docs if (d["apiVersion"], d["kind"]) in checks.CRD_FILES]
    assert {d["kind"] for d in custom} >= {"Cluster", "ExternalSecret", "Certificate", "Issuer"}
    assert checks.crd_problems(docs) == []


def test_manifests_agree_with_the_code(overlay: str) -> None:
    assert checks.consistency_problems(rendered(overlay)) == []


def test_network_policies_deny_by_default_and_allow_dns(overlay: str) -> None:
    assert checks.network_problems(rendered(overlay)) == []


def test_every_secret_reference_names_a_made_secret_and_key(overlay: str) -> None:
    assert checks.secret_reference_problems(rendered(overlay)) == []


def test_large_results_have_a_store_every_replica_can_serve_from(overlay: str) -> None:
    docs = rendered(overlay)
    assert checks.results_store_problems(docs) == []
    bucket = checks.bucket_port(docs)
    assert (bucket is None) == (overlay == "dev"), "dev keeps results in its one pod; the others in the bucket"


def test_no_secret_values_in_the_repository(overlay: str) -> None:
    docs = rendered(overlay)
    assert checks.secret_problems(docs) == []
    assert find(docs, "ExternalSecret"), "secrets come from the External Secrets Operator"


@pytest.mark.parametrize("name", [o for o in OVERLAYS if o != "dev"])
def test_production_shape(name: str) -> None:
    assert checks.shape_problems(rendered(name)) == []


def test_dev_is_small() -> None:
    docs = rendered("dev")
    assert checks.shape_problems(docs, api_replicas=1, worker_replicas=1) == []
    (cluster,) = find(docs, "Cluster")
    assert cluster["spec"]["instances"] == 1 and not find(docs, "ScheduledBackup")


def test_prod_state_and_backups() -> None:
    docs = rendered("prod")
    (cluster,) = find(docs, "Cluster")
    assert cluster["spec"]["instances"] == 3
    assert cluster["spec"]["backup"]["barmanObjectStore"]["wal"], "WAL archiving keeps the RPO to minutes"
    (scheduled,) = find(docs, "ScheduledBackup")
    assert scheduled["spec"]["cluster"]["name"] == cluster["metadata"]["name"]
    (dump,) = find(docs, "CronJob")
    assert dump["spec"]["concurrencyPolicy"] == "Forbid"
    assert dump["spec"]["successfulJobsHistoryLimit"] and dump["spec"]["failedJobsHistoryLimit"]
    (redis,) = [d for d in find(docs, "Deployment") if d["metadata"]["name"] == "catalytic-redis"]
    args = redis["spec"]["template"]["spec"]["containers"][0]["args"]
    flags = dict(zip(args[::2], args[1::2], strict=True))
    assert flags["--save"] == "" and flags["--appendonly"] == "no" and flags["--maxmemory-policy"] == "allkeys-lru"
    assert flags["--requirepass"] == "$(REDIS_PASSWORD)"


def test_gpu_overlay_keeps_the_cpu_api_behind_the_same_service() -> None:
    docs = rendered("gpu")
    (service,) = [s for s in find(docs, "Service") if s["metadata"]["name"] == "catalytic-api"]
    selector = service["spec"]["selector"]
    apis = [d for d in find(docs, "Deployment") if d["metadata"]["name"].startswith("catalytic-api")]
    assert {d["metadata"]["name"] for d in apis} == {"catalytic-api", "catalytic-api-gpu"}
    for deployment in apis:
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert selector.items() <= labels.items()
    gpu = next(d for d in apis if d["metadata"]["name"] == "catalytic-api-gpu")
    spec = gpu["spec"]["template"]["spec"]
    api = spec["containers"][0]
    assert api["resources"]["limits"]["nvidia.com/gpu"] == 1 and api["image"].endswith("-gpu")
    assert {"name": "CATALYTIC_BACKEND", "value": "auto"} in api["env"]
    assert spec["runtimeClassName"] == "nvidia" and spec["tolerations"] and spec["nodeSelector"]
    targets = {h["spec"]["scaleTargetRef"]["name"] for h in find(docs, "HorizontalPodAutoscaler")}
    assert targets == {"catalytic-api", "catalytic-api-gpu"}
