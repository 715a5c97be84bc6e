"""Array uploads (POST /api/arrays, streamed, named by SHA-256) used by digest in lattice specs, and range downloads.

The in-process tests run the app on SQLite through httpx's ASGI transport. The large test uploads 800 MB of
float64 weights to a real ``catalytic serve`` process on loopback, from a generator, and reads that process's
peak resident memory (``VmHWM``) to show the body was never held whole.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import os
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from service.service_helpers import Service, start_service
from service.test_replicas import Replica

pytestmark = pytest.mark.anyio

KEYS = "acme:acme-key,globex:globex-key"
ACME = {"X-API-Key": "acme-key"}
GLOBEX = {"X-API-Key": "globex-key"}
NPY = {"Content-Type": "application/x-npy"}
RAW = {"Content-Type": "application/octet-stream"}


def npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


@pytest.fixture
async def svc(make_settings: Any) -> AsyncIterator[Service]:
    settings = make_settings(
        CATALYTIC_API_KEYS=KEYS, CATALYTIC_INLINE_MAX_VERTICES=400, CATALYTIC_MAX_UPLOAD_BYTES=64 * 1024
    )
    async for running in start_service(settings, headers=ACME):
        yield running


def _arrays_dir(svc: Service) -> Path:
    return Path(svc.state.settings.results_dir) / "arrays"


def _left_behind(svc: Service) -> list[str]:
    root = _arrays_dir(svc)
    return sorted(p.name for p in root.iterdir() if p.is_file()) if root.is_dir() else []


async def _finished(client: httpx.AsyncClient, location: str) -> dict[str, Any]:
    """The job's status once it ended (a worker process may take a while to start on a busy machine)."""
    deadline = time.monotonic() + 180
    while True:
        status: dict[str, Any] = (await client.get(location)).json()
        if status["status"] not in ("queued", "running") or time.monotonic() > deadline:
            return status
        await asyncio.sleep(0.05)


async def _upload_npy(client: httpx.AsyncClient, array: np.ndarray, **kwargs: Any) -> httpx.Response:
    return await client.post("/api/arrays", content=npy_bytes(array), headers={**NPY, **kwargs.pop("headers", {})})


async def test_npy_and_raw_uploads_answer_as_the_same_lattice_given_inline(svc: Service) -> None:
    rng = np.random.default_rng(7)
    weights = rng.uniform(0.5, 3.0, size=(12, 15))
    blocked = np.zeros((12, 15), dtype=bool)
    blocked[3:9, 7] = True
    up_w = await _upload_npy(svc.client, weights)
    assert up_w.status_code == 201, up_w.text
    info = up_w.json()
    assert info["digest"] == "sha256:" + hashlib.sha256(npy_bytes(weights)).hexdigest()
    assert (info["dtype"], info["shape"], info["nan"]) == ("float64", [12, 15], False)
    assert info["minimum"] == weights.min() and info["maximum"] == weights.max()
    raw = await svc.client.post(
        "/api/arrays", content=blocked.tobytes(), params={"dtype": "bool", "shape": "12,15"}, headers=RAW
    )
    assert raw.status_code == 201, raw.text
    # The raw body is kept as the .npy NumPy writes for it, and named by that file's digest.
    downloaded = await svc.client.get(raw.json()["url"])
    assert np.array_equal(np.load(io.BytesIO(downloaded.content)), blocked)
    assert raw.json()["digest"] == "sha256:" + hashlib.sha256(downloaded.content).hexdigest()

    by_digest = {"shape": [12, 15], "weights": {"array": info["digest"]}, "blocked": {"array": raw.json()["digest"]}}
    inline = {
        "shape": [12, 15],
        "weights": weights.tolist(),
        "blocked": [list(map(int, c)) for c in np.argwhere(blocked)],
    }
    query = {"start": [0, 0], "goal": [11, 14], "method": "dijkstra"}
    answers = []
    for lattice in (by_digest, inline):
        answer = await svc.client.post("/api/lattice/path", json={"lattice": lattice, **query})
        assert answer.status_code == 200, answer.text
        answers.append({k: answer.json()[k] for k in ("found", "path", "cost", "length")})
    assert answers[0] == answers[1] and answers[0]["found"]

    created = await svc.client.post("/api/lattice/create", json=by_digest)
    assert created.status_code == 201, created.text
    record = (await svc.client.get(f"/api/lattice/{created.json()['id']}")).json()
    assert record["spec"]["weights"] == {"array": info["digest"]}
    svc.state.lattices.pop(created.json()["id"])  # materialised again from the spec and the mapped file
    stored = await svc.client.post("/api/lattice/path", json={"lattice_id": created.json()["id"], **query})
    assert {k: stored.json()[k] for k in ("found", "path", "cost", "length")} == answers[1]

    # As a job, the worker process maps the file from the spec's digest.
    job = await svc.client.post(
        "/api/jobs", json={"operation": "shortest_path", "lattice": by_digest, "params": query, "backend": "numpy"}
    )
    assert job.status_code == 202, job.text
    status = await _finished(svc.client, job.json()["location"])
    assert status["status"] == "succeeded", status
    result = (await svc.client.get(f"{job.json()['location']}/result")).json()["result"]
    assert result["cost"] == answers[1]["cost"] and result["path"] == answers[1]["path"]


