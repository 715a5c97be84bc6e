"""Pieces of the service on their own: settings, LRU, array decoding, metrics, the job-size rule."""

from __future__ import annotations

import base64
import json
import logging
import subprocess
import sys
from typing import Any

import numpy as np
import pytest
from prometheus_client import REGISTRY, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from pydantic import ValidationError

from catalytic.errors import MaskError, WeightsError
from catalytic.service import defaults
from catalytic.service.cache import LRU
from catalytic.service.compute import decode_blocked, decode_weights, lattice_counts
from catalytic.service.logs import REQUEST_ID, JsonFormatter
from catalytic.service.settings import Settings, is_loopback


def test_settings_read_the_environment_and_are_frozen(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PARALLEL_CORES", "3")
    monkeypatch.setenv("CACHE_SIZE", "9")
    monkeypatch.setenv("MAX_LATTICES", "11")
    monkeypatch.setenv("LATTICE_MEMORY_OPTIMIZATION", "frugal")
    monkeypatch.setenv("CATALYTIC_BACKEND", "numpy")
    monkeypatch.setenv("REDIS_URL", "")
    settings = Settings()
    assert (settings.parallel_cores, settings.cache_size, settings.max_lattices) == (3, 9, 11)
    assert settings.lattice_memory_optimization == "frugal" and settings.backend == "numpy"
    assert settings.redis_url is None and settings.metrics_port == defaults.METRICS_PORT
    with pytest.raises(ValidationError):
        settings.parallel_cores = 4  # type: ignore[misc]
    monkeypatch.setenv("PARALLEL_CORES", "0")
    with pytest.raises(ValidationError, match="PARALLEL_CORES"):
        Settings()


def test_server_processes_share_the_cores(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PARALLEL_CORES", "5")
    assert Settings().cores_per_process == 5  # one process by default
    monkeypatch.setenv("WEB_CONCURRENCY", "2")
    assert Settings().cores_per_process == 2
    monkeypatch.setenv("WEB_CONCURRENCY", "8")
    assert Settings().cores_per_process == 1  # never below one
    monkeypatch.setenv("WEB_CONCURRENCY", "0")
    with pytest.raises(ValidationError, match="WEB_CONCURRENCY"):
        Settings()


def _sqlite_in_another_process(path: str, sql: str, *args: str) -> None:
    """Run one write in a separate process that opens, commits and closes its own connection."""
    script = (
        "import sqlite3, sys; c = sqlite3.connect(sys.argv[1]); "
        "c.execute(sys.argv[2], sys.argv[3:]); c.commit(); c.close()"
    )
    subprocess.run([sys.executable, "-c", script, path, sql, *args], check=True, timeout=60)


def test_existence_tokens_follow_commits_of_other_processes(tmp_path: Any) -> None:
    import sqlite3

    from catalytic.service.freshness import ExistenceCache

    path = str(tmp_path / "state.db")
    owner = sqlite3.connect(path)  # the service's own connection, open for the cache's lifetime
    owner.execute("PRAGMA journal_mode=WAL")
    owner.execute("CREATE TABLE t (id TEXT PRIMARY KEY)")
    owner.execute("INSERT INTO t VALUES ('a')")
    owner.commit()
    cache = ExistenceCache(path)
    try:
        first = cache.token()
        assert first is not None and len(first) == 96
        cache.remember("a", first)
        owner.execute("SELECT * FROM t").fetchall()  # reads change nothing
        assert cache.token() == first and cache.known("a", cache.token())
        _sqlite_in_another_process(path, "DELETE FROM t WHERE id = ?", "a")
        after = cache.token()
        assert after != first and not cache.known("a", after)
        # The other process closed its last connection while ours stayed open: SQLite must not have taken ours
        # for gone (the cache's descriptor must not drop this process's locks), so the files are still ours and
        # every later commit is seen.
        for value in ("b", "c"):
            cache.token()
            _sqlite_in_another_process(path, "INSERT INTO t VALUES (?)", value)
        assert sorted(row[0] for row in owner.execute("SELECT id FROM t")) == ["b", "c"]
        assert cache.token() != after
    finally:
        owner.close()
        cache.close()
    assert ExistenceCache(None).token() is None and ExistenceCache(":memory:").token() is None


def test_is_loopback() -> None:
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost") and is_loopback("[::1]")
    assert not is_loopback("0.0.0.0") and not is_loopback("10.1.2.3") and not is_loopback("example.org")


def test_lru_evicts_and_expires(monkeypatch: pytest.MonkeyPatch) -> None:
    lru: LRU[int] = LRU(2)
    lru.put("a", 1)
    lru.put("b", 2)
    assert lru.get("a") == 1
    lru.put("c", 3)
    assert lru.get("b") is None and lru.get("a") == 1 and len(lru) == 2
    clock = [100.0]
    monkeypatch.setattr("catalytic.service.cache.time.monotonic", lambda: clock[0])
    lru.put("t", 4, ttl=5)
    assert lru.get("t") == 4
    clock[0] += 6
    assert lru.get("t") is None


def test_lru_weighs_only_what_it_handed_out() -> None:
    sizes = {"a": 10, "b": 20, "c": 30}
    weighed: list[str] = []
    reported: list[int] = []

    def weigh(name: str) -> int:
        weighed.append(name)
        return sizes[name]

    lru: LRU[str] = LRU(10, weigh=weigh, on_bytes=reported.append, max_bytes=55)
    for name in ("a", "b"):
        lru.put(name, name)
    assert lru.nbytes == 30 and reported[-1] == 30
    weighed.clear()
    assert lru.get("a") == "a"
    sizes["a"] = 25  # the held value grew after it was handed out
    lru.put("c", "c")  # weighs "a" again and "c", never "b"; 25 + 20 + 30 > 55 evicts the oldest, "b"
    assert sorted(weighed) == ["a", "c"]
    assert lru.get("b") is None and lru.nbytes == 55 and reported[-1] == 55
    lru.pop("a")
    assert lru.nbytes == 30 and reported[-1] == 30 and len(lru) == 1
    sizes["d"] = 80
    lru.put("d", "d")  # heavier than max_bytes on its own: nothing is kept
    assert len(lru) == 0 and lru.nbytes == 0


def test_decode_blocked_forms_agree() -> None:
    shape = (3, 5)
    mask = np.zeros(shape, dtype=bool)
    mask[0, 1] = mask[2, 4] = True
    packed = base64.b64encode(np.packbits(mask.ravel(), bitorder="little")).decode()
    np.testing.assert_array_equal(decode_blocked(packed, shape), mask)
    np.testing.assert_array_equal(decode_blocked([[0, 1], [2, 4]], shape), mask)
    assert decode_blocked([], shape) is not None and not decode_blocked([], shape).any()
    with pytest.raises(MaskError):
        decode_blocked([[0, 1, 2]], shape)


def test_decode_weights_forms_agree() -> None:
    weights = np.arange(1.0, 7.0).reshape(2, 3)
    encoded = base64.b64encode(weights.astype("<f8").tobytes()).decode()
    np.testing.assert_array_equal(decode_weights(encoded, (2, 3)), weights)
    np.testing.assert_array_equal(decode_weights(weights.tolist(), (2, 3)), weights)
    with pytest.raises(WeightsError):
        decode_weights(encoded, (3, 3))


def test_lattice_counts_match_analyze() -> None:
    from catalytic import Lattice
    from catalytic.kernels import analyze

    lattice = Lattice((5, 2, 4), periodic=[True, True, False], obstacles=[{"kind": "random", "p": 0.3, "seed": 2}])
    counts = lattice_counts(lattice)
    report = analyze(lattice)
    assert counts["edges"] == report["edges"] and counts["open_vertices"] == report["open_vertices"]
    assert counts["memory"]["memory_efficiency_ratio"] == lattice.memory_report()["memory_efficiency_ratio"]


def test_json_logs_carry_the_request_id() -> None:
    record = logging.LogRecord("catalytic.service", logging.INFO, __file__, 1, "hello %s", ("world",), None)
    record.route = "/api/lattices"
    token = REQUEST_ID.set("req-1")
    try:
        line = json.loads(JsonFormatter().format(record))
    finally:
        REQUEST_ID.reset(token)
    assert line["message"] == "hello world" and line["request_id"] == "req-1" and line["route"] == "/api/lattices"


def test_every_required_metric_is_registered() -> None:
    import catalytic.service.metrics  # noqa: F401

    names = {family.name for family in text_string_to_metric_families(generate_latest(REGISTRY).decode())}
    required = {
        "http_request_duration_seconds",
        "http_requests",
        "lattice_operations",
        "lattice_operation_duration_seconds",
        "memory_efficiency_ratio",
        "active_lattices",
        "cache_hits",
        "cache_misses",
        "job_queue_size",
        "jobs",
        "backend_fallbacks",
    }
    assert required <= names
