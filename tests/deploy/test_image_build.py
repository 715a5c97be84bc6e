"""The images' install and warm-up steps, rehearsed in a fresh virtualenv (no image can be built here).

What is rehearsed, read from the Dockerfile itself: the files its build stage COPYs (and only those) are built
into a wheel and installed into a new virtualenv without its dependencies (``--no-deps``: they would come from
PyPI in the image; here the project's pinned environment supplies them through a path entry, so no network is
needed); then the final stage's warm-up RUN runs with the final stage's ENV (``NUMBA_CPU_NAME``) and a fresh
``NUMBA_CACHE_DIR``: every kernel is compiled, as in ``docker build``. Then the API pod's init container command,
taken from the rendered prod overlay, seeds its emptyDir from that cache in a new process and must load every
kernel from it without compiling any. Not rehearsed: the base images, apt, and pip's dependency resolution.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
from conftest import rendered

from tools.deploylib import ROOT, command_of, one, pod_spec

pytestmark = pytest.mark.slow


def _stages(dockerfile: Path) -> list[list[tuple[str, str]]]:
    text = re.sub(r"\\\n\s*", " ", dockerfile.read_text(encoding="utf-8"))
    stages: list[list[tuple[str, str]]] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        instruction, _, rest = line.partition(" ")
        if instruction.upper() == "FROM":
            stages.append([])
        if stages:
            stages[-1].append((instruction.upper(), rest.strip()))
    return stages


def _env(stage: list[tuple[str, str]]) -> dict[str, str]:
    env: dict[str, str] = {}
    for instruction, rest in stage:
        if instruction == "ENV":
            for item in shlex.split(rest):
                key, _, value = item.partition("=")
                env[key] = value
    return env


def test_final_stages_are_lean_and_unprivileged() -> None:
    for name in ("Dockerfile", "Dockerfile.gpu"):
        final = _stages(ROOT / name)[-1]
        runs = " ".join(rest for instruction, rest in final if instruction == "RUN")
        assert "pip install" not in runs and "gcc" not in runs
        assert "pip uninstall" in runs or "python3 \\" not in runs
        (user,) = [rest for instruction, rest in final if instruction == "USER"]
        assert user.split(":")[0].isdigit() and int(user.split(":")[0]) >= 10000
        env = _env(final)
        assert env["NUMBA_CPU_NAME"] == "generic" and env["NUMBA_CACHE_DIR"]
        assert ("RUN", "catalytic warmup --json") in final


def test_install_and_warm_up_as_the_dockerfile_does(tmp_path: Path) -> None:
    build, final = _stages(ROOT / "Dockerfile")[0], _stages(ROOT / "Dockerfile")[-1]
    context = tmp_path / "context"
    for instruction, rest in build:
        if instruction == "COPY":
            *sources, _ = rest.split()
            for source in sources:
                target = context / source
                if (ROOT / source).is_dir():
                    shutil.copytree(ROOT / source, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
                else:
                    target.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(ROOT / source, target)
    (install,) = [rest for instruction, rest in build if instruction == "RUN" and "pip install" in rest]
    extras = re.search(r'"\.(\[[a-z0-9,]+\])"', install)
    assert extras is not None, install
    wheels = tmp_path / "wheels"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(wheels),
         str(context)],
        check=True, timeout=120, capture_output=True,
    )  # fmt: skip
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=60)
    site = Path(
        subprocess.run(
            [str(venv / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            capture_output=True, text=True, check=True,
        ).stdout.strip()
    )  # fmt: skip
    (site / "project-dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n", encoding="utf-8")
    (wheel,) = wheels.glob("catalytic-*.whl")
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install", "-q", "--no-deps",
         "--no-index", f"{wheel}{extras.group(1)}"],
        check=True, timeout=120,
    )  # fmt: skip
    installed = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import catalytic; print(catalytic.__file__)"],
        capture_output=True, text=True, check=True, cwd=tmp_path,
    ).stdout  # fmt: skip
    assert installed.startswith(str(venv)), "the fresh virtualenv must import its own copy of the package"

    image_env = _env(final)
    baked = tmp_path / "image" / image_env["NUMBA_CACHE_DIR"].lstrip("/")
    baked.mkdir(parents=True)
    base = {k: v for k, v in os.environ.items() if not k.startswith(("NUMBA_", "CATALYTIC_"))}
    env = {**base, **image_env, "NUMBA_CACHE_DIR": str(baked), "PATH": f"{venv / 'bin'}:{base['PATH']}"}
    (warm,) = [rest for instruction, rest in final if instruction == "RUN" and rest.startswith("catalytic warmup")]
    built = subprocess.run(shlex.split(warm), env=env, cwd=tmp_path, capture_output=True, text=True, timeout=240)
    assert built.returncode == 0, built.stderr
    report = json.loads(built.stdout.strip().splitlines()[-1])
    assert report["cpu_name"] == "generic" and report["cache_misses"] > 0 and report["signatures"] > 10
    assert any(baked.rglob("*.nbi")), "the warm-up wrote no cache index"

    docs = rendered("prod")
    (init,) = pod_spec(one(docs, "Deployment", "catalytic-api"))["initContainers"]
    command = [part.replace(image_env["NUMBA_CACHE_DIR"], str(baked)) for part in command_of(init)]
    config = next(d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"].startswith("catalytic-config"))
    pod_cache = tmp_path / "pod" / config["data"]["NUMBA_CACHE_DIR"].lstrip("/")
    pod_env = {**base, "NUMBA_CPU_NAME": config["data"]["NUMBA_CPU_NAME"], "NUMBA_CACHE_DIR": str(pod_cache)}
    pod_env["PATH"] = f"{venv / 'bin'}:{base['PATH']}"
    seeded = subprocess.run(command, env=pod_env, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert seeded.returncode == 0, seeded.stderr
    loaded = json.loads(seeded.stdout.strip().splitlines()[-1])
    assert loaded["cache_misses"] == 0 and loaded["cache_hits"] > 0, loaded