async def test_float32_weights_convert_as_the_inline_float64_ones(svc: Service) -> None:
    weights = np.arange(1, 26, dtype=np.float32).reshape(5, 5)
    digest = (await _upload_npy(svc.client, weights)).json()["digest"]
    query = {"start": [0, 0], "goal": [4, 4], "method": "dijkstra"}
    uploaded = await svc.client.post(
        "/api/lattice/path", json={"lattice": {"shape": [5, 5], "weights": {"array": digest}}, **query}
    )
    inline = await svc.client.post(
        "/api/lattice/path", json={"lattice": {"shape": [5, 5], "weights": weights.tolist()}, **query}
    )
    assert uploaded.json()["cost"] == inline.json()["cost"] == pytest.approx(inline.json()["cost"])
    assert uploaded.json()["path"] == inline.json()["path"]


@pytest.mark.parametrize(
    ("array", "field", "shape", "fragment"),
    [
        (np.ones((4, 4), dtype=np.float64), "blocked", [4, 4], "dtype float64 does not fit blocked"),
        (np.ones((4, 4), dtype=bool), "weights", [4, 4], "dtype bool does not fit weights"),
        (np.ones((4, 5)), "weights", [4, 4], "shape [4, 5] does not match"),
        (np.full((4, 4), 2, dtype=np.uint8), "blocked", [4, 4], "0 (open) and 1 (blocked)"),
        (np.array([[1.0, np.nan], [1.0, 1.0]]), "weights", [2, 2], "NaN"),
        (np.array([[1.0, 0.0], [1.0, 1.0]]), "weights", [2, 2], "<= 0"),
    ],
)
async def test_an_array_that_does_not_fit_its_field_answers_422(
    svc: Service, array: np.ndarray, field: str, shape: list[int], fragment: str
) -> None:
    digest = (await _upload_npy(svc.client, array)).json()["digest"]
    answer = await svc.client.post("/api/lattice/create", json={"shape": shape, field: {"array": digest}})
    assert answer.status_code == 422, answer.text
    problem = answer.json()
    assert problem["errors"][0]["field"].startswith(field)
    assert fragment in answer.text
    assert problem["errors"][0]["allowed"]


