"""The metric contract: every metric and label that a rule or a dashboard names is served by the live processes.

``catalytic serve --workers 2`` (the multiprocess metrics path, with Redis) and ``catalytic worker`` run as real
processes on loopback against one SQLite database. One request of each kind goes to the API, a job runs and its
webhook is delivered to a receiver in this test; then both metrics ports are scraped. Metrics of other exporters
(DCGM, kube-state-metrics, the kubelet, Prometheus's ``up``) are listed apart in ``monitoring_queries.EXTERNAL``;
the GPU memory gauges are served only where NVML finds a GPU, and are tested here with a stand-in NVML.
"""

from __future__ import annotations

import base64
import http.server
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import httpx
import pytest
from monitoring_queries import EXTERNAL, TARGET_LABELS, expressions, recording_rules
from prometheus_client.parser import text_string_to_metric_families
from servers import free_port, redis_server, stop_process  # noqa: F401  (fixture)

from catalytic.service.exposition import GpuMemoryCollector, clear_multiprocess_dir
from catalytic.service.metrics import SIZE_CLASSES
from catalytic.webhooks.metrics import OUTCOMES

pytestmark = [pytest.mark.redis, pytest.mark.slow, pytest.mark.xdist_group("monitoring-contract")]

GPU_ONLY = frozenset({"gpu_memory_used_bytes", "gpu_memory_total_bytes"})
SIZE_CLASS_VALUES = frozenset({label for _, label in SIZE_CLASSES} | {"over_1e6", "unknown"})
STALE = "stale_marker_total"


@dataclass
class Scrape:
    """One scrape: sample name → the label sets it was served with, and the exposition text."""

    text: str
    samples: dict[str, list[dict[str, str]]]

    def value(self, name: str, **labels: str) -> float | None:
        for family in text_string_to_metric_families(self.text):
            for sample in family.samples:
                if sample.name == name and labels.items() <= sample.labels.items():
                    return float(sample.value)
        return None


