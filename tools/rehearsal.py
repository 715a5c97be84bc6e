"""The prod overlay rehearsed with the real processes on loopback (``tools/rehearse``; tests/deploy/test_rehearse.py).

The rendered manifests' own commands and environment start, in the stated rollout order: the migration Job's
command, then the API Deployment's container 3 times and the worker Deployment's container 2 times, against a
real PostgreSQL and Redis. Only what :data:`DIFFERENCES` lists is changed. A small round-robin stands in for the
Service in front of the three APIs. Then: create a lattice, read it and query it on every replica, run a job and
receive its signed webhook, kill the API running a job and see another finish it, run a job whose result goes to
the results bucket (a moto S3 server on loopback) and download it from every replica, stop Redis and keep answering.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from tools.deploylib import ROOT, Doc, command_of, container_env, local_environment, one, pod_spec, render

__all__ = ["DIFFERENCES", "Rehearsal", "rehearsal", "scenario"]

DIFFERENCES = {
    "ports": "--port of each API and worker, METRICS_PORT: free loopback ports (several processes share one host)",
    "bind address": "--host 0.0.0.0 and METRICS_HOST=0.0.0.0 become 127.0.0.1 (traffic stays on loopback)",
    "DATABASE_URL": "the Secret catalytic-db-app/uri: a fresh database on the local PostgreSQL",
    "REDIS_URL": "the Secret catalytic-secrets/redis-url: the local Redis",
    "WEBHOOK_ALLOW_CIDRS": "127.0.0.0/8, so the worker may deliver to the local receiver",
    "lease lengths": "JOB_LEASE_SECONDS=3 (30 in the manifests), so a job takeover happens within seconds",
    "mounted paths": "the API-keys Secret file: a temporary file; the image's cache (--seed-from): the cache baked by "
    "the rehearsed image build when one is given (its virtualenv's interpreter then runs every container's command), "
    "else var/numba-generic, kept between rehearsals like an image layer; the NUMBA_CACHE_DIR emptyDir: a temporary "
    "directory beside an image, else that same var/numba-generic",
    "results bucket": "RESULTS_S3_ENDPOINT_URL added: a moto S3 server on loopback holding the bucket that "
    "RESULTS_S3_BUCKET names (the manifests reach AWS's endpoint for RESULTS_S3_REGION); the Secret "
    "catalytic-results-s3: keys that server accepts",
}
NUMBA_CACHE = ROOT / "var" / "numba-generic"
IMAGE_CACHE = "/opt/catalytic/numba-cache"
API_REPLICAS = 3
WORKER_REPLICAS = 2
SLOW_JOB = {
    "operation": "shortest_path",
    "lattice": {"shape": [64, 64, 64]},
    "params": {"start": [0, 0, 0], "goal": [63, 63, 63], "method": "dijkstra"},
    "backend": "numpy",
}
# A distance field of int32 just over RESULT_DB_MAX_BYTES (8 MiB, the manifests' default): it goes to the bucket.
LARGE_FIELD = {"lattice": {"shape": [130, 128, 128]}, "sources": [[0, 0, 0]]}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Process:
    """One local process standing for a container."""

    name: str
    command: list[str]
    env: dict[str, str]
    log: Path
    port: int = 0
    popen: subprocess.Popen[bytes] | None = None

    def start(self, cwd: Path) -> Process:
        with open(self.log, "wb") as sink:
            self.popen = subprocess.Popen(self.command, env=self.env, cwd=cwd, stdout=sink, stderr=subprocess.STDOUT)
        return self

    def signal(self, signum: int) -> None:
        if self.popen is not None and self.popen.poll() is None:
            self.popen.send_signal(signum)

    def stop(self) -> int | None:
        if self.popen is None:
            return None
        self.signal(signal.SIGTERM)
        try:
            return self.popen.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            return self.popen.wait(timeout=10)

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:]


class RoundRobin:
    """Stands for the Service: each request goes to the next API that accepts connections."""

    def __init__(self, urls: list[str], headers: dict[str, str]) -> None:
        self._clients = [httpx.Client(base_url=u, headers=headers, timeout=60) for u in urls]
        self._turn = itertools.cycle(range(len(urls)))

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        for _ in range(len(self._clients)):
            client = self._clients[next(self._turn)]
            with contextlib.suppress(httpx.ConnectError):
                return client.request(method, path, **kwargs)
        raise httpx.ConnectError("no API replica accepts connections")

    def close(self) -> None:
        for client in self._clients:
            client.close()


@dataclass
class Rehearsal:
    """The processes of one rehearsal and what it saw."""

    workdir: Path
    database_url: str
    redis_url: str
    stop_redis: Callable[[], None]
    docs: list[Doc] = field(default_factory=list)
    apis: list[Process] = field(default_factory=list)
    workers: list[Process] = field(default_factory=list)
    report: dict[str, Any] = field(default_factory=dict)
    key: str = "rehearsal-key"
    bucket_url: str = ""
    python: str = sys.executable
    image_cache: Path = NUMBA_CACHE
    numba_cache: Path = NUMBA_CACHE

    def _secrets(self) -> dict[str, dict[str, str]]:
        return {
            "catalytic-db-app": {"uri": self.database_url},
            "catalytic-secrets": {"redis-url": self.redis_url, "api-keys": self.key},
            "catalytic-results-s3": {"access-key-id": "rehearsal", "secret-access-key": "rehearsal"},
        }

    def config(self) -> dict[str, str]:
        """The rendered settings ConfigMap's data."""
        (config,) = [
            d for d in self.docs if d["kind"] == "ConfigMap" and d["metadata"]["name"].startswith("catalytic-config")
        ]
        data: dict[str, str] = config["data"]
        return data

    def bucket(self) -> Any:
        """A boto3 client of the local S3 server, and the bucket's name."""
        import boto3

        client = boto3.client(
            "s3", endpoint_url=self.bucket_url, region_name=self.config()["RESULTS_S3_REGION"],
            aws_access_key_id="rehearsal", aws_secret_access_key="rehearsal",
        )  # fmt: skip
        return client, self.config()["RESULTS_S3_BUCKET"]

    def _env(self, container: Doc, metrics_port: int) -> dict[str, str]:
        env = container_env(self.docs, container, self._secrets())
        keys = self.workdir / "api-keys"
        keys.write_text(self.key, encoding="utf-8")
        env |= {
            "CATALYTIC_API_KEYS_FILE": str(keys),
            "NUMBA_CACHE_DIR": str(self.numba_cache),
            "METRICS_HOST": "127.0.0.1",
            "METRICS_PORT": str(metrics_port),
            "WEBHOOK_ALLOW_CIDRS": "127.0.0.0/8",
            "JOB_LEASE_SECONDS": "3",
        }
        if self.bucket_url and "RESULTS_S3_BUCKET" in env:
            env["RESULTS_S3_ENDPOINT_URL"] = self.bucket_url
        return local_environment(env)

    def _local_command(self, container: Doc, port: int) -> list[str]:
        command = command_of(container)
        assert command[0] == "catalytic", command
        args = command[1:]
        for flag, value in (("--host", "127.0.0.1"), ("--port", str(port)), ("--seed-from", str(self.image_cache))):
            if flag in args:
                args[args.index(flag) + 1] = value
        return [self.python, "-m", "catalytic.cli", *args]

    def _process(self, name: str, container: Doc) -> Process:
        port, metrics = _free_port(), _free_port()
        return Process(
            name,
            self._local_command(container, port),
            self._env(container, metrics),
            self.workdir / f"{name}.log",
            port,
        )

    def migrate(self) -> None:
        (job,) = [d for d in self.docs if d["kind"] == "Job"]
        process = self._process("migrate", pod_spec(job)["containers"][0]).start(self.workdir)
        assert process.popen is not None
        code = process.popen.wait(timeout=180)
        assert code == 0, f"the migration Job's command failed:\n{process.tail()}"
        self.report["migrate"] = " ".join(process.command[3:])

    def start(self) -> None:
        api = pod_spec(one(self.docs, "Deployment", "catalytic-api"))
        worker = pod_spec(one(self.docs, "Deployment", "catalytic-worker"))
        self.image_cache.mkdir(parents=True, exist_ok=True)
        self.numba_cache.mkdir(parents=True, exist_ok=True)
        for index, init in enumerate(api.get("initContainers", [])):
            process = self._process(f"init-{index}", init).start(self.workdir)
            assert process.popen is not None
            assert process.popen.wait(timeout=300) == 0, f"the init container's command failed:\n{process.tail()}"
            self.report.setdefault("init", []).append(" ".join(process.command[3:]))
        self.apis = [self._process(f"api-{i}", api["containers"][0]) for i in range(API_REPLICAS)]
        self.workers = [self._process(f"worker-{i}", worker["containers"][0]) for i in range(WORKER_REPLICAS)]
        for process in (*self.apis, *self.workers):
            process.start(self.workdir)
        self.report["api"] = " ".join(self.apis[0].command[3:])
        self.report["worker"] = " ".join(self.workers[0].command[3:])
        readiness = {p.name: p for p in (*self.apis, *self.workers)}
        probe = {name: _probe_path(api if name.startswith("api") else worker) for name in readiness}
        deadline = time.monotonic() + 240
        waiting = set(readiness)
        while waiting and time.monotonic() < deadline:
            for name in sorted(waiting):
                process = readiness[name]
                assert process.popen is not None and process.popen.poll() is None, f"{name} exited:\n{process.tail()}"
                with contextlib.suppress(httpx.HTTPError):
                    if httpx.get(f"http://127.0.0.1:{process.port}{probe[name]}", timeout=2).status_code == 200:
                        waiting.discard(name)
            time.sleep(0.2)
        assert not waiting, f"never ready: {sorted(waiting)}\n" + "\n".join(readiness[n].tail() for n in waiting)

    def stop(self) -> dict[str, int | None]:
        return {p.name: p.stop() for p in (*self.apis, *self.workers)}