@pytest.mark.parametrize(
    ("content", "headers", "params", "field"),
    [
        (npy_bytes(np.ones(4, dtype=np.int64)), NPY, {}, "body.dtype"),
        (npy_bytes(np.asfortranarray(np.ones((3, 4)))), NPY, {}, "body.fortran_order"),
        (npy_bytes(np.ones(4))[:-3], NPY, {}, "Content-Length"),
        (npy_bytes(np.ones(4)) + b"xx", NPY, {}, "body"),
        (iter([npy_bytes(np.ones(4))[:-3]]), NPY, {}, "body"),
        (iter([npy_bytes(np.ones(4)), b"xx"]), NPY, {}, "body"),
        (b"not a numpy file at all", NPY, {}, "body"),
        (np.ones(5).tobytes(), RAW, {"dtype": "float64", "shape": "6"}, "Content-Length"),
        (iter([np.ones(5).tobytes()]), RAW, {"dtype": "float64", "shape": "6"}, "body"),
        (np.ones(6).tobytes(), RAW, {"dtype": "int16", "shape": "6"}, "dtype"),
        (np.ones(6).tobytes(), RAW, {"dtype": "float64", "shape": "2,x"}, "shape"),
    ],
)
async def test_a_bad_upload_answers_422_and_keeps_nothing(
    svc: Service, content: Any, headers: dict[str, str], params: dict[str, str], field: str
) -> None:
    if isinstance(content, Iterator):  # no Content-Length: the length is checked as the body ends
        pieces = list(content)

        async def stream() -> AsyncIterator[bytes]:
            for piece in pieces:
                yield piece

        content = stream()
    answer = await svc.client.post("/api/arrays", content=content, headers=headers, params=params)
    assert answer.status_code == 422, answer.text
    assert answer.json()["errors"][0]["field"] == field
    assert _left_behind(svc) == []


async def test_over_the_limit_answers_413_while_streaming_and_stops_reading(svc: Service) -> None:
    limit = svc.state.settings.max_upload_bytes
    sent = 0

    async def endless() -> AsyncIterator[bytes]:
        # A header that declares a modest array, then more bytes than any limit; no Content-Length.
        nonlocal sent
        head = npy_bytes(np.ones(limit // 8 + 4096))[:128]
        sent += len(head)
        yield head
        while sent < 100 * limit:
            sent += 4096
            yield b"\0" * 4096

    answer = await svc.client.post("/api/arrays", content=endless(), headers=NPY)
    assert answer.status_code == 413, answer.text
    assert "CATALYTIC_MAX_UPLOAD_BYTES" in answer.json()["detail"]
    assert str(limit) in answer.json()["errors"][0]["allowed"]
    assert _left_behind(svc) == []

    # No header to tell the size: refused as the bytes pass the limit, long before the body ends.
    sent = 0

    async def raw_endless() -> AsyncIterator[bytes]:
        nonlocal sent
        while sent < 100 * limit:
            sent += 4096
            yield b"\1" * 4096

    answer = await svc.client.post(
        "/api/arrays", content=raw_endless(), headers=RAW, params={"dtype": "uint8", "shape": str(100 * limit)}
    )
    assert answer.status_code == 413
    assert sent <= 2 * limit, f"the server read {sent} bytes of a body over a {limit}-byte limit"

    # A declared Content-Length over the limit is refused before any byte is read.
    declared = await svc.client.post(
        "/api/arrays", content=b"\0" * (limit + 1), headers={**NPY, "Content-Length": str(limit + 1)}
    )
    assert declared.status_code == 413
    assert _left_behind(svc) == []


async def test_an_interrupted_upload_keeps_no_partial_file(svc: Service) -> None:
    # The ASGI exchange a server has with a client that disconnects after the first 4,000 bytes.
    messages = [
        {"type": "http.request", "body": npy_bytes(np.ones(2000))[:4000], "more_body": True},
        {"type": "http.disconnect"},
    ]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/api/arrays",
        "raw_path": b"/api/arrays",
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"127.0.0.1"), (b"content-type", b"application/x-npy"), (b"x-api-key", b"acme-key")],
        "client": ("127.0.0.1", 1234),
        "server": ("127.0.0.1", 80),
        "state": {},
    }
    await svc.app(scope, receive, send)
    assert sent[0]["status"] == 400
    assert _left_behind(svc) == []


async def test_another_tenants_array_answers_as_a_missing_one(svc: Service) -> None:
    digest = (await _upload_npy(svc.client, np.ones((3, 3)))).json()["digest"]
    missing = "sha256:" + "0" * 64
    for name in (digest, missing):
        download = await svc.client.get(f"/api/arrays/{name}", headers=GLOBEX)
        assert download.status_code == 404
        use = await svc.client.post(
            "/api/lattice/create", json={"shape": [3, 3], "weights": {"array": name}}, headers=GLOBEX
        )
        assert use.status_code == 404
        assert use.json()["code"] == "not_found"
    assert (await svc.client.get(f"/api/arrays/{digest}")).status_code == 200


