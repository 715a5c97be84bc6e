"""The prod overlay rehearsed with the real processes (tools/rehearsal.py): migration Job first, 3 APIs, 2 workers,
real PostgreSQL and a throwaway Redis, on loopback. Only the listed differences from the manifests are made.

The containers run the session's rehearsed image (the ``image`` fixture: the wheel installed into a virtualenv, its
kernels compiled by the Dockerfile's warm-up), and the API's init container seeds its emptyDir from that image's
cache, as in a pod: the kernels are compiled once in the session, by the image build, not again here."""

from __future__ import annotations

from pathlib import Path

import pytest
from image_build import Image
from servers import start_redis

from tools.rehearsal import DIFFERENCES, rehearsal, scenario

# One worker runs this module and test_image_build.py: they share the session's image, built once.
pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.slow, pytest.mark.xdist_group("image")]


def test_the_differences_are_only_the_allowed_ones() -> None:
    assert set(DIFFERENCES) == {
        "ports", "bind address", "DATABASE_URL", "REDIS_URL", "WEBHOOK_ALLOW_CIDRS", "lease lengths", "mounted paths",
        "results bucket",
    }  # fmt: skip


def test_prod_rehearsal(pg_url: str, tmp_path: Path, image: Image) -> None:
    redis = start_redis(tmp_path / "redis")
    try:
        with rehearsal(tmp_path, pg_url, redis.url, redis.stop, image=(image.python, image.baked)) as run:
            report = scenario(run)
            print(report)
        assert report["migrate"] == "migrate"
        assert report["api"].startswith("serve --host 127.0.0.1 --port") and "--workers 1" in report["api"]
        assert report["worker"].startswith("worker --host 127.0.0.1 --port")
        assert report["replicas_answering"] == 3 and report["finished_by"] != report["killed"]
        assert report["webhook"] == "job.succeeded, signature verified"
        assert report["bucket_result"].endswith("downloaded identically from 2 replicas"), report["bucket_result"]
        assert report["after_redis_stopped"] == "answering"
        assert report["init"] and report["init"][0].startswith("warmup --seed-from")
        # uvicorn raises SIGTERM again after its graceful shutdown, so a served process ends by that signal.
        survivors = {name: code for name, code in run.report["exit_codes"].items() if name != report["killed"]}
        assert all(code in (0, -15) for code in survivors.values()), (survivors, [p.tail() for p in run.apis])
        assert all(code == 0 for name, code in survivors.items() if name.startswith("worker"))
    finally:
        redis.close()