def _probe_path(spec: Doc) -> str:
    path: str = spec["containers"][0]["readinessProbe"]["httpGet"]["path"]
    return path


def _wait(check: Callable[[], Any], what: str, timeout: float = 120.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def scenario(run: Rehearsal) -> dict[str, Any]:
    """Drive the running processes through the rehearsal's checks; returns what was measured."""
    from standardwebhooks import Webhook

    from catalytic.webhooks.receiver import ThreadedReceiver

    report = run.report
    headers = {"Authorization": f"Bearer {run.key}"}
    front = RoundRobin([f"http://127.0.0.1:{p.port}" for p in run.apis], headers)
    receiver = ThreadedReceiver().start()
    try:
        endpoint = front.request("POST", "/api/webhooks", json={"url": receiver.url + "/hook"})
        assert endpoint.status_code == 201, endpoint.text
        secret = endpoint.json()["secret"]

        created = front.request(
            "POST", "/api/lattice/create", json={"shape": [16, 16, 16], "periodic": [True, False, False]}
        )
        assert created.status_code == 201, created.text
        lattice_id = created.json()["id"]
        lengths = set()
        for process in run.apis:
            with httpx.Client(base_url=f"http://127.0.0.1:{process.port}", headers=headers, timeout=60) as replica:
                assert replica.get(f"/api/lattice/{lattice_id}").status_code == 200
                answer = replica.post(
                    "/api/lattice/path", json={"lattice_id": lattice_id, "start": [0, 0, 0], "goal": [15, 15, 15]}
                )
                assert answer.status_code == 200, answer.text
                lengths.add(answer.json()["length"])
        assert lengths == {1 + 15 + 15}, lengths
        report["replicas_answering"] = len(run.apis)

        submitted = front.request("POST", "/api/jobs", json=SLOW_JOB)
        assert submitted.status_code == 202, submitted.text
        location = submitted.headers["location"]
        _wait(lambda: front.request("GET", location).json()["status"] == "running", "the job to run")
        owner = _owner(run, location.rsplit("/", 1)[1])
        victim = next(p for p in run.apis if p.popen is not None and p.popen.pid == owner)
        victim.signal(signal.SIGKILL)
        assert victim.popen is not None
        victim.popen.wait(timeout=30)
        report["killed"] = victim.name
        killed_at = time.monotonic()
        final = _wait(
            lambda: (s := front.request("GET", location).json())["status"] in ("succeeded", "failed") and s,
            "another replica to finish the job",
            timeout=300,
        )
        assert final["status"] == "succeeded", final
        report["takeover_s"] = round(time.monotonic() - killed_at, 1)
        new_owner = _owner(run, location.rsplit("/", 1)[1])
        report["finished_by"] = next((p.name for p in run.apis if p.popen and p.popen.pid == new_owner), "?")

        def delivered() -> Any:
            for request in receiver.requests:
                payload = json.loads(request.body)
                if payload.get("type") == "job.succeeded":
                    return request
            return None

        request = _wait(delivered, "the job.succeeded webhook", timeout=120)
        verified = Webhook(secret).verify(request.body, request.headers)
        assert verified["type"] == "job.succeeded" and verified["data"]["job_id"] == location.rsplit("/", 1)[1]
        report["webhook"] = "job.succeeded, signature verified"

        report["bucket_result"] = _bucket_result(run, front, headers)

        run.stop_redis()
        fresh = front.request("POST", "/api/lattice/create", json={"shape": [7, 7]})
        assert fresh.status_code == 201, fresh.text
        for _ in range(2 * len(run.apis)):
            answer = front.request(
                "POST", "/api/lattice/path", json={"lattice_id": fresh.json()["id"], "start": [0, 0], "goal": [6, 6]}
            )
            assert answer.status_code == 200 and answer.json()["length"] == 12, answer.text
        report["after_redis_stopped"] = "answering"
    finally:
        receiver.stop()
        front.close()
    return report


def _bucket_result(run: Rehearsal, front: RoundRobin, headers: dict[str, str]) -> str:
    """A job whose array result goes to the bucket, downloaded byte-identical from every live replica."""
    import hashlib

    submitted = front.request("POST", "/api/lattice/distance-field", json=LARGE_FIELD)
    assert submitted.status_code == 202, submitted.text
    location = submitted.headers["location"]
    final = _wait(
        lambda: (s := front.request("GET", location).json())["status"] in ("succeeded", "failed", "cancelled") and s,
        "the large-result job",
        timeout=300,
    )
    assert final["status"] == "succeeded", final
    answer = front.request("GET", f"{location}/result").json()
    assert answer["array"]["stored_in"] == "results_store", answer
    client, bucket = run.bucket()
    prefix = run.config()["RESULTS_S3_PREFIX"]
    (stored,) = client.list_objects_v2(Bucket=bucket, Prefix=prefix)["Contents"]
    assert stored["Size"] == answer["array"]["bytes"], (stored, answer)
    live = [p for p in run.apis if p.popen is not None and p.popen.poll() is None]
    for process in live:
        with httpx.Client(base_url=f"http://127.0.0.1:{process.port}", headers=headers, timeout=120) as replica:
            download = replica.get(answer["array_url"])
            assert download.status_code == 200, download.text
            assert hashlib.sha256(download.content).hexdigest() == answer["array"]["sha256"]
    return f"{stored['Size']} bytes at s3://{bucket}/{stored['Key']}, downloaded identically from {len(live)} replicas"


def _owner(run: Rehearsal, job_id: str) -> int:
    import asyncio

    import asyncpg

    async def fetch() -> str:
        conn = await asyncpg.connect(run.database_url)
        try:
            return str(await conn.fetchval("SELECT owner FROM service_jobs WHERE id = $1", job_id))
        finally:
            await conn.close()

    return int(asyncio.run(fetch()).split(":")[1])


@contextlib.contextmanager
def rehearsal(
    workdir: Path,
    database_url: str,
    redis_url: str,
    stop_redis: Callable[[], None],
    image: tuple[Path, Path] | None = None,
) -> Iterator[Rehearsal]:
    """Render prod, run the migration command, start the APIs and workers; stop them all on exit.

    ``image``: the interpreter of an installed image's virtualenv and the numba cache its build baked. Every
    container's command then runs on that interpreter and the init container seeds a fresh emptyDir from that
    cache, so nothing compiles; without it, this checkout's package runs and var/numba-generic is both.
    """
    run = Rehearsal(workdir, database_url, redis_url, stop_redis, docs=render("prod"))
    if image is not None:
        python, baked = image
        run.python, run.image_cache, run.numba_cache = str(python), baked, workdir / "numba-cache"
    run.report["differences"] = DIFFERENCES
    port = _free_port()
    s3 = Process("s3", [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)], local_environment({}),
                 workdir / "s3.log", port)  # fmt: skip
    try:
        s3.start(workdir)
        run.bucket_url = f"http://127.0.0.1:{port}"
        client, bucket = run.bucket()
        _wait(lambda: _accepts(port), "the local S3 server", timeout=60)
        client.create_bucket(Bucket=bucket)
        run.migrate()
        run.start()
        yield run
    finally:
        run.report["exit_codes"] = run.stop()
        s3.stop()


def _accepts(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0