async def test_uploads_count_against_the_result_bytes_quota(make_settings: Any) -> None:
    settings = make_settings(CATALYTIC_API_KEYS=KEYS, TENANT_MAX_RESULT_BYTES=3000)
    async for running in start_service(settings, headers=ACME):
        first = await _upload_npy(running.client, np.ones(200))  # 1,728 bytes
        assert first.status_code == 201
        second = await _upload_npy(running.client, np.full(200, 2.0))
        assert second.status_code == 413
        assert second.json()["errors"][0]["field"] == "quota.max_result_bytes"
        other = await _upload_npy(running.client, np.full(200, 2.0), headers=GLOBEX)
        assert other.status_code == 201


async def test_range_requests_reassemble_the_whole_and_refuse_past_the_end(svc: Service) -> None:
    array = np.arange(3000, dtype=np.float64)
    whole_bytes = npy_bytes(array)
    url = (await _upload_npy(svc.client, array)).json()["url"]
    whole = await svc.client.get(url)
    assert whole.status_code == 200 and whole.content == whole_bytes
    assert whole.headers["accept-ranges"] == "bytes"
    size = len(whole_bytes)
    parts, start = [], 0
    while start < size:
        part = await svc.client.get(url, headers={"Range": f"bytes={start}-{start + 999}"})
        assert part.status_code == 206
        stop = min(start + 1000, size)
        assert part.headers["content-range"] == f"bytes {start}-{stop - 1}/{size}"
        parts.append(part.content)
        start = stop
    assert b"".join(parts) == whole_bytes
    tail = await svc.client.get(url, headers={"Range": "bytes=-100"})
    assert tail.status_code == 206 and tail.content == whole_bytes[-100:]
    rest = await svc.client.get(url, headers={"Range": f"bytes={size - 10}-"})
    assert rest.content == whole_bytes[-10:]
    past = await svc.client.get(url, headers={"Range": f"bytes={size}-"})
    assert past.status_code == 416
    assert past.headers["content-range"] == f"bytes */{size}"
    assert past.json()["code"] == "range_not_satisfiable"
    stale = await svc.client.get(url, headers={"Range": "bytes=0-9", "If-Range": '"another"'})
    assert stale.status_code == 200 and stale.content == whole_bytes


async def test_a_job_result_downloads_in_ranges(svc: Service) -> None:
    job = await svc.client.post(
        "/api/lattice/distance-field", json={"lattice": {"shape": [30, 40]}, "sources": [[0, 0]], "backend": "numpy"}
    )
    assert job.status_code == 202
    assert (await _finished(svc.client, job.json()["location"]))["status"] == "succeeded"
    url = f"{job.json()['location']}/result?format=npy"
    whole = await svc.client.get(url)
    assert whole.status_code == 200 and whole.headers["accept-ranges"] == "bytes"
    first = await svc.client.get(url, headers={"Range": "bytes=0-499"})
    rest = await svc.client.get(url, headers={"Range": "bytes=500-", "If-Range": whole.headers["etag"]})
    assert (first.status_code, rest.status_code) == (206, 206)
    assert first.content + rest.content == whole.content
    assert (await svc.client.get(url, headers={"Range": "bytes=-0"})).status_code == 416


# --- deleting and expiry -------------------------------------------------------------------------------------


def _use(client: httpx.AsyncClient, digest: str, **kwargs: Any) -> Any:
    return client.post("/api/lattice/create", json={"shape": [3, 3], "weights": {"array": digest}}, **kwargs)


