"""The offline checks of the deployment files, as functions that return a list of problems (empty: passed).

Each check takes rendered objects (see tools/deploylib.py), so the tests run it on the real overlays and on
copies broken on purpose. Versions and tools: Kubernetes schemas of ``KUBERNETES_VERSION`` (kubernetes-validate,
strict), the CRD schemas of ``../shared/crds`` (jsonschema), checkov in its own virtualenv.
"""

from __future__ import annotations

import argparse
import functools
import importlib.util
import ipaddress
import json
import re
import subprocess
import tomllib
from collections.abc import Iterable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from tools.deploylib import ROOT, Doc, command_of, containers, find, pod_spec, workloads

KUBERNETES_VERSION = "1.30.0"
CRDS = ROOT.parent / "shared" / "crds"
CHECKOV = ROOT / ".venv" / "checkov" / "bin" / "checkov"
VERSION = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["version"]
OWN_IMAGES = {
    "catalytic": {f"catalytic:{VERSION}", f"catalytic:{VERSION}-gpu"},
    "catalytic-ray": {f"catalytic-ray:{VERSION}", f"catalytic-ray:{VERSION}-gpu"},
}
# Variables the manifests may set that numba itself reads (the image compiles its kernels for this CPU name).
NUMBA_VARIABLES = ("NUMBA_CACHE_DIR", "NUMBA_CPU_NAME")
# Variables botocore's credential chain reads (the results bucket's keys, components/results-bucket).
BOTO_VARIABLES = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
# Keys of the Secrets operators make from the rendered objects: CloudNativePG's "<cluster>-app" (its
# documentation's list), cert-manager's Certificate secrets.
CNPG_APP_KEYS = frozenset({"username", "password", "host", "port", "dbname", "pgpass", "uri", "jdbc-uri"})
TLS_KEYS = frozenset({"tls.crt", "tls.key", "ca.crt"})
# (group/version, kind) -> schema file under ../shared/crds: JSON Schemas of the whole object, or a KubeRay CRD.
CRD_FILES = {
    ("monitoring.coreos.com/v1", "ServiceMonitor"): "monitoring.coreos.com/servicemonitor_v1.json",
    ("monitoring.coreos.com/v1", "PodMonitor"): "monitoring.coreos.com/podmonitor_v1.json",
    ("monitoring.coreos.com/v1", "PrometheusRule"): "monitoring.coreos.com/prometheusrule_v1.json",
    ("cert-manager.io/v1", "Certificate"): "cert-manager.io/certificate_v1.json",
    ("cert-manager.io/v1", "Issuer"): "cert-manager.io/issuer_v1.json",
    ("cert-manager.io/v1", "ClusterIssuer"): "cert-manager.io/clusterissuer_v1.json",
    ("postgresql.cnpg.io/v1", "Cluster"): "postgresql.cnpg.io/cluster_v1.json",
    ("postgresql.cnpg.io/v1", "ScheduledBackup"): "postgresql.cnpg.io/scheduledbackup_v1.json",
    ("nvidia.com/v1", "ClusterPolicy"): "nvidia.com/clusterpolicy_v1.json",
    ("external-secrets.io/v1", "ExternalSecret"): "external-secrets.io/externalsecret_v1.json",
    ("external-secrets.io/v1", "SecretStore"): "external-secrets.io/secretstore_v1.json",
    ("external-secrets.io/v1", "ClusterSecretStore"): "external-secrets.io/clustersecretstore_v1.json",
    ("keda.sh/v1alpha1", "ScaledObject"): "keda.sh/scaledobject_v1alpha1.json",
    ("ray.io/v1", "RayCluster"): "ray.io/ray.io_rayclusters.yaml",
    ("ray.io/v1", "RayJob"): "ray.io/ray.io_rayjobs.yaml",
}


# ---------------------------------------------------------------------------------------------- schemas


def schema_problems(docs: Iterable[Doc], version: str = KUBERNETES_VERSION) -> list[str]:
    """Built-in kinds against the Kubernetes OpenAPI schemas of ``version``, strict (unknown fields fail)."""
    import kubernetes_validate

    problems = []
    for doc in docs:
        if (doc["apiVersion"], doc["kind"]) in CRD_FILES:
            continue
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            where = "/".join(str(p) for p in exc.path)
            problems.append(f"{doc['kind']}/{doc['metadata']['name']}: {where}: {exc.message}")
        except kubernetes_validate.SchemaNotFoundError:
            problems.append(f"{doc['kind']}/{doc['metadata']['name']}: no schema for {doc['apiVersion']}")
    return problems


