"""Results of any size: large array results go to the results store (a directory, or an S3-compatible bucket
served by moto on loopback), download identically with their digest, expire after RESULT_TTL, and a result
that cannot be stored fails its job once with the true reason."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import io
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from service.service_helpers import Service, start_service

from catalytic.kernels import distance_field
from catalytic.lattice import Lattice
from catalytic.service import db as queries

pytestmark = pytest.mark.anyio

THRESHOLD = 4096
LARGE = {"lattice": {"shape": [64, 80]}, "sources": [[3, 5]]}  # 20,480 bytes of int32 field
SMALL = {"lattice": {"shape": [8, 8]}, "sources": [[0, 0]]}


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest) -> str | None:
    return None if request.param == "sqlite" else str(request.getfixturevalue("pg_url"))


async def finished(service: Service, location: str) -> dict[str, Any]:
    for _ in range(1200):
        job = (await service.client.get(location)).json()
        if job["status"] in ("succeeded", "failed", "cancelled"):
            return job
        await asyncio.sleep(0.05)
    raise AssertionError(f"job never finished: {job}")


async def run_field(service: Service, body: dict[str, Any]) -> dict[str, Any]:
    submitted = await service.client.post("/api/lattice/distance-field", json=body)
    assert submitted.status_code == 202, submitted.text
    return await finished(service, submitted.headers["location"])


def expected_field(body: dict[str, Any]) -> np.ndarray:
    return distance_field(Lattice(tuple(body["lattice"]["shape"])), body["sources"], backend="numpy")


async def check_download(service: Service, job: dict[str, Any], body: dict[str, Any], stored_in: str) -> bytes:
    answer = (await service.client.get(f"/api/jobs/{job['id']}/result")).json()
    assert answer["array"]["stored_in"] == stored_in
    download = await service.client.get(answer["array_url"])
    assert download.status_code == 200 and download.headers["content-type"] == "application/x-npy"
    data = download.content
    assert len(data) == answer["array"]["bytes"]
    digest = hashlib.sha256(data).digest()
    assert answer["array"]["sha256"] == digest.hex()
    assert download.headers["repr-digest"] == f"sha-256=:{base64.b64encode(digest).decode()}:"
    assert np.array_equal(np.load(io.BytesIO(data), allow_pickle=False), expected_field(body))
    return data


async def test_large_result_goes_to_the_directory_and_downloads_identically(
    database_url: str | None, make_settings: Any, tmp_path: Path
) -> None:
    overrides: dict[str, Any] = {"RESULT_DB_MAX_BYTES": THRESHOLD}
    if database_url is not None:
        overrides["DATABASE_URL"] = database_url
    async for service in start_service(make_settings(**overrides)):
        large = await run_field(service, LARGE)
        assert large["status"] == "succeeded", large
        await check_download(service, large, LARGE, "results_store")
        files = sorted(p.name for p in (tmp_path / "results").iterdir())
        assert len(files) == 1 and files[0].startswith(large["id"]) and files[0].endswith(".npy")
        row = await service.state.db.fetchrow(
            "SELECT npy, array_ref, array_bytes FROM service_results WHERE job_id = $1", large["id"]
        )
        assert row["npy"] is None and row["array_ref"] == f"dir:{files[0]}"
        assert row["array_bytes"] == (tmp_path / "results" / files[0]).stat().st_size

        small = await run_field(service, SMALL)
        assert small["status"] == "succeeded", small
        await check_download(service, small, SMALL, "database")
        assert len(list((tmp_path / "results").iterdir())) == 1


async def test_a_result_the_store_refuses_fails_the_job_once_with_the_reason(
    make_settings: Any, tmp_path: Path
) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("a file where the results directory should be")
    settings = make_settings(RESULT_DB_MAX_BYTES=THRESHOLD, RESULTS_DIR=str(blocker / "results"))
    async for service in start_service(settings):
        job = await run_field(service, LARGE)
        assert job["status"] == "failed"
        assert job["error"]["error"] == "result_not_stored", job["error"]
        assert str(blocker / "results") in job["error"]["message"]
        record = await queries.get_job(service.state.db, job["id"])
        assert record is not None and record["attempts"] == 1
        # Failed for good: no later reclaimer pass runs it again, however much time passes.
        service.state.runner.clock = lambda: time.time() + 10_000
        assert await service.state.runner.reclaim_once() == {"taken": [], "failed": []}
        assert (await queries.get_job(service.state.db, job["id"]))["attempts"] == 1


async def test_a_result_the_database_refuses_fails_the_job_once_with_the_reason(make_settings: Any) -> None:
    # What SQLite answers for a row past its size limit (sqlite3.DataError: string or blob too big).
    async for service in start_service(make_settings()):
        await service.state.db.execute(
            "CREATE TRIGGER refuse_results BEFORE INSERT ON service_results "
            "BEGIN SELECT RAISE(ABORT, 'string or blob too big'); END"
        )
        job = await run_field(service, SMALL)
        assert job["status"] == "failed"
        assert job["error"]["error"] == "result_not_stored"
        assert "string or blob too big" in job["error"]["message"]
        record = await queries.get_job(service.state.db, job["id"])
        assert record is not None and record["attempts"] == 1
        events = await service.state.db.fetch("SELECT type FROM events")
        assert [e["type"] for e in events] == ["job.failed"]


async def test_expired_results_and_their_files_are_swept(make_settings: Any, tmp_path: Path) -> None:
    settings = make_settings(RESULT_DB_MAX_BYTES=THRESHOLD, RESULT_TTL=3600)
    async for service in start_service(settings):
        job = await run_field(service, LARGE)
        assert job["status"] == "succeeded"
        results = tmp_path / "results"
        (stored,) = list(results.iterdir())
        stray = results / "job_ghost.0000.npy"  # a file no record names (its job was cancelled mid-write)
        stray.write_bytes(b"x" * 100)
        os.utime(stray, (time.time() - 7200, time.time() - 7200))
        sweeper = service.state.sweeper
        outcome = await sweeper.sweep_once()
        assert outcome["records"] == 0 and stray.exists() is False and stored.exists()
        assert outcome["store_bytes"] == stored.stat().st_size
        assert (await service.client.get(f"/api/jobs/{job['id']}/result")).status_code == 200

        sweeper.clock = lambda: time.time() + 3601
        outcome = await sweeper.sweep_once()
        assert outcome == {"records": 1, "files": 1, "store_bytes": 0}
        assert list(results.iterdir()) == []
        gone = await service.client.get(f"/api/jobs/{job['id']}/result")
        assert gone.status_code == 410 and "RESULT_TTL" in gone.json()["detail"]
        assert (await service.client.get(f"/api/jobs/{job['id']}")).json()["status"] == "succeeded"


# --- the bucket path, against moto's S3 server on loopback ------------------------------------------------


@pytest.fixture(scope="module")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """moto's S3-compatible server in a subprocess on 127.0.0.1, stopped by its PID."""
    import subprocess
    import sys

    from servers import _wait_for_port, free_port

    port = free_port()
    log = open(tmp_path_factory.mktemp("moto") / "log", "wb")  # noqa: SIM115 - closed after the fork
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)], stdout=log, stderr=log
    )
    log.close()
    try:
        _wait_for_port(port)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


