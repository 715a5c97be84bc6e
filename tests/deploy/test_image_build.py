"""The images' install and warm-up steps, rehearsed in a fresh virtualenv (no image can be built here).

The session's ``image`` fixture (image_build.py) reads the Dockerfile, builds and installs the wheel of what its
build stage COPYs into a new virtualenv and runs the final stage's warm-up RUN with a fresh ``NUMBA_CACHE_DIR``:
every kernel is compiled, as in ``docker build``. Here the install and that warm-up are checked; then the API pod's
init container command, taken from the rendered prod overlay, seeds its emptyDir from that cache in a new process
and must load every kernel from it without compiling any. Not rehearsed: the base images, apt, and pip's
dependency resolution.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from conftest import rendered
from image_build import Image, image_env, stages

from tools.deploylib import ROOT, command_of, one, pod_spec

# One worker runs this module and test_rehearse.py: they share the session's image, built once.
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("image")]


def test_final_stages_are_lean_and_unprivileged() -> None:
    for name in ("Dockerfile", "Dockerfile.gpu"):
        final = stages(ROOT / name)[-1]
        runs = " ".join(rest for instruction, rest in final if instruction == "RUN")
        assert "pip install" not in runs and "gcc" not in runs
        assert "pip uninstall" in runs or "python3 \\" not in runs
        (user,) = [rest for instruction, rest in final if instruction == "USER"]
        assert user.split(":")[0].isdigit() and int(user.split(":")[0]) >= 10000
        env = image_env(final)
        assert env["NUMBA_CPU_NAME"] == "generic" and env["NUMBA_CACHE_DIR"]
        assert ("RUN", "catalytic warmup --json") in final


def test_install_and_warm_up_as_the_dockerfile_does(image: Image, tmp_path: Path) -> None:
    assert image.installed.startswith(str(image.venv)), "the fresh virtualenv must import its own copy of the package"
    built = image.warmup
    assert built.returncode == 0, built.stderr
    report = json.loads(built.stdout.strip().splitlines()[-1])
    assert report["cpu_name"] == "generic" and report["cache_misses"] > 0 and report["signatures"] > 10
    assert any(image.baked.rglob("*.nbi")), "the warm-up wrote no cache index"

    docs = rendered("prod")
    (init,) = pod_spec(one(docs, "Deployment", "catalytic-api"))["initContainers"]
    command = [part.replace(image.env["NUMBA_CACHE_DIR"], str(image.baked)) for part in command_of(init)]
    config = next(d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"].startswith("catalytic-config"))
    pod_cache = tmp_path / "pod" / config["data"]["NUMBA_CACHE_DIR"].lstrip("/")
    pod_env = {**image.base_env, "NUMBA_CPU_NAME": config["data"]["NUMBA_CPU_NAME"], "NUMBA_CACHE_DIR": str(pod_cache)}
    pod_env["PATH"] = f"{image.venv / 'bin'}:{image.base_env['PATH']}"
    seeded = subprocess.run(command, env=pod_env, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert seeded.returncode == 0, seeded.stderr
    loaded = json.loads(seeded.stdout.strip().splitlines()[-1])
    assert loaded["cache_misses"] == 0 and loaded["cache_hits"] > 0, loaded