def _strict_openapi(node: Any) -> Any:
    """A CRD's OpenAPI v3 schema as a strict JSON Schema: objects without additionalProperties or
    x-kubernetes-preserve-unknown-fields refuse unknown fields, and int-or-string accepts either."""
    if isinstance(node, list):
        return [_strict_openapi(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {key: _strict_openapi(value) for key, value in node.items()}
    if out.pop("x-kubernetes-int-or-string", False):
        out.pop("type", None)
        out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    if (
        out.get("type") == "object"
        and "properties" in out
        and "additionalProperties" not in out
        and not out.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    return out


@functools.cache
def crd_validator(api_version: str, kind: str, crds: Path = CRDS) -> Any:
    """A jsonschema validator for one custom resource kind, read from ``crds``."""
    import jsonschema

    path = crds / CRD_FILES[(api_version, kind)]
    if path.suffix == ".json":
        schema = json.loads(path.read_text(encoding="utf-8"))
    else:
        loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # the KubeRay CRDs are megabytes of YAML
        crd = yaml.load(path.read_text(encoding="utf-8"), Loader=loader)
        version = api_version.split("/")[1]
        (served,) = [v for v in crd["spec"]["versions"] if v["name"] == version]
        schema = _strict_openapi(served["schema"]["openAPIV3Schema"])
        schema["properties"]["metadata"] = {"type": "object"}
    return jsonschema.Draft7Validator(schema)


def crd_problems(docs: Iterable[Doc], crds: Path = CRDS) -> list[str]:
    """Custom resources against their CRD schemas; a custom kind with no schema there is a problem too."""
    problems = []
    for doc in docs:
        key = (doc["apiVersion"], doc["kind"])
        if key not in CRD_FILES:
            if "." in doc["apiVersion"].split("/")[0] and not doc["apiVersion"].endswith(".k8s.io/v1"):
                problems.append(f"{doc['kind']}/{doc['metadata']['name']}: no CRD schema known for {key}")
            continue
        for error in crd_validator(*key, crds=crds).iter_errors(doc):
            where = "/".join(str(p) for p in error.absolute_path)
            problems.append(f"{doc['kind']}/{doc['metadata']['name']}: {where}: {error.message}")
    return problems


# ---------------------------------------------------------------------------------------------- checkov


def checkov_problems(files: Iterable[Path]) -> list[str]:
    """checkov (offline) on rendered manifests: failed checks, and skips without a reason."""
    files = list(files)
    command = [str(CHECKOV), "--skip-download", "--quiet", "--framework", "kubernetes", "-o", "json"]
    for path in files:
        command += ["-f", str(path)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=240, check=False)
    try:
        reports = json.loads(result.stdout)
    except json.JSONDecodeError:
        return [f"checkov gave no report (exit {result.returncode}): {result.stderr[-2000:]}"]
    problems = []
    for report in reports if isinstance(reports, list) else [reports]:
        results = report.get("results", {}) if isinstance(report, dict) else {}
        for failed in results.get("failed_checks", []):
            problems.append(f"{failed['check_id']} {failed['check_name']}: {failed['resource']}")
        for skipped in results.get("skipped_checks", []):
            reason = (skipped.get("check_result") or {}).get("suppress_comment", "")
            if len(reason.strip()) < 20:
                problems.append(f"{skipped['check_id']} skipped without a reason on {skipped['resource']}")
    return problems


def checkov_skips(docs: Iterable[Doc]) -> dict[str, list[str]]:
    """The inline checkov skips (``checkov.io/skipN`` annotations), by object."""
    skips: dict[str, list[str]] = {}
    for doc in docs:
        notes = doc["metadata"].get("annotations", {})
        found = [value for key, value in notes.items() if key.startswith("checkov.io/skip")]
        if found:
            skips[f"{doc['kind']}/{doc['metadata']['name']}"] = found
    return skips


# ---------------------------------------------------------------------------------------------- the code


@functools.cache
def _parser() -> argparse.ArgumentParser:
    from catalytic.cli import _parser

    return _parser()


def parse_command(command: list[str]) -> argparse.Namespace | str:
    """The parsed ``catalytic`` command line, or why the project's own parser refuses it."""
    if not command or command[0] != "catalytic":
        return f"{command[:1]} is not the catalytic command"
    parser = _parser()
    try:
        return parser.parse_args(command[1:])
    except SystemExit:
        return f"catalytic's parser refuses {' '.join(command[1:])!r}"


@functools.cache
def api_routes() -> frozenset[str]:
    """The paths the API serves (create_app's routes)."""
    from catalytic.service.app import create_app
    from catalytic.service.settings import Settings

    return frozenset(getattr(route, "path", "") for route in create_app(Settings(METRICS_PORT=0)).routes)


def _alias_names(field: Any) -> set[str]:
    alias = field.validation_alias
    choices = getattr(alias, "choices", [alias] if alias else [])
    return {c for c in choices if isinstance(c, str) and c.isupper()}


@functools.cache
def settings_read() -> frozenset[str]:
    """Every environment variable the code reads: Settings, WebhookConfig, and literal environment look-ups."""
    from catalytic.service.settings import Settings
    from catalytic.webhooks.config import WebhookConfig

    names: set[str] = set()
    for field in Settings.model_fields.values():
        names |= _alias_names(field)
    prefix = WebhookConfig.model_config.get("env_prefix", "")
    for field_name, field in WebhookConfig.model_fields.items():
        aliases = _alias_names(field)
        names |= aliases or {f"{prefix}{field_name}".upper()}
    lookup = re.compile(r"""(?:environ(?:\.get)?\(|environ\[|getenv\()\s*["']([A-Z][A-Z0-9_]+)["']""")
    for source in (ROOT / "catalytic").rglob("*.py"):
        names |= set(lookup.findall(source.read_text(encoding="utf-8")))
    import numba.core.config

    numba_source = Path(numba.core.config.__file__).read_text(encoding="utf-8")
    names |= {name for name in NUMBA_VARIABLES if f'"{name}"' in numba_source}
    boto = importlib.util.find_spec("botocore")
    if boto is not None and boto.origin is not None:
        credentials = (Path(boto.origin).parent / "credentials.py").read_text(encoding="utf-8")
        names |= {name for name in BOTO_VARIABLES if f"'{name}'" in credentials}
    return frozenset(names)


def _default_port(parsed: argparse.Namespace) -> int:
    from catalytic.service import defaults
    from catalytic.webhooks.health import DEFAULT_PORT

    if parsed.command == "serve":
        return int(parsed.port or defaults.PORT)
    return int(DEFAULT_PORT if parsed.port is None else parsed.port)


def _probe_paths(container: Doc) -> dict[str, tuple[str, Any]]:
    found = {}
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        http = container.get(probe, {}).get("httpGet")
        if http:
            found[probe] = (http["path"], http["port"])
    return found


def _configmap_data(docs: list[Doc], container: Doc) -> dict[str, str]:
    data: dict[str, str] = {}
    for source in container.get("envFrom", []):
        name = source.get("configMapRef", {}).get("name")
        data.update(next((c.get("data", {}) for c in find(docs, "ConfigMap", name)), {}))
    data.update({e["name"]: str(e["value"]) for e in container.get("env", []) if "value" in e})
    return data


def _container_problems(docs: list[Doc], owner: str, container: Doc) -> list[str]:
    from catalytic.service import defaults
    from catalytic.webhooks.health import PATHS

    where = f"{owner}/{container['name']}"
    image = str(container["image"])
    repository, _, tag = image.rpartition("/")[2].partition(":")
    if not repository.startswith("catalytic"):
        pinned = tag and tag != "latest" and any(ch.isdigit() for ch in tag)
        return [] if pinned else [f"{where}: third-party image {image} is not pinned to a version"]
    ours = set().union(*OWN_IMAGES.values())
    if image not in ours:
        return [f"{where}: image {image} is not one of {sorted(ours)}"]
    parsed = parse_command(command_of(container))
    if isinstance(parsed, str):
        return [f"{where}: {parsed}"]
    problems = []
    ports = {p["name"]: p["containerPort"] for p in container.get("ports", [])}
    env = _configmap_data(docs, container)
    if parsed.command in ("serve", "worker"):
        if ports.get("http") != _default_port(parsed):
            problems.append(f"{where}: port http {ports.get('http')} is not the one it serves, {_default_port(parsed)}")
        served = api_routes() if parsed.command == "serve" else frozenset(PATHS)
        probes = _probe_paths(container)
        for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
            if probe not in probes:
                problems.append(f"{where}: no {probe}")
        for probe, (path, port) in probes.items():
            if path not in served:
                problems.append(f"{where}: {probe} path {path} is not a route of `catalytic {parsed.command}`")
            if port not in ports and port not in ports.values():
                problems.append(f"{where}: {probe} port {port} is not a port of the container")
    if parsed.command == "serve":
        metrics = int(env.get("METRICS_PORT", defaults.METRICS_PORT))
        if ports.get("metrics") != metrics:
            problems.append(f"{where}: port metrics {ports.get('metrics')} but METRICS_PORT is {metrics}")
        if env.get("METRICS_HOST", defaults.METRICS_HOST) in ("127.0.0.1", "localhost"):
            problems.append(f"{where}: METRICS_HOST binds loopback, so nothing outside the pod can scrape it")
        if env.get("CATALYTIC_MIGRATE_ON_START", "true").lower() not in ("false", "0", "no", "off"):
            problems.append(f"{where}: serves with migrate-on-start; the migration Job migrates")
    for key in env.keys() | {item["name"] for item in container.get("env", [])}:
        if key not in settings_read():
            problems.append(f"{where}: {key} is not a setting the code reads")
    return problems


def consistency_problems(docs: Iterable[Doc]) -> list[str]:
    """The manifests against the code: commands, flags, ports, probe routes, settings and image names."""
    docs = list(docs)
    problems = []
    for config in find(docs, "ConfigMap"):
        if config["metadata"]["name"].startswith("catalytic-config"):
            problems += [
                f"ConfigMap/{config['metadata']['name']}: {key} is not a setting the code reads"
                for key in config.get("data", {})
                if key not in settings_read()
            ]
    for doc in workloads(docs):
        owner = f"{doc['kind']}/{doc['metadata']['name']}"
        for container in containers(doc):
            problems += _container_problems(docs, owner, container)
    problems += _ingress_problems(docs)
    return problems


_SIZE = re.compile(r"^(\d+)([kmg]?)$")


def _ingress_problems(docs: list[Doc]) -> list[str]:
    from catalytic.service import defaults

    limit = defaults.MAX_BODY_BYTES
    for config in find(docs, "ConfigMap"):
        if config["metadata"]["name"].startswith("catalytic-config"):
            limit = int(config.get("data", {}).get("CATALYTIC_MAX_BODY_BYTES", limit))
    problems = []
    for ingress in find(docs, "Ingress"):
        size = ingress["metadata"].get("annotations", {}).get("nginx.ingress.kubernetes.io/proxy-body-size", "1m")
        match = _SIZE.match(str(size).lower())
        scale = {"": 1, "k": 2**10, "m": 2**20, "g": 2**30}
        allowed = int(match.group(1)) * scale[match.group(2)] if match else -1
        if allowed != limit:
            problems.append(f"Ingress/{ingress['metadata']['name']}: body limit {size} is not the service's {limit}")
    return problems


# ---------------------------------------------------------------------------------------------- shape


def _pods(docs: list[Doc], name: str) -> Doc:
    (deployment,) = find(docs, "Deployment", name)
    return deployment


def network_problems(docs: Iterable[Doc]) -> list[str]:
    """Default deny both ways, DNS allowed to kube-system on UDP and TCP 53, and webhook egress no wider than
    the worker's SSRF guard allows."""
    from catalytic.webhooks.safety import check_address

    docs = list(docs)
    policies = find(docs, "NetworkPolicy")
    problems = []
    if not any(p["spec"]["podSelector"] == {} and set(p["spec"].get("policyTypes", [])) == {"Ingress", "Egress"}
               and not p["spec"].get("ingress") and not p["spec"].get("egress") for p in policies):  # fmt: skip
        problems.append("no default-deny NetworkPolicy for ingress and egress")
    dns = set()
    for policy in policies:
        if policy["spec"]["podSelector"] != {}:
            continue
        for rule in policy["spec"].get("egress", []):
            to_kube_system = any(
                peer.get("namespaceSelector", {}).get("matchLabels", {}).get("kubernetes.io/metadata.name")
                == "kube-system"
                for peer in rule.get("to", [])
            )
            if to_kube_system:
                dns |= {(p.get("protocol", "TCP"), p.get("port")) for p in rule.get("ports", [])}
    if not {("UDP", 53), ("TCP", 53)} <= dns:
        problems.append(f"DNS egress to kube-system on UDP and TCP 53 missing (allowed: {sorted(dns)})")
    must_exclude = ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "127.0.0.0/8", "169.254.0.0/16",
                    "100.64.0.0/10", "::1/128", "fc00::/7", "fe80::/10"]  # fmt: skip
    for policy in policies:
        for rule in policy["spec"].get("egress", []):
            for peer in rule.get("to", []):
                block = peer.get("ipBlock")
                if not block:
                    continue
                name = policy["metadata"]["name"]
                ports = {p.get("port") for p in rule.get("ports", [])}
                allowed = {80, 443, bucket_port(docs) or 443}
                if not ports or not ports <= allowed:
                    problems.append(f"NetworkPolicy/{name}: ipBlock egress on ports {sorted(ports)}, not {allowed}")
                cidr = ipaddress.ip_network(block["cidr"])
                excepted = [ipaddress.ip_network(e) for e in block.get("except", [])]
                for net in excepted:
                    for address in (net[0], net[-1]):
                        if check_address(address) is None:
                            problems.append(f"NetworkPolicy/{name}: except {net} holds {address}, which may receive")
                for wanted in map(ipaddress.ip_network, must_exclude):
                    same_family = [e for e in excepted if e.version == wanted.version]
                    inside = wanted.version == cidr.version and wanted.subnet_of(cidr)  # type: ignore[arg-type]
                    if inside and not any(wanted.subnet_of(e) for e in same_family):  # type: ignore[arg-type]
                        problems.append(f"NetworkPolicy/{name}: {cidr} does not except {wanted}")
    return problems


def shape_problems(docs: Iterable[Doc], *, api_replicas: int = 3, worker_replicas: int = 2) -> list[str]:
    """The production shape: replicas, rolling updates, security context, HPA 3..20, PDBs, migration Job."""
    docs = list(docs)
    problems = []
    api = _pods(docs, "catalytic-api")
    worker = _pods(docs, "catalytic-worker")
    if api["spec"]["replicas"] != api_replicas or worker["spec"]["replicas"] != worker_replicas:
        problems.append(f"replicas: API {api['spec']['replicas']}, worker {worker['spec']['replicas']}")
    for deployment in (api, worker):
        name = deployment["metadata"]["name"]
        if deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] != 0:
            problems.append(f"{name}: rolling update may take pods away before new ones are ready")
        spec = pod_spec(deployment)
        if spec.get("automountServiceAccountToken") is not False:
            problems.append(f"{name}: mounts a service-account token")
        if spec.get("securityContext", {}).get("seccompProfile", {}).get("type") != "RuntimeDefault":
            problems.append(f"{name}: no RuntimeDefault seccomp profile")
        for container in containers(deployment):
            context = container.get("securityContext", {})
            if not (context.get("readOnlyRootFilesystem") and context.get("runAsNonRoot")
                    and context.get("allowPrivilegeEscalation") is False
                    and context.get("capabilities", {}).get("drop") == ["ALL"]):  # fmt: skip
                problems.append(f"{name}/{container['name']}: security context is not restricted")
            if not container.get("resources", {}).get("limits") or not container["resources"].get("requests"):
                problems.append(f"{name}/{container['name']}: no resource requests and limits")
    api_spec = pod_spec(api)
    if "preStop" not in api_spec["containers"][0].get("lifecycle", {}):
        problems.append("catalytic-api: no preStop hook")
    keys = {c["topologyKey"] for c in api_spec.get("topologySpreadConstraints", [])}
    if not {"kubernetes.io/hostname", "topology.kubernetes.io/zone"} <= keys:
        problems.append(f"catalytic-api: spread over {sorted(keys)}, not nodes and zones")
    hpas = [h for h in find(docs, "HorizontalPodAutoscaler") if h["spec"]["scaleTargetRef"]["name"] == "catalytic-api"]
    if api_replicas == 3 and not any(h["spec"]["minReplicas"] == 3 and h["spec"]["maxReplicas"] == 20 for h in hpas):
        problems.append("no HPA from 3 to 20 on catalytic-api")
    if any(len(h["spec"]["metrics"]) < 2 for h in hpas):
        problems.append("the API HPA scales on one signal only")
    selected = {tuple(sorted(p["spec"]["selector"]["matchLabels"].items())) for p in find(docs, "PodDisruptionBudget")}
    for deployment in (api, worker):
        if tuple(sorted(deployment["spec"]["selector"]["matchLabels"].items())) not in selected:
            problems.append(f"{deployment['metadata']['name']}: no PodDisruptionBudget")
    jobs = [j for j in find(docs, "Job") if command_of(containers(j)[0])[:2] == ["catalytic", "migrate"]]
    if len(jobs) != 1:
        problems.append(f"{len(jobs)} migration Jobs (catalytic migrate), not 1")
    return problems


def secret_problems(docs: Iterable[Doc]) -> list[str]:
    """No Secret with values in the rendered manifests: secrets are referenced, never committed."""
    return [
        f"Secret/{d['metadata']['name']} carries values in the repository"
        for d in find(docs, "Secret")
        if d.get("data") or d.get("stringData")
    ]


# ---------------------------------------------------------------------------------------------- secrets and results


def _secrets_made(docs: list[Doc]) -> dict[str, frozenset[str] | None]:
    """Secret name -> the keys it will hold, for every Secret the rendered objects make (None: keys unknown)."""
    made: dict[str, frozenset[str] | None] = {}
    for external in find(docs, "ExternalSecret"):
        spec = external["spec"]
        name = spec.get("target", {}).get("name", external["metadata"]["name"])
        template = spec.get("target", {}).get("template", {}).get("data")
        if template is not None:
            made[name] = frozenset(template)
        elif spec.get("dataFrom"):
            made[name] = None
        else:
            made[name] = frozenset(item["secretKey"] for item in spec.get("data", []))
    for cluster in find(docs, "Cluster"):
        made[f"{cluster['metadata']['name']}-app"] = CNPG_APP_KEYS
    for certificate in find(docs, "Certificate"):
        made[certificate["spec"]["secretName"]] = TLS_KEYS
    return made


def _secret_references(docs: list[Doc]) -> list[tuple[str, str, str | None, bool]]:
    """(where, secret, key or None for the whole Secret, optional) for every reference to a Secret."""
    found: list[tuple[str, str, str | None, bool]] = []
    for doc in workloads(docs):
        owner = f"{doc['kind']}/{doc['metadata']['name']}"
        for container in containers(doc):
            where = f"{owner}/{container['name']}"
            for item in container.get("env", []):
                ref = item.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    found.append((f"{where} env {item['name']}", ref["name"], ref["key"], bool(ref.get("optional"))))
            for source in container.get("envFrom", []):
                ref = source.get("secretRef")
                if ref:
                    found.append((f"{where} envFrom", ref["name"], None, bool(ref.get("optional"))))
        for volume in pod_spec(doc).get("volumes", []):
            secret = volume.get("secret")
            if secret:
                keys = [item["key"] for item in secret.get("items", [])] or [None]
                optional = bool(secret.get("optional"))
                found += [(f"{owner} volume {volume['name']}", secret["secretName"], k, optional) for k in keys]
    for cluster in find(docs, "Cluster"):
        credentials = cluster["spec"].get("backup", {}).get("barmanObjectStore", {}).get("s3Credentials", {})
        for field, ref in credentials.items():
            if isinstance(ref, dict) and "name" in ref:
                found.append((f"Cluster/{cluster['metadata']['name']} {field}", ref["name"], ref["key"], False))
    return found


def secret_reference_problems(docs: Iterable[Doc]) -> list[str]:
    """Every Secret a pod or operator object refers to is made by the rendered objects (an ExternalSecret,
    CloudNativePG, cert-manager) with the key it names; an optional reference may name a Secret that is absent,
    but not a key its Secret lacks."""
    docs = list(docs)
    made = _secrets_made(docs)
    problems = []
    for where, name, key, optional in _secret_references(docs):
        if name not in made:
            if not optional:
                problems.append(f"{where}: Secret {name} is made by nothing in the rendering")
            continue
        keys = made[name]
        if key is not None and keys is not None and key not in keys:
            problems.append(f"{where}: Secret {name} has no key {key} (it holds {sorted(keys)})")
    return problems


def _service_config(docs: list[Doc]) -> dict[str, str]:
    for config in find(docs, "ConfigMap"):
        if config["metadata"]["name"].startswith("catalytic-config"):
            data: dict[str, str] = config.get("data", {})
            return data
    return {}


def bucket_port(docs: Iterable[Doc]) -> int | None:
    """The TCP port of the results bucket's endpoint (RESULTS_S3_ENDPOINT_URL, else AWS's 443); None: no bucket."""
    config = _service_config(list(docs))
    if not config.get("RESULTS_S3_BUCKET", "").strip():
        return None
    endpoint = urlsplit(config.get("RESULTS_S3_ENDPOINT_URL", "").strip() or "https://s3.amazonaws.com")
    return endpoint.port or (80 if endpoint.scheme == "http" else 443)


def _egress_allows(docs: list[Doc], labels: dict[str, str], port: int) -> bool:
    for policy in find(docs, "NetworkPolicy"):
        selector = policy["spec"]["podSelector"].get("matchLabels", {})
        if policy["spec"]["podSelector"].get("matchExpressions") or not selector.items() <= labels.items():
            continue
        for rule in policy["spec"].get("egress", []):
            ports = [p for p in rule.get("ports", []) if p.get("protocol", "TCP") == "TCP"]
            if not rule.get("ports") or any(p.get("port") == port for p in ports):
                return True
    return False


def _image_extras(image: str) -> set[str]:
    dockerfile = ROOT / ("Dockerfile.gpu" if image.endswith("-gpu") else "Dockerfile")
    found = re.search(r'pip install [^\n]*"\.\[([a-z0-9,]+)\]"', dockerfile.read_text(encoding="utf-8"))
    return set(found.group(1).split(",")) if found else set()


def results_store_problems(docs: Iterable[Doc]) -> list[str]:
    """Where each API Deployment keeps large job results, and that it can.

    With RESULTS_S3_BUCKET: the image installs boto3 (the ``s3`` extra), the pods get both keys of the bucket's
    Secret (or run under pod identity), and egress reaches the endpoint's port. Without: RESULTS_DIR is an
    absolute path on a writable volume, one that every replica shares when the Deployment may run several.
    """
    docs = list(docs)
    config = _service_config(docs)
    port = bucket_port(docs)
    made = _secrets_made(docs)
    problems = []
    for deployment in find(docs, "Deployment"):
        spec = pod_spec(deployment)
        for container in spec["containers"]:
            if command_of(container)[:2] != ["catalytic", "serve"]:
                continue
            where = f"Deployment/{deployment['metadata']['name']}/{container['name']}"
            if port is not None:
                if "s3" not in _image_extras(str(container["image"])):
                    problems.append(f"{where}: the image {container['image']} lacks the s3 extra (boto3)")
                refs = {
                    item["name"]: item["valueFrom"]["secretKeyRef"]
                    for item in container.get("env", [])
                    if "secretKeyRef" in item.get("valueFrom", {})
                }
                identity = any(
                    key.endswith(("role-arn", "gcp-service-account", "client-id"))
                    for account in find(docs, "ServiceAccount", spec.get("serviceAccountName", "default"))
                    for key in account["metadata"].get("annotations", {})
                )
                for variable in BOTO_VARIABLES:
                    ref = refs.get(variable)
                    if not identity and (ref is None or ref["name"] not in made):
                        problems.append(f"{where}: {variable} comes from no Secret the rendering makes")
                labels = deployment["spec"]["template"]["metadata"].get("labels", {})
                if not _egress_allows(docs, labels, port):
                    problems.append(f"{where}: no egress to the results bucket on TCP {port}")
                continue
            results_dir = config.get("RESULTS_DIR", "")
            mounts = {m["mountPath"].rstrip("/"): m for m in container.get("volumeMounts", [])}
            mount = next((m for path, m in mounts.items() if (results_dir + "/").startswith(path + "/")), None)
            if not results_dir.startswith("/") or mount is None or mount.get("readOnly"):
                problems.append(f"{where}: RESULTS_DIR {results_dir!r} is not on a writable volume")
                continue
            volume = next(v for v in spec.get("volumes", []) if v["name"] == mount["name"])
            shared = "persistentVolumeClaim" in volume
            most = max(
                [deployment["spec"].get("replicas", 1)]
                + [h["spec"]["maxReplicas"] for h in find(docs, "HorizontalPodAutoscaler")
                   if h["spec"]["scaleTargetRef"]["name"] == deployment["metadata"]["name"]]
            )  # fmt: skip
            if most > 1 and not shared:
                problems.append(
                    f"{where}: up to {most} replicas keep results in their own {results_dir}: one that did not "
                    "run a job cannot serve its result (set RESULTS_S3_BUCKET, or a shared volume)"
                )
    return problems