async def test_a_deleted_array_answers_404_and_its_files_are_gone(svc: Service) -> None:
    digest = (await _upload_npy(svc.client, np.full((3, 3), 2.0))).json()["digest"]
    assert f"{digest[7:]}.npy" in _left_behind(svc)
    deleted = await svc.client.delete(f"/api/arrays/{digest}")
    assert deleted.status_code == 200, deleted.text
    assert deleted.json() == {"digest": digest, "deleted": True}
    assert (await svc.client.get(f"/api/arrays/{digest}")).status_code == 404
    use = await _use(svc.client, digest)
    assert use.status_code == 404 and use.json()["code"] == "not_found"
    assert not [name for name in _left_behind(svc) if name.startswith(digest[7:])]
    assert (await svc.client.delete(f"/api/arrays/{digest}")).status_code == 404  # once only
    assert (await svc.client.delete("/api/arrays/sha256:" + "0" * 64)).status_code == 404
    assert (await svc.client.delete("/api/arrays/not-a-digest")).status_code == 404


async def test_another_tenant_cannot_delete_an_array_and_a_shared_one_survives_one_delete(svc: Service) -> None:
    array = np.full((3, 3), 3.0)
    digest = (await _upload_npy(svc.client, array)).json()["digest"]
    refused = await svc.client.delete(f"/api/arrays/{digest}", headers=GLOBEX)
    assert refused.status_code == 404
    missing = await svc.client.delete("/api/arrays/sha256:" + "1" * 64, headers=GLOBEX)
    assert refused.json()["code"] == missing.json()["code"] == "not_found"
    assert (await _use(svc.client, digest)).status_code == 201

    # Globex uploads the same bytes: one file, two claims. Each delete drops one claim; the file stays for the other.
    assert (await _upload_npy(svc.client, array, headers=GLOBEX)).json()["digest"] == digest
    assert (await svc.client.delete(f"/api/arrays/{digest}", headers=GLOBEX)).status_code == 200
    assert (await _upload_npy(svc.client, array, headers=GLOBEX)).status_code == 201
    lattice = (await svc.client.get("/api/lattices")).json()["items"][0]["id"]
    assert (await svc.client.delete(f"/api/lattice/{lattice}")).status_code == 200
    assert (await svc.client.delete(f"/api/arrays/{digest}")).status_code == 200
    assert (await _use(svc.client, digest)).status_code == 404
    assert (await _use(svc.client, digest, headers=GLOBEX)).status_code == 201
    assert f"{digest[7:]}.npy" in _left_behind(svc)
    download = await svc.client.get(f"/api/arrays/{digest}", headers=GLOBEX)
    assert download.status_code == 200 and np.array_equal(np.load(io.BytesIO(download.content)), array)


async def test_deleting_an_array_a_stored_lattice_names_answers_409(svc: Service) -> None:
    # A stored lattice keeps only the digest and maps the file again when it is materialised.
    digest = (await _upload_npy(svc.client, np.full((3, 3), 1.5))).json()["digest"]
    created = await _use(svc.client, digest)
    assert created.status_code == 201
    lattice_id = created.json()["id"]
    refused = await svc.client.delete(f"/api/arrays/{digest}")
    assert refused.status_code == 409, refused.text
    assert lattice_id in refused.json()["detail"]
    svc.state.lattices.pop(lattice_id)
    query = {"lattice_id": lattice_id, "start": [0, 0], "goal": [2, 2], "method": "dijkstra"}
    answer = await svc.client.post("/api/lattice/path", json=query)
    assert answer.status_code == 200 and answer.json()["cost"] == pytest.approx(6.0)
    assert (await svc.client.delete(f"/api/lattice/{lattice_id}")).status_code == 200
    assert (await svc.client.delete(f"/api/arrays/{digest}")).status_code == 200


async def test_delete_is_in_the_openapi_document(svc: Service) -> None:
    document = (await svc.client.get("/openapi.json")).json()
    operation = document["paths"]["/api/arrays/{digest}"]["delete"]
    assert {"200", "404", "409"} <= set(operation["responses"])


