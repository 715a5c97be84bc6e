"""Write the monitoring component's generated files from code: the PrometheusRule object and the Grafana dashboards.

Sources, in ``k8s/components/monitoring/``:

* ``rules/*.rules.yml``: the recording and alerting rules (plain Prometheus rule files, read by promtool and its
  unit tests in ``tests/``); this script wraps them, unchanged, in ``prometheusrule.yaml``;
* the dashboards below, built with grafana-foundation-sdk into ``dashboards/*.json``, which the component's
  kustomization turns into ConfigMaps labelled for the Grafana sidecar.

Usage::

    python tools/monitoring.py           # write the generated files
    python tools/monitoring.py --check   # exit 1 and name the files that differ from what the code generates

``tests/deploy/test_monitoring_*.py`` regenerate the files and compare, parse every dashboard query with promtool,
and hold every metric and label they name against the live service.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
COMPONENT = ROOT / "k8s" / "components" / "monitoring"
RULE_FILES = ("catalytic-slo.rules.yml", "catalytic-alerts.rules.yml")
PROMETHEUS_RULE = COMPONENT / "prometheusrule.yaml"
DASHBOARD_DIR = COMPONENT / "dashboards"

API = 'job="catalytic-api", namespace="$namespace"'
WORKERS = 'job=~"catalytic-api|catalytic-worker", namespace="$namespace"'
PODS = 'namespace="$namespace", pod=~"catalytic-(api|worker).*", container=~"api|worker"'
NS = 'namespace="$namespace"'
RAY_DASHBOARDS = (
    ("Ray: cluster (Ray's default dashboard)", "rayDefaultDashboard"),
    ("Ray: data", "rayDataDashboard"),
)
"""Dashboards Ray generates itself (``/tmp/ray/session_latest/metrics/grafana/dashboards`` on the head node), linked
by the uids Ray gives them rather than drawn again here."""


@dataclass(frozen=True)
class Query:
    """One PromQL query of a panel and its legend (``$namespace`` is the dashboard's namespace variable)."""

    expr: str
    legend: str = ""


@dataclass(frozen=True)
class Panel:
    """A panel: a time series or a single stat, its unit (Grafana unit ids) and its queries."""

    title: str
    queries: tuple[Query, ...]
    unit: str = "short"
    kind: str = "timeseries"
    description: str = ""
    width: int = 12


@dataclass(frozen=True)
class Row:
    """A titled row of panels."""

    title: str
    panels: tuple[Panel, ...]


@dataclass(frozen=True)
class Dashboard:
    """One dashboard: its uid (also the file and ConfigMap name), title, rows and links."""

    uid: str
    title: str
    description: str
    rows: tuple[Row, ...]
    links: tuple[tuple[str, str], ...] = field(default=())


def _q(expr: str, legend: str = "") -> Query:
    return Query(" ".join(expr.split()), legend)


SERVICE = Dashboard(
    uid="catalytic-service",
    title="Catalytic / Service overview",
    description="Requests, errors and latency by route, the SLOs, in-flight requests, caches, replicas and resources.",
    rows=(
        Row(
            "Objectives",
            (
                Panel(
                    "5xx ratio (objective: at most 0.1 % over 30 days)",
                    (
                        _q(f"namespace_job:http_requests_errors:ratio_rate5m{{{API}}}", "5 m"),
                        _q(f"namespace_job:http_requests_errors:ratio_rate1h{{{API}}}", "1 h"),
                        _q(f"namespace_job:http_requests_errors:ratio_rate1d{{{API}}}", "1 d"),
                    ),
                    unit="percentunit",
                    width=8,
                ),
                Panel(
                    "Path queries over 100 ms, lattices up to 10^6 vertices (objective: at most 1 %)",
                    (
                        _q(f"namespace_job:path_requests_slow:ratio_rate5m{{{API}}}", "5 m"),
                        _q(f"namespace_job:path_requests_slow:ratio_rate1h{{{API}}}", "1 h"),
                        _q(f"namespace_job:path_requests_slow:ratio_rate1d{{{API}}}", "1 d"),
                    ),
                    unit="percentunit",
                    width=8,
                ),
                Panel(
                    "Path latency by lattice size class",
                    (
                        _q(
                            f"namespace_job_size_class:path_request_duration_seconds:p95_5m{{{API}}}",
                            "p95 {{size_class}}",
                        ),
                        _q(
                            f"namespace_job_size_class:path_request_duration_seconds:p99_5m{{{API}}}",
                            "p99 {{size_class}}",
                        ),
                    ),
                    unit="s",
                    width=8,
                ),
            ),
        ),
        Row(
            "Traffic",
            (
                Panel(
                    "Requests by route",
                    (_q(f"namespace_job_route:http_requests:rate5m{{{API}}}", "{{route}}"),),
                    unit="reqps",
                ),
                Panel(
                    "5xx by route",
                    (_q(f"namespace_job_route:http_requests_errors:rate5m{{{API}}}", "{{route}}"),),
                    unit="reqps",
                ),
                Panel(
                    "Latency by route: p50, p95, p99",
                    (
                        _q(f"namespace_job_route:http_request_duration_seconds:p50_5m{{{API}}}", "p50 {{route}}"),
                        _q(f"namespace_job_route:http_request_duration_seconds:p95_5m{{{API}}}", "p95 {{route}}"),
                        _q(f"namespace_job_route:http_request_duration_seconds:p99_5m{{{API}}}", "p99 {{route}}"),
                    ),
                    unit="s",
                ),
                Panel(
                    "In-flight requests by pod",
                    (_q(f"sum by (pod) (http_requests_in_flight{{{API}}})", "{{pod}}"),),
                ),
            ),
        ),
        Row(
            "Caches and dependencies",
            (
                Panel(
                    "Cache hit ratio by layer",
                    (_q(f"namespace_layer:cache_hits:ratio_rate5m{{{NS}}}", "{{layer}}"),),
                    unit="percentunit",
                    width=8,
                ),
                Panel(
                    "Redis, database and results store reachable, by pod",
                    (
                        _q(
                            f"cache_redis_up{{{API}}} and on (namespace, pod) cache_redis_configured{{{API}}} == 1",
                            "redis {{pod}}",
                        ),
                        _q(f"database_up{{{API}}}", "database {{pod}}"),
                        _q(f"results_store_up{{{API}}}", "results store {{pod}}"),
                    ),
                    width=8,
                ),
                Panel(
                    "Database probe latency (SELECT 1)",
                    (_q(f"namespace_job:database_ping_duration_seconds:p95_5m{{{API}}}", "p95"),),
                    unit="s",
                    width=8,
                ),
            ),
        ),
        Row(
            "Replicas and resources",
            (
                Panel(
                    "Available replicas by Deployment",
                    (
                        _q(
                            f'kube_deployment_status_replicas_available{{{NS}, deployment=~"catalytic-.*"}}',
                            "{{deployment}}",
                        ),
                    ),
                    width=8,
                ),
                Panel(
                    "CPU by pod",
                    (
                        _q(
                            f"sum by (pod) (rate(container_cpu_usage_seconds_total{{{PODS}}}[5m]))",
                            "{{pod}}",
                        ),
                    ),
                    unit="cores",
                    width=8,
                ),
                Panel(
                    "RSS by pod",
                    (_q(f"sum by (pod) (container_memory_rss{{{PODS}}})", "{{pod}}"),),
                    unit="bytes",
                    width=8,
                ),
            ),
        ),
    ),
)

COMPUTE = Dashboard(
    uid="catalytic-compute",
    title="Catalytic / Compute",
    description="Operations by operation and backend, GPU against CPU, fallbacks, jobs, caches and GPU memory.",
    rows=(
        Row(
            "Operations",
            (
                Panel(
                    "Operations by operation and backend",
                    (
                        _q(
                            f"namespace_operation_backend:lattice_operations:rate5m{{{NS}}}",
                            "{{operation}} on {{backend}}",
                        ),
                    ),
                    unit="ops",
                ),
                Panel(
                    "Compute time by operation: p50, p95",
                    (
                        _q(
                            "histogram_quantile(0.5, sum by (operation, le) "
                            f"(rate(lattice_operation_duration_seconds_bucket{{{API}}}[5m])))",
                            "p50 {{operation}}",
                        ),
                        _q(
                            "histogram_quantile(0.95, sum by (operation, le) "
                            f"(rate(lattice_operation_duration_seconds_bucket{{{API}}}[5m])))",
                            "p95 {{operation}}",
                        ),
                    ),
                    unit="s",
                ),
                Panel(
                    "Share of operations by backend (GPU: cupy)",
                    (
                        _q(
                            f"sum by (backend) (namespace_operation_backend:lattice_operations:rate5m{{{NS}}}) "
                            f"/ scalar(sum(namespace_operation_backend:lattice_operations:rate5m{{{NS}}}))",
                            "{{backend}}",
                        ),
                    ),
                    unit="percentunit",
                    width=8,
                ),
                Panel(
                    "GPU to CPU fallbacks by pod",
                    (_q(f"sum by (pod) (increase(backend_fallbacks_total{{{API}}}[5m]))", "{{pod}}"),),
                    width=8,
                ),
                Panel(
                    "Lattice cache bytes by pod",
                    (_q(f"sum by (pod) (lattice_cache_bytes{{{API}}})", "{{pod}}"),),
                    unit="bytes",
                    width=8,
                ),
            ),
        ),
        Row(
            "Jobs",
            (
                Panel(
                    "Job queue against capacity",
                    (
                        _q(f"sum(job_queue_size{{{API}}})", "queued or running"),
                        _q(f"sum(job_queue_capacity{{{API}}})", "capacity"),
                    ),
                    width=8,
                ),
                Panel(
                    "Oldest queued job",
                    (_q(f"namespace:job_oldest_queued_age_seconds:max{{{NS}}}", "age"),),
                    unit="s",
                    width=8,
                ),
                Panel(
                    "Jobs finished by status, and taken over",
                    (
                        _q(f"namespace_status:jobs:rate5m{{{NS}}}", "{{status}}"),
                        _q(f"sum(rate(jobs_taken_over_total{{{API}}}[5m]))", "taken over"),
                    ),
                    unit="ops",
                    width=8,
                ),
                Panel(
                    "Stored results by location",
                    (_q(f"max by (location) (results_store_bytes{{{API}}})", "{{location}}"),),
                    unit="bytes",
                    width=8,
                ),
            ),
        ),
        Row(
            "GPUs",
            (
                Panel(
                    "GPU utilisation (DCGM)",
                    (_q(f"DCGM_FI_DEV_GPU_UTIL{{{NS}}}", "{{pod}} GPU {{gpu}}"),),
                    unit="percent",
                    width=8,
                ),
                Panel(
                    "GPU memory used (DCGM)",
                    (
                        _q(
                            f"DCGM_FI_DEV_FB_USED{{{NS}}}"
                            f" / (DCGM_FI_DEV_FB_USED{{{NS}}} + DCGM_FI_DEV_FB_FREE{{{NS}}})",
                            "{{pod}} GPU {{gpu}}",
                        ),
                    ),
                    unit="percentunit",
                    width=8,
                ),
                Panel(
                    "GPU memory in use, as the pod's NVML reads it",
                    (_q(f"gpu_memory_used_bytes{{{API}}}", "{{pod}} GPU {{gpu}}"),),
                    unit="bytes",
                    width=8,
                ),
            ),
        ),
    ),
    links=RAY_DASHBOARDS,
)

WEBHOOKS = Dashboard(
    uid="catalytic-webhooks",
    title="Catalytic / Webhooks",
    description="Deliveries by outcome, event-to-delivery latency, pending and oldest ages, disabled endpoints.",
    rows=(
        Row(
            "Deliveries",
            (
                Panel(
                    "Delivery attempts by outcome",
                    (_q(f"namespace_outcome:webhook_deliveries:rate5m{{{NS}}}", "{{outcome}}"),),
                    unit="ops",
                ),
                Panel(
                    "Failed share of attempts (30 m)",
                    (_q(f"namespace:webhook_deliveries_failed:ratio_rate30m{{{NS}}}", "failed"),),
                    unit="percentunit",
                ),
                Panel(
                    "Event to delivery, successful deliveries",
                    (
                        _q(f"namespace:webhook_event_to_delivery_seconds:p95_5m{{{NS}}}", "p95"),
                        _q(
                            "histogram_quantile(0.5, sum by (le) "
                            f"(rate(webhook_event_to_delivery_seconds_bucket{{{WORKERS}}}[5m])))",
                            "p50",
                        ),
                    ),
                    unit="s",
                ),
                Panel(
                    "Attempt duration p95",
                    (
                        _q(
                            "histogram_quantile(0.95, sum by (le) "
                            f"(rate(webhook_delivery_duration_seconds_bucket{{{WORKERS}}}[5m])))",
                            "p95",
                        ),
                    ),
                    unit="s",
                ),
            ),
        ),
        Row(
            "Backlog",
            (
                Panel(
                    "Deliveries due now",
                    (_q(f"namespace:webhook_queue_size:max{{{NS}}}", "due"),),
                    width=8,
                ),
                Panel(
                    "Oldest pending delivery, and how long the oldest due one has waited",
                    (
                        _q(f"namespace:webhook_oldest_pending_delivery_age_seconds:max{{{NS}}}", "oldest pending"),
                        _q(f"namespace:webhook_oldest_due_delivery_wait_seconds:max{{{NS}}}", "oldest due, waiting"),
                    ),
                    unit="s",
                    width=8,
                ),
                Panel(
                    "Dead letters and endpoints disabled",
                    (
                        _q(
                            f'sum(increase(webhook_deliveries_total{{{WORKERS}, outcome="dead"}}[1h]))',
                            "dead letters (1 h)",
                        ),
                        _q(
                            f"sum(increase(webhook_endpoints_disabled_total{{{WORKERS}}}[1h]))",
                            "endpoints disabled (1 h)",
                        ),
                    ),
                    width=8,
                ),
                Panel(
                    "Worker replicas available",
                    (
                        _q(
                            f'kube_deployment_status_replicas_available{{{NS}, deployment="catalytic-worker"}}',
                            "available",
                        ),
                    ),
                    width=8,
                ),
            ),
        ),
    ),
)

DASHBOARDS = (SERVICE, COMPUTE, WEBHOOKS)


def dashboard_queries(spec: Dashboard) -> Iterator[Query]:
    """Every query of a dashboard, panel by panel."""
    for row in spec.rows:
        for panel in row.panels:
            yield from panel.queries


NAMESPACE_QUERY = 'label_values(up{job="catalytic-api"}, namespace)'
"""The namespace variable's query (Grafana's label_values, not PromQL): the namespaces with an API target."""


def build_dashboard(spec: Dashboard) -> dict[str, Any]:
    """The dashboard as Grafana's JSON model, built with grafana-foundation-sdk."""
    from grafana_foundation_sdk.builders import dashboard as builders
    from grafana_foundation_sdk.builders import prometheus, stat, timeseries
    from grafana_foundation_sdk.cog.encoder import JSONEncoder
    from grafana_foundation_sdk.models.dashboard import DashboardCursorSync, DashboardLinkType, DataSourceRef

    source = DataSourceRef(type_val="prometheus", uid="${datasource}")
    board = (
        builders.Dashboard(spec.title)
        .uid(spec.uid)
        .description(spec.description)
        .tags(["catalytic"])
        .editable()
        .refresh("30s")
        .time("now-6h", "now")
        .timezone("utc")
        .tooltip(DashboardCursorSync.CROSSHAIR)
        .with_variable(builders.DatasourceVariable("datasource").label("Data source").type("prometheus"))
        .with_variable(builders.QueryVariable("namespace").label("Namespace").datasource(source).query(NAMESPACE_QUERY))
    )
    for other in DASHBOARDS:
        if other.uid != spec.uid:
            board = board.link(
                builders.DashboardLink(other.title).type(DashboardLinkType.LINK).url(f"/d/{other.uid}").keep_time(True)
            )
    for title, uid in spec.links:
        board = board.link(builders.DashboardLink(title).type(DashboardLinkType.LINK).url(f"/d/{uid}").keep_time(True))
    for row in spec.rows:
        board = board.with_row(builders.Row(row.title))
        for panel in row.panels:
            built: Any = stat.Panel() if panel.kind == "stat" else timeseries.Panel()
            built = built.title(panel.title).unit(panel.unit).datasource(source).height(8).span(panel.width)
            if panel.description:
                built = built.description(panel.description)
            for index, query in enumerate(panel.queries):
                target = prometheus.Dataquery().expr(query.expr).ref_id(chr(ord("A") + index)).range()
                if query.legend:
                    target = target.legend_format(query.legend)
                built = built.with_target(target)
            board = board.with_panel(built)
    model: dict[str, Any] = json.loads(json.dumps(board.build(), cls=JSONEncoder))
    return model


class _BlockDumper(yaml.SafeDumper):
    """Writes multi-line strings (the rules' expressions) as literal blocks, as in the rule files."""


def _represent_text(dumper: yaml.SafeDumper, text: str) -> yaml.Node:
    return dumper.represent_scalar("tag:yaml.org,2002:str", text, style="|" if "\n" in text else None)


_BlockDumper.add_representer(str, _represent_text)


def prometheus_rule() -> dict[str, Any]:
    """The PrometheusRule object: the groups of the plain rule files, unchanged."""
    groups: list[Any] = []
    for name in RULE_FILES:
        groups += yaml.safe_load((COMPONENT / "rules" / name).read_text(encoding="utf-8"))["groups"]
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {
            "name": "catalytic",
            "labels": {"app.kubernetes.io/part-of": "catalytic", "app.kubernetes.io/component": "monitoring"},
        },
        "spec": {"groups": groups},
    }


def generated_files() -> dict[Path, str]:
    """Every generated file and the text it must hold."""
    header = (
        "# Generated by tools/monitoring.py from rules/*.rules.yml: edit those files, then run the tool.\n"
        "# Held against the rule files by tests/deploy/test_monitoring_rules.py.\n"
    )
    rule_text = header + yaml.dump(prometheus_rule(), Dumper=_BlockDumper, sort_keys=False, width=120)
    files = {PROMETHEUS_RULE: rule_text}
    for spec in DASHBOARDS:
        files[DASHBOARD_DIR / f"{spec.uid}.json"] = json.dumps(build_dashboard(spec), indent=2, sort_keys=True) + "\n"
    return files


def main(argv: Sequence[str] | None = None) -> int:
    """Write the generated files, or with ``--check`` report those that differ; returns the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="compare instead of writing")
    args = parser.parse_args(argv)
    stale = []
    for path, text in generated_files().items():
        current = path.read_text(encoding="utf-8") if path.exists() else None
        if current == text:
            continue
        if args.check:
            stale.append(path.relative_to(ROOT))
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
            print(f"wrote {path.relative_to(ROOT)}")
    for path in stale:
        print(f"{path} differs from what tools/monitoring.py generates: run it", file=sys.stderr)
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main())