@pytest.fixture
async def bucket_service(
    s3_server: str, make_settings: Any, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[Service, Any]]:
    import boto3

    for name, value in (("AWS_ACCESS_KEY_ID", "testing"), ("AWS_SECRET_ACCESS_KEY", "testing")):
        monkeypatch.setenv(name, value)  # the job worker processes inherit them
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    client = boto3.client("s3", endpoint_url=s3_server, region_name="us-east-1")
    bucket = f"results-{os.getpid()}-{time.monotonic_ns()}"
    client.create_bucket(Bucket=bucket)
    settings = make_settings(
        RESULT_DB_MAX_BYTES=THRESHOLD,
        RESULTS_S3_BUCKET=bucket,
        RESULTS_S3_ENDPOINT_URL=s3_server,
        RESULTS_S3_REGION="us-east-1",
        RESULTS_S3_PREFIX="catalytic/",
        RESULT_TTL=3600,
    )
    async for service in start_service(settings):
        yield service, (client, bucket)


async def test_large_result_goes_to_the_bucket_downloads_identically_and_expires(
    bucket_service: tuple[Service, Any],
) -> None:
    service, (client, bucket) = bucket_service
    # Big enough for a multipart upload (8 MiB parts): 2.4 M int32 vertices, 9.6 MB.
    body = {"lattice": {"shape": [1200, 2000]}, "sources": [[0, 0], [1199, 1999]]}
    job = await run_field(service, body)
    assert job["status"] == "succeeded", job
    data = await check_download(service, job, body, "results_store")
    listed = client.list_objects_v2(Bucket=bucket, Prefix="catalytic/")["Contents"]
    assert [item["Size"] for item in listed] == [len(data)]
    assert listed[0]["Key"].startswith(f"catalytic/{job['id']}.")

    sweeper = service.state.sweeper
    sweeper.clock = lambda: time.time() + 3601
    assert (await sweeper.sweep_once())["records"] == 1
    assert client.list_objects_v2(Bucket=bucket, Prefix="catalytic/").get("Contents", []) == []
    assert (await service.client.get(f"/api/jobs/{job['id']}/result")).status_code == 410


async def test_a_missing_bucket_fails_the_job_once_with_the_reason(bucket_service: tuple[Service, Any]) -> None:
    service, (client, bucket) = bucket_service
    client.delete_bucket(Bucket=bucket)
    job = await run_field(service, LARGE)
    assert job["status"] == "failed"
    assert job["error"]["error"] == "result_not_stored"
    assert "NoSuchBucket" in job["error"]["message"], job["error"]
    record = await queries.get_job(service.state.db, job["id"])
    assert record is not None and record["attempts"] == 1