async def test_the_sweeper_expires_unused_arrays_and_stale_partials(make_settings: Any) -> None:
    settings = make_settings(CATALYTIC_API_KEYS=KEYS, CATALYTIC_ARRAY_TTL_S=3600)
    async for running in start_service(settings, headers=ACME):
        client, sweeper = running.client, running.state.sweeper
        assert sweeper.array_ttl_s == 3600
        old = (await _upload_npy(client, np.full((3, 3), 4.0))).json()["digest"]
        fresh = (await _upload_npy(client, np.full((3, 3), 5.0))).json()["digest"]
        named = (await _upload_npy(client, np.full((3, 3), 6.0))).json()["digest"]
        assert (await _use(client, named)).status_code == 201  # a stored lattice names it
        shared = (await _upload_npy(client, np.full((3, 3), 7.0))).json()["digest"]
        assert (await _upload_npy(client, np.full((3, 3), 7.0), headers=GLOBEX)).status_code == 201
        root = _arrays_dir(running)
        stale = root / ".upload-0123456789abcdef.partial"
        stale.write_bytes(b"x" * 10)
        recent = root / ".upload-fedcba9876543210.partial"
        recent.write_bytes(b"y" * 10)
        hours_ago = time.time() - 2 * 3600
        os.utime(stale, (hours_ago, hours_ago))
        markers = list((root / "tenants").iterdir())
        for digest in (old, named, shared):
            for path in [root / f"{digest[7:]}.npy", *(folder / digest[7:] for folder in markers)]:
                if path.exists():
                    os.utime(path, (hours_ago, hours_ago))
        # Globex used the shared array lately: it stays.
        assert (await client.get(f"/api/arrays/{shared}", headers=GLOBEX)).status_code == 200

        await sweeper.sweep_once()
        assert sweeper.arrays_swept["arrays"] == 1 and sweeper.arrays_swept["partials"] == 1
        left = _left_behind(running)
        assert f"{old[7:]}.npy" not in left and f"{old[7:]}.json" not in left
        assert not stale.exists() and recent.exists()
        assert (await _use(client, old)).status_code == 404
        for digest in (fresh, named, shared):
            assert (await client.get(f"/api/arrays/{digest}")).status_code == 200, digest
        assert sweeper.arrays_swept["array_bytes"] == sum(
            (root / f"{d[7:]}.npy").stat().st_size for d in (fresh, named, shared)
        )

        # Past the TTL on the sweeper's clock, only what the stored lattice names is kept.
        sweeper.clock = lambda: time.time() + 3 * 3600
        await sweeper.sweep_once()
        assert sweeper.arrays_swept["arrays"] == 2 and sweeper.arrays_swept["partials"] == 1
        assert (await client.get(f"/api/arrays/{named}")).status_code == 200
        for digest in (fresh, shared):
            assert (await client.get(f"/api/arrays/{digest}")).status_code == 404
            assert (await client.get(f"/api/arrays/{digest}", headers=GLOBEX)).status_code == 404
        assert sorted(p.name for p in root.iterdir() if p.is_file() and not p.name.startswith(".")) == [
            f"{named[7:]}.json",
            f"{named[7:]}.npy",
        ]


async def test_deleting_an_array_frees_the_tenants_quota(make_settings: Any) -> None:
    settings = make_settings(CATALYTIC_API_KEYS=KEYS, TENANT_MAX_RESULT_BYTES=3000)
    async for running in start_service(settings, headers=ACME):
        first = await _upload_npy(running.client, np.ones(200))  # 1,728 bytes
        assert first.status_code == 201
        assert (await _upload_npy(running.client, np.full(200, 2.0))).status_code == 413
        deleted = await running.client.delete(f"/api/arrays/{first.json()['digest']}")
        assert deleted.status_code == 200
        second = await _upload_npy(running.client, np.full(200, 2.0))
        assert second.status_code == 201, second.text


# --- a real server, a real size ------------------------------------------------------------------------------

SIDE = 10_000  # 10^8 vertices: 800 MB of float64 weights
PIECE_ROWS = 100  # 100 rows of 10^4 float64 values = 8 MB a piece, made as they are sent


