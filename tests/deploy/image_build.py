"""The image's install and warm-up steps, rehearsed in a fresh virtualenv (no image can be built here).

What is rehearsed, read from the Dockerfile itself: the files its build stage COPYs (and only those) are built
into a wheel and installed into a new virtualenv without its dependencies (``--no-deps``: they would come from
PyPI in the image; here the project's pinned environment supplies them through a path entry, so no network is
needed); then the final stage's warm-up RUN runs with the final stage's ENV (``NUMBA_CPU_NAME``) and a fresh
``NUMBA_CACHE_DIR``: every kernel is compiled, as in ``docker build``. Not rehearsed: the base images, apt, and
pip's dependency resolution.

The session builds this image once (the ``image`` fixture in conftest.py): test_image_build.py checks the build
and the pod's seeded start from its cache, and test_rehearse.py runs the prod rehearsal on its interpreter and
cache, so the kernels are compiled once for both.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path

from tools.deploylib import ROOT

__all__ = ["Image", "build_image", "image_env", "stages"]


def stages(dockerfile: Path) -> list[list[tuple[str, str]]]:
    """The Dockerfile's stages, each a list of (INSTRUCTION, rest) with continuation lines joined."""
    text = re.sub(r"\\\n\s*", " ", dockerfile.read_text(encoding="utf-8"))
    found: list[list[tuple[str, str]]] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        instruction, _, rest = line.partition(" ")
        if instruction.upper() == "FROM":
            found.append([])
        if found:
            found[-1].append((instruction.upper(), rest.strip()))
    return found


def image_env(stage: list[tuple[str, str]]) -> dict[str, str]:
    """The ENV of a stage."""
    env: dict[str, str] = {}
    for instruction, rest in stage:
        if instruction == "ENV":
            for item in shlex.split(rest):
                key, _, value = item.partition("=")
                env[key] = value
    return env


@dataclass(frozen=True)
class Image:
    """A rehearsed image: its virtualenv, its baked numba cache, and what its install and warm-up printed."""

    venv: Path
    baked: Path
    env: dict[str, str]
    base_env: dict[str, str]
    installed: str
    warmup: subprocess.CompletedProcess[str]

    @property
    def python(self) -> Path:
        return self.venv / "bin" / "python"


def build_image(tmp_path: Path) -> Image:
    """Build the wheel from the COPYed files, install it into a new virtualenv, run the image's warm-up RUN."""
    build, final = stages(ROOT / "Dockerfile")[0], stages(ROOT / "Dockerfile")[-1]
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

    env_of_image = image_env(final)
    baked = tmp_path / "image" / env_of_image["NUMBA_CACHE_DIR"].lstrip("/")
    baked.mkdir(parents=True)
    base = {k: v for k, v in os.environ.items() if not k.startswith(("NUMBA_", "CATALYTIC_"))}
    env = {**base, **env_of_image, "NUMBA_CACHE_DIR": str(baked), "PATH": f"{venv / 'bin'}:{base['PATH']}"}
    (warm,) = [rest for instruction, rest in final if instruction == "RUN" and rest.startswith("catalytic warmup")]
    built = subprocess.run(shlex.split(warm), env=env, cwd=tmp_path, capture_output=True, text=True, timeout=240)
    return Image(venv, baked, env_of_image, base, installed, built)
