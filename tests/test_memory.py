"""Borrowed scratch comes back bit for bit on every exit path; memory accounting matches the arithmetic."""

from __future__ import annotations

import asyncio
import math
import threading
from pathlib import Path

import lz4.block
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from naive import lattices, to_networkx

from catalytic.errors import (
    InvalidInputError,
    InvalidTypeError,
    MemoryBudgetError,
    RestoreError,
    ScratchError,
)
from catalytic.lattice import Lattice
from catalytic.memory import (
    CHUNK_BYTES,
    MODES,
    MemoryMeter,
    borrow,
    buffer_digest,
    exact_edge_count,
    lattice_memory_report,
    memory_baselines,
    search_memory_report,
)
from catalytic.transforms import in_place, transform

DTYPES = [np.uint8, np.bool_, np.int16, np.float32, np.float64, np.complex128, np.dtype([("a", "u1"), ("b", "<f8")])]


def make_buffer(kind: str, nbytes: int, dtype: np.dtype, seed: int) -> np.ndarray:
    """A lent buffer of ``nbytes`` (rounded down to whole items): incompressible, zeros, structured or mixed."""
    dtype = np.dtype(dtype)
    n = nbytes // dtype.itemsize
    rng = np.random.default_rng(seed)
    raw = np.zeros(n * dtype.itemsize, dtype=np.uint8)
    if kind == "random":
        raw[:] = rng.integers(0, 256, raw.size, dtype=np.uint8)
    elif kind == "structured":
        raw[:] = (np.arange(raw.size) // 64 % 7).astype(np.uint8)
    elif kind == "mixed":
        raw[: raw.size // 2] = rng.integers(0, 256, raw.size // 2, dtype=np.uint8)
    return raw.view(dtype)


def scribble(scratch: object, seed: int) -> None:
    """Use the scratch as a computation would: fill every freed byte and update every held buffer."""
    free = scratch.capacity - scratch.used  # type: ignore[attr-defined]
    if free >= 8:
        block = scratch.array(free // 8, np.float64, fill=np.nan)  # type: ignore[attr-defined]
        assert np.isnan(block).all()
    for position in scratch.held():  # type: ignore[attr-defined]
        forward, backward = in_place(["xor", "add"], seed)
        scratch.apply(forward, backward, buffer=position)  # type: ignore[attr-defined]


@settings(max_examples=40, deadline=None)
@given(
    specs=st.lists(
        st.tuples(
            st.sampled_from(["random", "zeros", "structured", "mixed"]),
            st.integers(0, 20_000),
            st.sampled_from(DTYPES),
        ),
        min_size=0,
        max_size=4,
    ),
    mode=st.sampled_from(MODES),
    seed=st.integers(0, 2**32),
)
def test_restoration_is_exact(specs: list[tuple[str, int, np.dtype]], mode: str, seed: int) -> None:
    buffers = [make_buffer(kind, nbytes, dtype, seed + i) for i, (kind, nbytes, dtype) in enumerate(specs)]
    before = [b.tobytes() for b in buffers]
    with borrow(*buffers, mode=mode) as scratch:
        scribble(scratch, seed)
    assert [b.tobytes() for b in buffers] == before
    assert scratch.stats.verified


def test_multi_chunk_buffer_with_mixed_chunks_round_trips() -> None:
    rng = np.random.default_rng(3)
    lent = np.zeros(2 * CHUNK_BYTES + 12_345, dtype=np.uint8)
    lent[CHUNK_BYTES : CHUNK_BYTES + CHUNK_BYTES // 2] = rng.integers(0, 256, CHUNK_BYTES // 2, dtype=np.uint8)
    before = buffer_digest(lent)
    with borrow(lent, mode="compress") as scratch:
        assert scratch.capacity == lent.nbytes
        scribble(scratch, 1)
        assert scratch.used > lent.nbytes - 8
    assert buffer_digest(lent) == before
    stats = scratch.stats.to_dict()
    assert stats["bytes_compressed"] == lent.nbytes
    assert 0.1 < stats["ratio"] < 0.5


def test_memmap_is_restored(tmp_path: Path) -> None:
    path = tmp_path / "lent.bin"
    content = (np.arange(300_000) % 251).astype(np.uint8)
    content.tofile(path)
    mapped = np.memmap(path, dtype=np.uint8, mode="r+")
    with borrow(mapped) as scratch:
        assert scratch.capacity == content.nbytes
        scribble(scratch, 2)
    mapped.flush()
    del mapped
    assert np.array_equal(np.fromfile(path, dtype=np.uint8), content)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("interrupt", [RuntimeError("boom"), KeyboardInterrupt()], ids=["exception", "ctrl-c"])
def test_interrupted_computation_still_restores(mode: str, interrupt: BaseException) -> None:
    zeros = np.zeros(100_000, dtype=np.int32)
    noise = make_buffer("random", 50_000, np.dtype(np.uint8), 9)
    before = [zeros.tobytes(), noise.tobytes()]
    with pytest.raises(type(interrupt)), borrow(zeros, noise, mode=mode) as scratch:
        scribble(scratch, 4)
        raise interrupt
    assert [zeros.tobytes(), noise.tobytes()] == before


def test_cancelled_task_restores() -> None:
    lent = make_buffer("structured", 200_000, np.dtype(np.uint8), 0)
    before = lent.tobytes()
    started = asyncio.Event()

    async def job() -> None:
        with borrow(lent) as scratch:
            scratch.array(1000, np.uint8, fill=255)
            started.set()
            await asyncio.sleep(60)

    async def main() -> None:
        task = asyncio.create_task(job())
        await started.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    assert lent.tobytes() == before


def test_thread_timeout_restores() -> None:
    lent = make_buffer("zeros", 500_000, np.dtype(np.float64), 0)
    before = lent.tobytes()
    cancel = threading.Event()
    outcome: list[BaseException] = []

    def worker() -> None:
        try:
            with borrow(lent) as scratch:
                work = scratch.array(10_000, np.int64, fill=1)
                while not cancel.wait(0.01):
                    work += 1
                raise TimeoutError("time limit passed")
        except TimeoutError as exc:
            outcome.append(exc)

    thread = threading.Thread(target=worker)
    thread.start()
    thread.join(0.2)
    cancel.set()
    thread.join()
    assert len(outcome) == 1
    assert lent.tobytes() == before


def test_interrupt_during_restore_retries_then_reraises(monkeypatch: pytest.MonkeyPatch) -> None:
    lent = make_buffer("structured", 3 * CHUNK_BYTES // 2, np.dtype(np.uint8), 0)
    before = lent.tobytes()
    real = lz4.block.decompress
    calls = {"n": 0}

    def flaky(*args: object, **kwargs: object) -> bytes:
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(lz4.block, "decompress", flaky)
    with pytest.raises(KeyboardInterrupt), borrow(lent, mode="compress") as scratch:
        scratch.array(scratch.capacity, np.uint8, fill=7)
    assert calls["n"] > 2
    assert lent.tobytes() == before


def test_reversible_update_interrupted_before_it_ran_is_not_undone() -> None:
    lent = np.arange(1000, dtype=np.uint64)

    def forward(array: np.ndarray) -> None:
        raise KeyboardInterrupt

    def backward(array: np.ndarray) -> None:
        array -= np.uint64(1)

    with pytest.raises(KeyboardInterrupt), borrow(lent, mode="reversible") as scratch:
        scratch.apply(forward, backward)
    assert np.array_equal(lent, np.arange(1000, dtype=np.uint64))


def test_verify_catches_a_write_outside_the_contract() -> None:
    lent = make_buffer("random", 4096, np.dtype(np.uint8), 1)
    with pytest.raises(RestoreError, match=r"buffers\[0\]"), borrow(lent, mode="reversible"):
        lent[17] ^= 1
    unverified = make_buffer("random", 4096, np.dtype(np.uint8), 1)
    with borrow(unverified, mode="reversible", verify=False) as scratch:
        unverified[17] ^= 1
    assert not scratch.stats.verified


def open_pair_degree(lattice: Lattice) -> np.ndarray:
    """Per vertex, the open neighbours at +1 along each axis (wrap pairs counted once): sums to the edge count."""
    open_mask = lattice.open_mask_flat().reshape(lattice.shape)
    degree = np.zeros(lattice.shape, dtype=np.uint64)
    for axis, n in enumerate(lattice.shape):
        if n < 2:
            continue
        steps = n if lattice.periodic[axis] and n >= 3 else n - 1
        rolled = np.roll(open_mask, -1, axis=axis)
        pair = open_mask & rolled
        index = [slice(None)] * lattice.ndim
        index[axis] = slice(0, steps)
        degree[tuple(index)] += pair[tuple(index)]
    return degree.ravel()


def test_reversible_register_computes_by_difference() -> None:
    """A catalytic count: add per-vertex values into an incompressible lent register, read the sum's change."""
    lattice = Lattice((40, 30), periodic=[True, False], obstacles=[{"kind": "random", "p": 0.3, "seed": 5}])
    degree = open_pair_degree(lattice)
    register = make_buffer("random", degree.nbytes, np.dtype(np.uint64), 11)
    before = register.tobytes()

    def add(array: np.ndarray) -> None:
        array += degree

    def subtract(array: np.ndarray) -> None:
        array -= degree

    with borrow(register) as scratch:
        assert scratch.held() == [0] and scratch.capacity == 0
        start = int(register.sum(dtype=np.uint64))
        updated = scratch.apply(add, subtract)
        count = (int(updated.sum(dtype=np.uint64)) - start) % 2**64
        scratch.undo()
        assert register.tobytes() == before
        forward, backward = in_place("xor", 3)
        scratch.apply(forward, backward)
        assert register.tobytes() == transform(np.frombuffer(before, dtype=np.uint64), "xor", 3).tobytes()
    assert count == exact_edge_count(lattice)
    assert register.tobytes() == before
    assert scratch.stats.updates == 2


def test_results_identical_with_and_without_scratch() -> None:
    lattice = Lattice((64, 48, 5), periodic=[False, True, True], obstacles=[{"kind": "random", "p": 0.2, "seed": 1}])
    alone = exact_edge_count(lattice)
    lent = np.zeros(lattice.vertices * 2, dtype=np.uint8)
    with borrow(lent) as scratch:
        assert exact_edge_count(lattice, scratch=scratch) == alone
        assert scratch.stats.fresh_bytes < lattice.vertices // 10
    with borrow(budget=lattice.vertices) as fresh_only:
        assert exact_edge_count(lattice, scratch=fresh_only) == alone


def test_carved_arrays_are_aligned_disjoint_and_frozen_after() -> None:
    lent = np.ones(1 << 16, dtype=np.uint8)
    with borrow(lent) as scratch:
        first = scratch.array(3, np.uint8, fill=0)
        second = scratch.array(100, np.float64, fill=2.0)
        third = scratch.array(7, np.complex128)
        assert second.ctypes.data % np.dtype(np.float64).alignment == 0
        assert third.ctypes.data % np.dtype(np.complex128).alignment == 0
        assert not np.shares_memory(first, second) and not np.shares_memory(second, third)
        assert all(np.shares_memory(a, lent) for a in (first, second, third))
        assert scratch.used >= 3 + 800 + 112
        assert scratch.array(0, np.int64).size == 0
    assert not second.flags.writeable
    assert lent.all()
    with pytest.raises(ScratchError, match="outside its borrow"):
        scratch.array(1, np.uint8)


def test_budget_falls_back_to_fresh_or_refuses() -> None:
    noise = make_buffer("random", 100_000, np.dtype(np.uint8), 2)
    with borrow(noise, mode="compress", budget=5000) as scratch:
        assert scratch.capacity == 0 and scratch.stats.bytes_declined == noise.nbytes
        assert scratch.array(4000, np.uint8).size == 4000
        with pytest.raises(MemoryBudgetError) as info:
            scratch.array(2000, np.uint8)
        assert info.value.needed == 6000 and info.value.budget == 5000
    zeros = np.zeros(100_000, dtype=np.uint8)
    with borrow(zeros, budget=10) as tight:
        assert tight.capacity == 0 and tight.held() == [0]
    with borrow(zeros, mode="compress", max_ratio=0.001) as picky:
        assert picky.capacity == 0
    with borrow() as unlimited:
        assert unlimited.array(10_000, np.float64).size == 10_000


def test_check_disjoint_refuses_aliased_inputs() -> None:
    lent = np.zeros(1000)
    mine = np.ones(10)
    with borrow(lent) as scratch:
        scratch.check_disjoint(mine, None, "not an array")
        with pytest.raises(ScratchError) as info:
            scratch.check_disjoint(mine, lent[10:20], field="weights")
        assert info.value.field == "weights"
        assert "buffers[0]" in str(info.value)


def test_bad_buffers_name_the_field() -> None:
    ok = np.zeros(16)
    frozen = np.zeros(16)
    frozen.flags.writeable = False
    cases: list[tuple[tuple[object, ...], type[Exception], str]] = [
        ((ok, frozen), ScratchError, "buffers[1]"),
        ((ok, np.zeros((8, 8))[:, ::2]), ScratchError, "buffers[1]"),
        ((ok, ok[4:]), ScratchError, "buffers[1]"),
        ((ok, [1, 2]), InvalidTypeError, "buffers[1]"),
        ((np.array([object()]),), ScratchError, "buffers[0]"),
    ]
    for buffers, error, field in cases:
        with pytest.raises(error) as info, borrow(*buffers):  # type: ignore[arg-type]
            pass
        assert info.value.field == field  # type: ignore[attr-defined]
        assert "writable" in (info.value.allowed or "")  # type: ignore[attr-defined]
    assert not ok.any()


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"mode": "zip"}, "mode"),
        ({"budget": -1}, "budget"),
        ({"budget": 1.5}, "budget"),
        ({"max_ratio": 0.0}, "max_ratio"),
        ({"max_ratio": 2}, "max_ratio"),
    ],
)
def test_bad_options_name_the_field(kwargs: dict[str, object], field: str) -> None:
    with pytest.raises(ScratchError) as info, borrow(np.zeros(8), **kwargs):  # type: ignore[arg-type]
        pass
    assert info.value.field == field


def test_bad_scratch_calls() -> None:
    compressible = np.zeros(4096)
    with borrow(compressible) as scratch:
        with pytest.raises(ScratchError) as negative:
            scratch.array(-1, np.uint8)
        assert negative.value.field == "n"
        with pytest.raises(InvalidTypeError):
            scratch.array(2.5, np.uint8)  # type: ignore[arg-type]
        with pytest.raises(ScratchError) as held:
            scratch.apply(print, print, buffer=0)
        assert held.value.field == "buffer"
        with pytest.raises(ScratchError, match="no update"):
            scratch.undo()


def networkx_edges(lattice: Lattice) -> int:
    return int(to_networkx(lattice).number_of_edges())


@settings(max_examples=40, deadline=None)
@given(lattice=lattices(max_dim=4, max_vertices=300))
def test_exact_edge_count_matches_networkx(lattice: Lattice) -> None:
    assert exact_edge_count(lattice) == networkx_edges(lattice)


@pytest.mark.parametrize("length", [1, 2, 3, 4])
@pytest.mark.parametrize("periodic", [False, True])
def test_edge_count_short_periodic_axes(length: int, periodic: bool) -> None:
    lattice = Lattice((length, 5), periodic=[periodic, True])
    assert exact_edge_count(lattice) == networkx_edges(lattice)
    axis0 = 5 * (length if periodic and length >= 3 else length - 1)
    assert exact_edge_count(lattice) == axis0 + length * 5


def test_lattice_report_equals_the_arithmetic() -> None:
    blocked = np.zeros((6, 7), dtype=bool)
    blocked[2, 3] = True
    weights = np.full((6, 7), 2.0)
    lattice = Lattice((6, 7), periodic=[True, False], blocked=blocked, weights=weights)
    report = lattice_memory_report(lattice)
    vertices, edges = 42, networkx_edges(lattice)
    assert report["vertices"] == vertices and report["edges"] == edges
    assert report["measured"]["arrays"] == {"blocked": 42, "weights": 42 * 8, "open_mask": 42}
    measured = report["measured"]["bytes"]
    assert measured == 42 + 336 + 42 + report["measured"]["object"]
    base = report["baselines"]
    assert base["igraph"]["bytes"] == 32 * edges + 16 * vertices
    assert base["csr"]["bytes"] == 8 * 2 * edges + 4 * 2 * edges + 4 * (vertices + 1)
    assert base["csr"]["index_dtype"] == "int32"
    assert base["dense_bitmap"]["bytes"] == math.ceil(vertices**2 / 8)
    assert report["memory_efficiency_ratio"] == pytest.approx(base["igraph"]["bytes"] / measured)
    assert not report["open_mask_was_cached"]
    assert lattice_memory_report(lattice)["open_mask_was_cached"]


def test_csr_switches_to_int64_indices() -> None:
    big = memory_baselines(2**31 + 5, 3 * 2**31)
    assert big["csr"]["index_dtype"] == "int64"
    assert big["csr"]["bytes"] == 16 * 2 * 3 * 2**31 + 8 * (2**31 + 6)


def test_search_report_and_its_errors() -> None:
    lattice = Lattice((10, 10))
    report = search_memory_report(1000, lattice, what="bfs")
    assert report["edges"] == 180 and report["what"] == "bfs"
    assert report["ratios"]["igraph"] == pytest.approx((32 * 180 + 16 * 100) / 1000)
    assert report["ratios"]["dense_bitmap"] == pytest.approx(1250 / 1000)
    assert search_memory_report(0, lattice)["ratios"]["csr"] is None
    with pytest.raises(InvalidInputError) as negative:
        search_memory_report(-1, lattice)
    assert negative.value.field == "measured_bytes"
    with pytest.raises(InvalidTypeError):
        search_memory_report(1.5, lattice)  # type: ignore[arg-type]


def test_memory_meter_counts_traced_and_tracked() -> None:
    outside = np.ones(1 << 16, dtype=np.uint8)
    with MemoryMeter() as meter:
        block = np.ones(1 << 20, dtype=np.uint8)
        meter.track(outside, None)
        del block
    assert meter.traced_peak >= 1 << 20
    assert meter.tracked == 1 << 16
    assert meter.to_dict()["measured_bytes"] == meter.traced_peak + (1 << 16)


def test_nested_meters_keep_the_outer_peak() -> None:
    with MemoryMeter() as outer:
        big = np.ones(4 << 20, dtype=np.uint8)
        del big
        with MemoryMeter() as inner:
            small = np.ones(1 << 20, dtype=np.uint8)
            del small
    assert inner.traced_peak >= 1 << 20
    assert inner.traced_peak < 4 << 20
    assert outer.traced_peak >= 4 << 20


@pytest.mark.slow
def test_bench_suite_quick_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib
    import json

    # bench/ is a top-level directory of the repository, not an installed package.
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1]))
    common = importlib.import_module("bench.common")
    suite_memory = importlib.import_module("bench.suite_memory")

    monkeypatch.setattr(common, "RESULTS", tmp_path)
    assert suite_memory.main(["--quick", "--elements", "20000"]) == 0
    results = json.loads((tmp_path / "memory.json").read_text(encoding="utf-8"))
    assert {row["case"] for row in results["search"]} == set(suite_memory.QUICK_SHAPES)
    assert all(row["measured_bytes"] > 0 for row in results["search"])
    assert all(row["verified"] for row in results["borrow"])
    assert all(row["restored"] for row in results["transforms"])
    assert (tmp_path / "memory.md").read_text(encoding="utf-8").startswith("# bench: memory")


def test_fortran_ordered_and_zero_dimensional_buffers() -> None:
    grid = np.asfortranarray(np.arange(600, dtype=np.int16).reshape(20, 30) % 5)
    scalar = np.array(3.25)
    before = (grid.copy(order="F"), scalar.copy())
    with borrow(grid, scalar, mode="compress") as scratch:
        assert scratch.capacity == grid.nbytes
        scribble(scratch, 6)
    assert np.array_equal(grid, before[0]) and grid.flags.f_contiguous
    assert float(scalar) == 3.25