def _vm_hwm(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


def _weight_rows(first: int, count: int) -> np.ndarray:
    rows = np.arange(first, first + count, dtype=np.float64)[:, None]
    cols = np.arange(SIDE, dtype=np.float64)[None, :]
    return 1.0 + ((rows * 7 + cols * 13) % 10) / 10.0


@pytest.fixture
def real_server(tmp_path: Path) -> Iterator[tuple[str, subprocess.Popen[bytes], Path]]:
    env = {
        **os.environ,
        "CATALYTIC_SQLITE_PATH": str(tmp_path / "catalytic.db"),
        "RESULTS_DIR": str(tmp_path / "results"),
        "METRICS_PORT": "0",
        "CATALYTIC_WEBHOOK_WORKER": "false",
        "PARALLEL_CORES": "1",
        "LOG_LEVEL": "WARNING",
        "CATALYTIC_MAX_UPLOAD_BYTES": str(2 * 8 * SIDE * SIDE),
        "CATALYTIC_BACKEND": "numba",
    }
    server = Replica(env, tmp_path / "serve.log")
    try:
        server.wait_ready(120)
        yield server.url, server.process, tmp_path / "results" / "arrays"
    finally:
        server.stop()


@pytest.mark.slow
def test_800_mb_of_weights_stream_in_and_serve_a_path_query(
    real_server: tuple[str, subprocess.Popen[bytes], Path],
) -> None:
    url, process, arrays = real_server
    body_bytes = 8 * SIDE * SIDE
    baseline = _vm_hwm(process.pid)
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f8", "fortran_order": False, "shape": (SIDE, SIDE)})
    sha256 = hashlib.sha256(header.getvalue())

    def pieces() -> Iterator[bytes]:
        for first in range(0, SIDE, PIECE_ROWS):
            piece = _weight_rows(first, PIECE_ROWS).tobytes()
            sha256.update(piece)
            yield piece

    with httpx.Client(base_url=url, timeout=120) as client:
        started = time.perf_counter()
        answer = client.post(
            "/api/arrays",
            content=pieces(),
            params={"dtype": "float64", "shape": f"{SIDE},{SIDE}"},
            headers={**RAW, "Content-Length": str(body_bytes)},
        )
        elapsed = time.perf_counter() - started
        assert answer.status_code == 201, answer.text
        info = answer.json()
        upload_peak = _vm_hwm(process.pid)
        print(
            f"\nuploaded {body_bytes / 1e6:.0f} MB in {elapsed:.2f} s: {body_bytes / 1e6 / elapsed:.0f} MB/s; "
            f"server peak RSS {baseline / 1e6:.0f} MB before, {upload_peak / 1e6:.0f} MB after the upload"
        )
        assert info["shape"] == [SIDE, SIDE] and info["minimum"] == 1.0 and info["maximum"] == 1.9
        assert info["digest"] == f"sha256:{sha256.hexdigest()}"
        assert (arrays / f"{info['digest'][7:]}.npy").stat().st_size == info["nbytes"]

        query = {
            "lattice": {"shape": [SIDE, SIDE], "weights": {"array": info["digest"]}},
            "start": [5000, 5000],
            "goal": [5003, 5004],
            "method": "dijkstra",
        }
        submitted = client.post("/api/lattice/path", json=query)
        assert submitted.status_code == 202, submitted.text  # 10^8 vertices: a job
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            job = client.get(submitted.json()["location"]).json()
            if job["status"] not in ("queued", "running"):
                break
            time.sleep(0.2)
        assert job["status"] == "succeeded", job
        result = client.get(f"{submitted.json()['location']}/result").json()["result"]
        path = np.asarray(result["path"])
        assert result["found"] and path[0].tolist() == [5000, 5000] and path[-1].tolist() == [5003, 5004]
        entered = [_weight_rows(int(r), 1)[0, int(c)] for r, c in path[1:]]
        assert result["cost"] == pytest.approx(sum(entered))
        peak = _vm_hwm(process.pid)
    print(f"server peak RSS after the path query: {peak / 1e6:.0f} MB (the body is {body_bytes / 1e6:.0f} MB)")
    assert peak - baseline < body_bytes / 4, f"the server process grew by {(peak - baseline) / 1e6:.0f} MB"
    for leftover in arrays.glob(".upload-*"):
        raise AssertionError(f"a partial file was left: {leftover}")