def scrape(port: int) -> Scrape:
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    samples: dict[str, list[dict[str, str]]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append(dict(sample.labels))
    return Scrape(text, samples)


class _Receiver(http.server.BaseHTTPRequestHandler):
    """A webhook receiver: acknowledges every POST and keeps its body."""

    received: ClassVar[list[bytes]] = []

    def do_POST(self) -> None:
        self.received.append(self.rfile.read(int(self.headers.get("content-length", 0))))
        self.send_response(204)
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        return


class Process:
    """A ``catalytic`` command in a subprocess, its output in a file; stopped by its process id."""

    def __init__(self, args: list[str], env: dict[str, str], log: Path) -> None:
        self.log = log
        self._out = open(log, "wb")  # noqa: SIM115 - kept open for the child's lifetime, closed in stop()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "catalytic.cli", *args], env=env, stdout=self._out, stderr=subprocess.STDOUT
        )

    def wait_for(self, url: str, timeout: float = 240.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process.poll() is None, self.log.read_text(errors="replace")
            try:
                if httpx.get(url, timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise AssertionError(f"{url} never answered 200:\n{self.log.read_text(errors='replace')}")

    def stop(self) -> None:
        stop_process(self.process)
        self._out.close()


@dataclass
class Live:
    api: Scrape
    worker: Scrape
    metrics_dir: Path
    lattice_cache_bytes_before_delete: float | None


def _leave_stale_file(directory: Path) -> None:
    """A counter file as a process of an earlier start would have left it."""
    from prometheus_client.mmap_dict import MmapedDict, mmap_key

    stale = MmapedDict(str(directory / "counter_4242424.db"))
    stale.write_value(mmap_key("stale_marker", STALE, [], [], "left by a dead process"), 7.0, 0.0)
    stale.close()


def _drive(client: httpx.Client, hook_url: str) -> str:
    """One request of each kind but the deletion; returns the id of the lattice to delete."""
    assert client.get("/health").status_code == 200
    assert client.get("/ready").status_code == 200
    endpoint = client.post("/api/webhooks", json={"url": hook_url, "event_types": ["job.succeeded"]})
    assert endpoint.status_code == 201, endpoint.text
    assert client.get("/api/webhooks").status_code == 200
    created = client.post("/api/lattice/create", json={"shape": [30, 30], "periodic": False})
    assert created.status_code == 201, created.text
    lattice_id = created.json()["id"]
    assert client.get("/api/lattices").status_code == 200
    assert client.get(f"/api/lattice/{lattice_id}").status_code == 200
    path = {"lattice_id": lattice_id, "start": [0, 0], "goal": [29, 29]}
    for _ in range(2):  # computed, then a cache hit
        assert client.post("/api/lattice/path", json=path).status_code == 200
    inline = {"lattice": {"shape": [8, 8]}, "start": [0, 0], "goal": [7, 7]}
    assert client.post("/api/lattice/path", json=inline).status_code == 200
    assert client.post("/api/lattice/analyze", json={"lattice_id": lattice_id}).status_code == 200
    assert client.post("/api/lattice/components", json={"lattice_id": lattice_id}).status_code == 200
    array = {"data": base64.b64encode(bytes(range(16))).decode(), "dtype": "uint8", "shape": [16], "op": "xor"}
    scrambled = client.post("/api/lattice/transform", json=array)
    assert scrambled.status_code == 200
    assert client.post("/api/lattice/inverse", json={**array, "data": scrambled.json()["data"]}).status_code == 200
    field = client.post("/api/lattice/distance-field", json={"lattice_id": lattice_id, "sources": [[0, 0]]})
    assert field.status_code == 202, field.text
    job_id = field.json()["id"]
    deadline = time.monotonic() + 120
    while client.get(f"/api/jobs/{job_id}").json()["status"] != "succeeded":
        assert time.monotonic() < deadline, client.get(f"/api/jobs/{job_id}").text
        time.sleep(0.1)
    assert client.get(f"/api/jobs/{job_id}/result").status_code == 200
    job = client.post("/api/jobs", json={"operation": "components", "lattice_id": lattice_id})
    assert job.status_code == 202
    assert client.delete(f"/api/jobs/{job.json()['id']}").status_code in (200, 409)
    assert client.post("/api/lattice/path", json={"lattice_id": lattice_id}).status_code == 422
    assert client.get("/api/lattice/no-such-id").status_code == 404
    return lattice_id


@pytest.fixture(scope="module")
def live(redis_server: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:  # noqa: F811
    root = tmp_path_factory.mktemp("contract")
    metrics_dir = root / "metrics"
    metrics_dir.mkdir()
    _leave_stale_file(metrics_dir)
    api_port, metrics_port, worker_port = free_port(), free_port(), free_port()
    receiver = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CATALYTIC_", "PROMETHEUS_", "WEBHOOK_"))}
    env |= {
        "CATALYTIC_SQLITE_PATH": str(root / "catalytic.db"),
        "REDIS_URL": redis_server.url,
        "LOG_LEVEL": "WARNING",
        "PARALLEL_CORES": "2",
        "CATALYTIC_WEBHOOK_WORKER": "false",
        "WEBHOOK_ALLOW_CIDRS": "127.0.0.0/8",
        "WEBHOOK_IDLE_MAX_S": "1",
    }
    api = Process(
        ["serve", "--host", "127.0.0.1", "--port", str(api_port), "--workers", "2"],
        env
        | {
            "METRICS_PORT": str(metrics_port),
            "METRICS_HOST": "127.0.0.1",
            "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
        },
        root / "api.log",
    )
    worker = None
    try:
        api.wait_for(f"http://127.0.0.1:{api_port}/ready")
        worker = Process(["worker", "--host", "127.0.0.1", "--port", str(worker_port)], env, root / "worker.log")
        worker.wait_for(f"http://127.0.0.1:{worker_port}/ready")
        with httpx.Client(base_url=f"http://127.0.0.1:{api_port}", timeout=60) as client:
            lattice_id = _drive(client, f"http://127.0.0.1:{receiver.server_port}/hook")
            held = scrape(metrics_port).value("lattice_cache_bytes")
            assert client.delete(f"/api/lattice/{lattice_id}").status_code == 200
        deadline = time.monotonic() + 60
        while (
            not _Receiver.received or scrape(worker_port).value("webhook_deliveries_total", outcome="succeeded") is None
        ):
            assert time.monotonic() < deadline, "the job.succeeded webhook never arrived"
            time.sleep(0.2)
        yield Live(scrape(metrics_port), scrape(worker_port), metrics_dir, held)
    finally:
        if worker is not None:
            worker.stop()
        api.stop()
        receiver.shutdown()
        receiver.server_close()


def _served_by(selector_job: tuple[str, str] | None) -> list[str]:
    """The scrapes a selector's ``job`` matcher requires the metric on: the worker for webhook metrics (it is the
    process that sends in production), the API for the rest."""
    if selector_job is None:
        return []
    op, value = selector_job
    jobs = [
        job
        for job in ("catalytic-worker", "catalytic-api")
        if (job == value if op == "=" else re.fullmatch(value, job))
    ]
    return jobs[:1]


def contract_problems(api: Scrape, worker: Scrape) -> tuple[list[str], set[str]]:
    """What the rules and dashboards name that the two scrapes do not serve, and the service metrics checked."""
    scrapes = {"catalytic-api": api, "catalytic-worker": worker}
    recorded = recording_rules()
    recorded_labels = {name: set(rule.grouping) | TARGET_LABELS for name, rule in recorded.items()}
    problems: list[str] = []
    checked: set[str] = set()
    for expression in expressions():
        known_labels = set(TARGET_LABELS)
        for selector in expression.selectors:
            name = selector.metric
            labels = {label for label, _, _ in selector.matchers}
            if ":" in name:
                if name not in recorded:
                    problems.append(f"{expression.origin}: {name} is recorded by no rule")
                elif extra := labels - recorded_labels[name]:
                    problems.append(f"{expression.origin}: {name} has no label {sorted(extra)}")
                known_labels |= recorded_labels[name]
                continue
            if name in EXTERNAL:
                documented = EXTERNAL[name][1] | TARGET_LABELS
                if extra := labels - documented:
                    problems.append(f"{expression.origin}: {name} ({EXTERNAL[name][0]}) has no label {sorted(extra)}")
                known_labels |= documented
                continue
            if name in GPU_ONLY:
                known_labels |= {"gpu"}
                continue
            for job in _served_by(selector.value("job")) or ["catalytic-api"]:
                served = scrapes[job].samples.get(name)
                if served is None:
                    problems.append(f"{expression.origin}: {name} is not served by {job}")
                    continue
                checked.add(name)
                emitted = set().union(*(sample.keys() for sample in served))
                known_labels |= emitted
                if missing := labels - emitted - TARGET_LABELS:
                    problems.append(f"{expression.origin}: {name} on {job} has no label {sorted(missing)}")
                bucket = selector.value("le")
                if bucket is not None and bucket[1] not in {sample.get("le") for sample in served}:
                    problems.append(f"{expression.origin}: {name} has no bucket le={bucket[1]}")
            for label, allowed in (("size_class", SIZE_CLASS_VALUES), ("outcome", frozenset(OUTCOMES))):
                matcher = selector.value(label)
                if matcher is not None and not any(re.fullmatch(matcher[1], value) for value in allowed):
                    problems.append(f"{expression.origin}: {label}{matcher[0]}{matcher[1]!r} matches no value")
        if unknown := expression.grouping - known_labels:
            problems.append(f"{expression.origin}: groups by {sorted(unknown)}, which no selected metric carries")
    return problems, checked


def test_every_metric_and_label_in_rules_and_dashboards_is_served(live: Live) -> None:
    problems, checked = contract_problems(live.api, live.worker)
    print(f"metric contract: {len(checked)} service metrics checked on the live scrapes; external: {sorted(EXTERNAL)}")
    assert not problems, "\n".join(problems)
    assert {"webhook_queue_size", "path_request_duration_seconds_bucket", "database_up"} <= checked


def test_the_contract_catches_a_metric_the_worker_stops_serving(live: Live) -> None:
    samples = {name: labels for name, labels in live.worker.samples.items() if name != "webhook_queue_size"}
    problems, _ = contract_problems(live.api, Scrape(live.worker.text, samples))
    assert any("webhook_queue_size is not served by catalytic-worker" in problem for problem in problems)
    unlabelled = {
        name: [{k: v for k, v in labels.items() if k != "size_class"} for labels in served]
        for name, served in live.api.samples.items()
    }
    problems, _ = contract_problems(Scrape(live.api.text, unlabelled), live.worker)
    assert any("has no label ['size_class']" in problem for problem in problems)
    renamed = {name: labels for name, labels in live.api.samples.items() if not name.startswith("path_request")}
    problems, _ = contract_problems(Scrape(live.api.text, renamed), live.worker)
    assert any("path_request_duration_seconds_bucket is not served" in problem for problem in problems)


def test_the_new_metrics_are_measured(live: Live) -> None:
    api, worker = live.api, live.worker
    assert api.value("cache_redis_configured") == 1 and api.value("cache_redis_up") == 1
    assert api.value("database_up") == 1 and (api.value("database_ping_duration_seconds_count") or 0) >= 1
    assert api.value("job_queue_capacity") == 2 * 64  # two server processes of CATALYTIC_MAX_QUEUED_JOBS each
    assert api.value("http_requests_in_flight") == 0  # every request driven has been answered
    assert (api.value("path_request_duration_seconds_count", size_class="up_to_1e4") or 0) >= 3
    assert (live.lattice_cache_bytes_before_delete or 0) > 0  # the 30 x 30 lattice, materialised in L1
    assert api.value("job_oldest_queued_age_seconds") is not None
    assert api.value("results_store_bytes") is not None and api.value("results_store_up") == 1
    assert (api.value("jobs_total", status="succeeded") or 0) >= 1 and api.value("jobs_taken_over_total") == 0
    assert (worker.value("webhook_event_to_delivery_seconds_count") or 0) >= 1
    for gauge in (
        "webhook_queue_size",
        "webhook_oldest_pending_delivery_age_seconds",
        "webhook_oldest_due_delivery_wait_seconds",
    ):
        assert worker.value(gauge) is not None, gauge


def test_a_restarted_server_serves_no_stale_samples(live: Live) -> None:
    assert STALE not in live.api.text
    assert not (live.metrics_dir / "counter_4242424.db").exists()


@pytest.mark.parametrize("which", ["api", "worker"])
def test_promtool_check_metrics_passes_on_the_live_scrape(live: Live, which: str) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is missing: install the Debian package 'prometheus' (make test does, as root)")
    text = getattr(live, which).text
    result = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


class _FakeNvml:
    """Two GPUs as NVML would report them."""

    def __init__(self) -> None:
        self.initialised = False

    def init_v2(self) -> None:
        self.initialised = True

    def device_get_count_v2(self) -> int:
        return 2

    def device_get_handle_by_index_v2(self, index: int) -> int:
        return 100 + index

    def device_get_memory_info_v2(self, handle: int) -> Any:
        @dataclass
        class Memory:
            used: int
            total: int

        return Memory(used=(handle - 99) * 2**30, total=80 * 2**30)


def test_gpu_memory_gauges_come_from_nvml() -> None:
    families = list(GpuMemoryCollector(_FakeNvml()).collect())
    values = {(f.name, s.labels["gpu"]): s.value for f in families for s in f.samples}
    assert values == {
        ("gpu_memory_used_bytes", "0"): 2**30,
        ("gpu_memory_used_bytes", "1"): 2 * 2**30,
        ("gpu_memory_total_bytes", "0"): 80 * 2**30,
        ("gpu_memory_total_bytes", "1"): 80 * 2**30,
    }


def test_no_gpu_memory_gauges_without_a_driver() -> None:
    class NoDriver:
        def init_v2(self) -> None:
            raise RuntimeError("NVML Shared Library Not Found")

    assert list(GpuMemoryCollector(NoDriver()).collect()) == []


def test_clearing_the_multiprocess_dir_removes_only_sample_files(tmp_path: Path) -> None:
    for name in ("counter_1.db", "gauge_livesum_2.db", "keep.txt"):
        (tmp_path / name).write_bytes(b"x")
    assert clear_multiprocess_dir(str(tmp_path)) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.txt"]
