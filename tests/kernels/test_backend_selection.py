"""Backend selection (argument > ``CATALYTIC_BACKEND`` > auto), the GPU probe, and the run-time GPU fallback."""

from __future__ import annotations

import importlib.util
import logging
import subprocess
import sys
import textwrap
import types
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest

from catalytic.errors import BackendUnavailableError, MethodError
from catalytic.kernels import backend as registry
from catalytic.kernels import components, cupy_backend, distance_field, shortest_path
from catalytic.kernels.numba_backend import NumbaBackend
from catalytic.lattice import Lattice
from catalytic.operations import run_operation

CUPY_INSTALLED = importlib.util.find_spec("cupy") is not None


def _lattice() -> Lattice:
    # A fresh lattice per call: materialised masks are cached per lattice object and backend name, and the
    # stand-in "cupy" backends below must not leave theirs behind.
    return Lattice((6, 7), obstacles=[{"kind": "box", "lo": [1, 1], "hi": [3, 4]}])


@pytest.fixture(autouse=True)
def _clean_selection(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CATALYTIC_BACKEND", raising=False)
    # The registry caches probe answers per process; each test asks afresh.
    monkeypatch.setattr(registry, "_PROBED", {})


def _gpu_error() -> Exception:
    """An exception whose class lives in a CuPy module, as a CUDA runtime failure would."""
    cls = type("CUDARuntimeError", (RuntimeError,), {"__module__": "cupy_backends.cuda.api.runtime"})
    return cls("cudaErrorMemoryAllocation: out of memory")


class _FailingGpu(NumbaBackend):
    """Stands in for the cupy backend: usable by the probe, failing at run time like a device would."""

    name: ClassVar[str] = "cupy"
    calls: ClassVar[int] = 0

    @classmethod
    def probe(cls) -> str | None:
        return None

    def bfs(self, *args: Any, **kwargs: Any) -> int:
        type(self).calls += 1
        raise _gpu_error()

    def dijkstra(self, *args: Any, **kwargs: Any) -> int:
        type(self).calls += 1
        raise _gpu_error()

    def dijkstra_written(self, *args: Any, **kwargs: Any) -> tuple[int, None]:
        type(self).calls += 1
        raise _gpu_error()

    def bidirectional(self, *args: Any, **kwargs: Any) -> tuple[int, int, int]:
        type(self).calls += 1
        raise _gpu_error()

    def label(self, *args: Any, **kwargs: Any) -> tuple[Any, int]:
        type(self).calls += 1
        raise _gpu_error()


@pytest.fixture
def failing_gpu(monkeypatch: pytest.MonkeyPatch) -> type[_FailingGpu]:
    monkeypatch.setitem(registry._REGISTRY, "cupy", _FailingGpu)
    monkeypatch.delitem(registry._INSTANCES, "cupy", raising=False)
    monkeypatch.setattr(registry, "_warned", False)
    _FailingGpu.calls = 0
    return _FailingGpu


@pytest.fixture
def no_gpu(monkeypatch: pytest.MonkeyPatch) -> str:
    reason = "CuPy is not installed"
    monkeypatch.setattr(cupy_backend.CupyBackend, "probe", classmethod(lambda cls: reason))
    monkeypatch.setitem(registry._REGISTRY, "cupy", cupy_backend.CupyBackend)
    monkeypatch.delitem(registry._INSTANCES, "cupy", raising=False)
    return reason


# --- precedence -----------------------------------------------------------------------------------------


def test_argument_beats_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CATALYTIC_BACKEND", "numpy")
    assert registry.resolve_backend("numba") == ("numba", False)
    assert shortest_path(_lattice(), (0, 0), (5, 6), backend="numba").backend == "numba"


def test_environment_beats_auto(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CATALYTIC_BACKEND", " NumPy ")
    assert registry.resolve_backend(None) == ("numpy", False)
    assert shortest_path(_lattice(), (0, 0), (5, 6)).backend == "numpy"


def test_unknown_backend_names_the_choices(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(MethodError, match="auto, numpy, numba or cupy"):
        registry.resolve_backend("opencl")
    monkeypatch.setenv("CATALYTIC_BACKEND", "tpu")
    with pytest.raises(MethodError, match="'tpu'"):
        registry.resolve_backend(None)


def test_auto_picks_numba_without_cupy(no_gpu: str) -> None:
    assert registry.resolve_backend(None) == ("numba", True)
    assert registry.resolve_backend("auto") == ("numba", True)
    assert "cupy" not in registry.backends()
    assert shortest_path(_lattice(), (0, 0), (5, 6)).backend == "numba"


def test_explicit_cupy_without_gpu_names_what_is_missing(no_gpu: str, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(BackendUnavailableError, match=no_gpu):
        registry.get_backend("cupy")
    with pytest.raises(BackendUnavailableError, match=no_gpu):
        shortest_path(_lattice(), (0, 0), (5, 6), backend="cupy")
    monkeypatch.setenv("CATALYTIC_BACKEND", "cupy")
    with pytest.raises(BackendUnavailableError, match=no_gpu):
        distance_field(_lattice(), [(0, 0)])


@pytest.mark.skipif(CUPY_INSTALLED, reason="CuPy is installed here, so the real probe asks the device instead")
def test_real_probe_without_cupy() -> None:
    assert cupy_backend.CupyBackend.probe() == "CuPy is not installed"
    with pytest.raises(BackendUnavailableError, match="CuPy is not installed"):
        shortest_path(_lattice(), (0, 0), (5, 6), backend="cupy")


# --- the probe ------------------------------------------------------------------------------------------


def test_probe_reports_a_missing_device(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_device() -> int:
        raise RuntimeError("cudaErrorNoDevice: no CUDA-capable device is detected")

    fake = types.SimpleNamespace(cuda=types.SimpleNamespace(runtime=types.SimpleNamespace(getDeviceCount=no_device)))
    monkeypatch.setitem(sys.modules, "cupy", fake)
    assert cupy_backend.CupyBackend.probe() == "no CUDA device: cudaErrorNoDevice: no CUDA-capable device is detected"


def test_probe_reports_zero_devices(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = types.SimpleNamespace(cuda=types.SimpleNamespace(runtime=types.SimpleNamespace(getDeviceCount=lambda: 0)))
    monkeypatch.setitem(sys.modules, "cupy", fake)
    assert cupy_backend.CupyBackend.probe() == "no CUDA device: the CUDA runtime reports none"


def test_probe_reports_cupy_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "cupy", None)  # makes `import cupy` raise ImportError
    assert cupy_backend.CupyBackend.probe() == "CuPy is not installed"


def test_cupy_array_check_never_imports(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delitem(sys.modules, "cupy", raising=False)
    assert not cupy_backend.is_cupy_array(np.zeros(3))
    assert "cupy" not in sys.modules

    class FakeArray:
        pass

    monkeypatch.setitem(sys.modules, "cupy", types.SimpleNamespace(ndarray=FakeArray))
    assert cupy_backend.is_cupy_array(FakeArray())
    assert not cupy_backend.is_cupy_array(np.zeros(3))


# --- run-time fallback ----------------------------------------------------------------------------------


def test_auto_falls_back_to_numba_once_warned_and_counted(
    failing_gpu: type[_FailingGpu], caplog: pytest.LogCaptureFixture
) -> None:
    before = registry.fallback_count()
    with caplog.at_level(logging.WARNING, logger="catalytic.kernels"):
        first = shortest_path(_lattice(), (0, 0), (5, 6))
        field = distance_field(_lattice(), [(0, 0)])
    assert failing_gpu.calls == 2
    assert first.backend == "numba"
    assert first.length == shortest_path(_lattice(), (0, 0), (5, 6), backend="numpy").length
    np.testing.assert_array_equal(field, distance_field(_lattice(), [(0, 0)], backend="numpy"))
    assert registry.fallback_count() == before + 2
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING and "falling back to numba" in r.message]
    assert len(warnings) == 1
    assert "CUDARuntimeError" in warnings[0].getMessage()


def test_answers_name_the_backend_that_ran_after_a_fallback(failing_gpu: type[_FailingGpu]) -> None:
    ran: dict[str, Any] = {}
    distance_field(_lattice(), [(0, 0)], report=ran)
    assert ran == {"backend": "numba"}
    components(_lattice(), report=ran)
    assert ran == {"backend": "numba"}
    for operation, params in (("distance_field", {"sources": [[0, 0]]}), ("components", {})):
        answer, _ = run_operation(_lattice(), operation, params)
        assert answer["backend"] == "numba", operation
    assert failing_gpu.calls == 4
    components(_lattice(), backend="numpy", report=ran)
    assert ran == {"backend": "numpy"}


def test_fallback_listeners_are_told(failing_gpu: type[_FailingGpu], monkeypatch: pytest.MonkeyPatch) -> None:
    heard: list[int] = []
    monkeypatch.setattr(registry, "_fallback_listeners", [lambda: heard.append(1)])
    shortest_path(_lattice(), (0, 0), (5, 6))
    assert heard == [1]


def test_explicit_gpu_does_not_fall_back(failing_gpu: type[_FailingGpu], monkeypatch: pytest.MonkeyPatch) -> None:
    before = registry.fallback_count()
    with pytest.raises(RuntimeError, match="out of memory") as caught:
        shortest_path(_lattice(), (0, 0), (5, 6), backend="cupy")
    assert type(caught.value).__module__.startswith("cupy")
    monkeypatch.setenv("CATALYTIC_BACKEND", "cupy")
    with pytest.raises(RuntimeError, match="out of memory"):
        distance_field(_lattice(), [(0, 0)])
    assert registry.fallback_count() == before


def test_bad_input_under_auto_is_not_a_gpu_failure(failing_gpu: type[_FailingGpu]) -> None:
    before = registry.fallback_count()
    with pytest.raises(MethodError):
        shortest_path(_lattice(), (0, 0), (5, 6), method="teleport")
    assert registry.fallback_count() == before


# --- placement ------------------------------------------------------------------------------------------


class _PlacingGpu(NumbaBackend):
    """Stands in for the cupy backend with its placement rule; any search that reaches it is counted."""

    name: ClassVar[str] = "cupy"
    host_backend = "numba"
    host_methods = cupy_backend.CupyBackend.host_methods
    placement = cupy_backend.CupyBackend.placement
    searches: ClassVar[list[str]] = []

    @classmethod
    def probe(cls) -> str | None:
        return None

    def bfs(self, *args: Any, **kwargs: Any) -> int:
        type(self).searches.append("bfs")
        return super().bfs(*args, **kwargs)

    def dijkstra_written(self, *args: Any, **kwargs: Any) -> tuple[int, Any]:
        type(self).searches.append("astar" if args[-1] else "dijkstra")
        return super().dijkstra_written(*args, **kwargs)


@pytest.mark.parametrize("backend", [None, "cupy"])
def test_astar_point_queries_run_on_the_host_backend_and_say_so(
    monkeypatch: pytest.MonkeyPatch, backend: str | None
) -> None:
    monkeypatch.setitem(registry._REGISTRY, "cupy", _PlacingGpu)
    monkeypatch.delitem(registry._INSTANCES, "cupy", raising=False)
    monkeypatch.setattr(_PlacingGpu, "searches", [])
    open_lattice = Lattice((9, 8))  # no obstacles: auto resolves to A*
    path = shortest_path(open_lattice, (0, 0), (8, 7), backend=backend)
    reference = shortest_path(open_lattice, (0, 0), (8, 7), backend="numpy")
    assert (path.method, path.backend) == ("astar", "numba")
    assert (path.length, path.cost, path.expanded) == (reference.length, reference.cost, reference.expanded)
    np.testing.assert_array_equal(path.coords, reference.coords)
    assert _PlacingGpu.searches == []
    # the same method asked of the same lattice by name; other methods stay on the device
    assert shortest_path(open_lattice, (0, 0), (8, 7), method="astar", backend=backend).backend == "numba"
    for method in ("bfs", "dijkstra"):
        assert shortest_path(open_lattice, (0, 0), (8, 7), method=method, backend=backend).backend == "cupy"
    assert _PlacingGpu.searches == ["bfs", "dijkstra"]


def test_a_gpu_server_compiles_the_device_kernels_in_a_child_before_it_is_ready(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from catalytic import warmup

    warmup.warm_start("numba")  # a CPU backend: the small query only, no child
    monkeypatch.setitem(registry._REGISTRY, "cupy", _PlacingGpu)
    monkeypatch.delitem(registry._INSTANCES, "cupy", raising=False)
    assert registry.resolve_backend("auto") == ("cupy", True)
    # The child process has no stand-in and no device here, so its compile fails, and the warm-up says so.
    with pytest.raises(RuntimeError, match="compiling the CUDA kernels failed"):
        warmup.warm_start("auto")


# --- imports --------------------------------------------------------------------------------------------


def test_import_catalytic_does_not_import_cupy(tmp_path: Path) -> None:
    # A stand-in `cupy` that would import fine proves the import is never attempted, not merely failing.
    package = tmp_path / "cupy"
    package.mkdir()
    (package / "__init__.py").write_text("IMPORTED = True\n", encoding="utf-8")
    script = textwrap.dedent(
        """
        import sys
        import catalytic
        import catalytic.kernels
        import catalytic.kernels.backend
        import catalytic.kernels.cupy_backend
        print("after-import", "cupy" in sys.modules, "numba.cuda" in sys.modules)
        from catalytic.kernels.backend import resolve_backend
        print("after-explicit", resolve_backend("numba"), "cupy" in sys.modules)
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        env={"PYTHONPATH": f"{tmp_path}:{Path(__file__).resolve().parents[2]}", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    lines = result.stdout.splitlines()
    assert "after-import False False" in lines
    assert "after-explicit ('numba', False) False" in lines
