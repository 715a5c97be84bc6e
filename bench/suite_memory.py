"""``python -m bench memory``: measured bytes against explicit-graph baselines, borrow() costs, transform throughput.

Three parts, every figure measured in this run:

1. For 2-D to 6-D lattices with 20 % random obstacles: the bytes the lattice holds, the bytes a full BFS
   distance field allocates (tracemalloc peak, on a fresh lattice so the mask is built inside the measurement,
   after the JIT was warmed on a small lattice) and the state of a frugal BFS path search, each against
   igraph, CSR and dense-bitmap baselines for the same lattice.
2. borrow(): compression ratio, compress / decompress / digest / verification seconds for random, zero and
   structured buffers, and the cost of a reversible update and its undo.
3. transform / inverse throughput per op on 10^8 elements, in place.

Options: ``--quick`` (small sizes, for smoke tests), ``--elements N`` (transform array length).
"""

from __future__ import annotations

import argparse
import functools
import logging
import os
import time
from typing import Any

import numpy as np

from bench.common import markdown_table, measure, write_results
from catalytic.errors import NoPathError
from catalytic.lattice import Lattice
from catalytic.memory import MemoryMeter, borrow, lattice_memory_report, search_memory_report
from catalytic.transforms import OPS, in_place, inverse, transform

logger = logging.getLogger(__name__)

SHAPES = {"2d": (1024, 1024), "3d": (128, 128, 128), "4d": (32, 32, 32, 32), "5d": (16,) * 5, "6d": (10,) * 6}
QUICK_SHAPES = {"2d": (64, 64), "3d": (16, 16, 16), "4d": (8,) * 4, "5d": (5,) * 5, "6d": (4,) * 6}
OBSTACLES = [{"kind": "random", "p": 0.2, "seed": 2026}]
BUFFER_BYTES = 64 * 2**20
ELEMENTS = 10**8


def _lattice(shape: tuple[int, ...]) -> Lattice:
    return Lattice(shape, obstacles=OBSTACLES)


def _warm_kernels(ndim: int) -> None:
    """Compile the search kernels for this dimension outside any measurement."""
    import catalytic

    small = _lattice((4,) * ndim)
    open_flat = np.flatnonzero(small.open_mask_flat())
    start = small.coords_of(int(open_flat[0])).tolist()
    catalytic.distance_field(small, [start], backend="numba")
    try:
        catalytic.shortest_path(
            small, start, small.coords_of(int(open_flat[-1])).tolist(), method="bfs", memory="frugal"
        )
    except NoPathError:
        logger.info("warm-up lattice of %d axes has no path between its corners", ndim)


def _far_open_pair(lattice: Lattice) -> tuple[list[int], list[int]]:
    open_flat = np.flatnonzero(lattice.open_mask_flat())
    return lattice.coords_of(int(open_flat[0])).tolist(), lattice.coords_of(int(open_flat[-1])).tolist()


def _search_rows(name: str, shape: tuple[int, ...]) -> list[dict[str, Any]]:
    import catalytic

    _warm_kernels(len(shape))
    rows = []
    lattice = _lattice(shape)
    report = lattice_memory_report(lattice)
    rows.append({"case": name, "what": "lattice (held arrays + object)", **_row(report["measured"]["bytes"], report)})

    fresh = _lattice(shape)
    start, goal = _far_open_pair(fresh)
    with MemoryMeter() as meter:
        field = catalytic.distance_field(fresh, [start], backend="numba")
    reached = int(np.count_nonzero(field >= 0))
    del field
    bfs = search_memory_report(meter.measured_bytes, fresh, "bfs distance field")
    rows.append({"case": name, "what": "BFS distance field (traced peak)", **_row(meter.measured_bytes, bfs)})
    rows[-1]["seconds"] = meter.seconds
    rows[-1]["reached"] = reached

    frugal = _lattice(shape)
    start, goal = _far_open_pair(frugal)
    try:
        with MemoryMeter() as meter:
            path = catalytic.shortest_path(frugal, start, goal, method="bfs", memory="frugal", backend="numba")
        kernel_bytes = int(path.memory["measured_bytes"])
        note = f"length {path.length}"
    except NoPathError:
        kernel_bytes, note = meter.measured_bytes, "no path; traced peak"
    state = search_memory_report(kernel_bytes, frugal, "frugal BFS path")
    what = (
        "frugal BFS path: tiles of open bits and 2-bit codes, level lists, packed mask (as Path.memory measures them)"
    )
    rows.append({"case": name, "what": what, **_row(kernel_bytes, state)})
    rows[-1]["traced_peak"] = meter.traced_peak
    rows[-1]["note"] = note
    return rows


def _row(measured: int, report: dict[str, Any]) -> dict[str, Any]:
    baselines = report["baselines"]
    return {
        "vertices": report["vertices"],
        "edges": report["edges"],
        "measured_bytes": int(measured),
        "igraph_bytes": baselines["igraph"]["bytes"],
        "csr_bytes": baselines["csr"]["bytes"],
        "csr_index_dtype": baselines["csr"]["index_dtype"],
        "dense_bitmap_bytes": baselines["dense_bitmap"]["bytes"],
        "igraph_ratio": baselines["igraph"]["bytes"] / measured if measured else None,
        "csr_ratio": baselines["csr"]["bytes"] / measured if measured else None,
        "dense_ratio": baselines["dense_bitmap"]["bytes"] / measured if measured else None,
    }


def _buffers(nbytes: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    mask = _lattice((nbytes,)).open_mask_flat().copy()
    return {
        "random bytes": rng.integers(0, 256, nbytes, dtype=np.uint8),
        "zeros": np.zeros(nbytes, dtype=np.uint8),
        "int64 arange": np.arange(nbytes // 8, dtype=np.int64),
        "open mask (20 % blocked)": mask,
        "float64 smooth field": np.sin(np.linspace(0, 50, nbytes // 8)),
    }


def _borrow_rows(nbytes: int) -> list[dict[str, Any]]:
    rows = []
    for name, buffer in _buffers(nbytes).items():
        with borrow(buffer) as scratch:
            if scratch.capacity:
                scratch.array(scratch.capacity, np.uint8, fill=0xA5)
            for position in scratch.held():
                forward, backward = in_place("xor", 1)
                t0 = time.perf_counter()
                scratch.apply(forward, backward, buffer=position)
                apply_s = time.perf_counter() - t0
        stats = scratch.stats.to_dict()
        rows.append(
            {
                "buffer": name,
                "bytes": buffer.nbytes,
                "lent_as": "compressed" if stats["bytes_compressed"] else "reversible (held in place)",
                "ratio": stats["ratio"] if stats["bytes_compressed"] else None,
                "freed_bytes": stats["bytes_compressed"],
                "fresh_bytes": stats["fresh_bytes"],
                "digest_s": stats["digest_s"],
                "compress_s": stats["compress_s"],
                "decompress_s": stats["decompress_s"],
                "apply_s": apply_s if stats["updates"] else None,
                "undo_s": stats["undo_s"] if stats["updates"] else None,
                "verify_s": stats["verify_s"],
                "verified": stats["verified"],
            }
        )
    return rows


def _transform_rows(elements: int, dtypes: list[str]) -> list[dict[str, Any]]:
    rows = []
    for dtype in dtypes:
        data = np.ones(elements, dtype=dtype)
        reference = data.copy()
        for op in OPS:
            forward = measure(functools.partial(transform, data, op, 7, out=data), repeat=3)
            backward = measure(functools.partial(inverse, data, op, 7, out=data), repeat=3)
            # CPU seconds do not depend on what else the shared machine runs: bytes per CPU-second times the
            # core count is what the op would reach with the machine to itself.
            cpu0 = time.process_time()
            transform(data, op, 7, out=data)
            cpu1 = time.process_time()
            inverse(data, op, 7, out=data)
            cpu2 = time.process_time()
            # Every transform above was matched by an inverse, so the data must be back.
            restored = bool(np.array_equal(data.view(np.uint8), reference.view(np.uint8)))
            rows.append(
                {
                    "dtype": dtype,
                    "op": op,
                    "elements": elements,
                    "bytes": data.nbytes,
                    "transform_s": forward["median_s"],
                    "inverse_s": backward["median_s"],
                    "transform_gb_s": data.nbytes / forward["median_s"] / 1e9,
                    "inverse_gb_s": data.nbytes / backward["median_s"] / 1e9,
                    "transform_cpu_s": cpu1 - cpu0,
                    "inverse_cpu_s": cpu2 - cpu1,
                    "transform_gb_per_cpu_s": data.nbytes / max(cpu1 - cpu0, 1e-9) / 1e9,
                    "cold_s": forward["cold_s"],
                    "restored": restored,
                }
            )
        del data, reference
    return rows


def _markdown(
    config: dict[str, Any], search: list[dict[str, Any]], lends: list[dict[str, Any]], rates: list[dict[str, Any]]
) -> str:
    parts = [
        f"Load average when the run started: {config['load_average']} on {os.cpu_count()} cores (a shared machine: "
        "timings are noisy).\n",
        "## Bytes held or allocated against explicit-graph baselines\n",
        "Baselines for the same lattice: igraph = 32 B × edges + 16 B × vertices; CSR = float64 data + "
        "indices for both directions + indptr (index dtype as SciPy picks it); dense = ceil(V² / 8). "
        "Ratio = baseline / measured.\n",
        markdown_table(
            [
                "case",
                "what",
                "vertices",
                "edges",
                "measured B",
                "igraph B",
                "CSR B",
                "dense B",
                "igraph ×",
                "CSR ×",
                "dense ×",
            ],
            [
                [
                    r["case"],
                    r["what"],
                    r["vertices"],
                    r["edges"],
                    r["measured_bytes"],
                    r["igraph_bytes"],
                    r["csr_bytes"],
                    r["dense_bitmap_bytes"],
                    r["igraph_ratio"],
                    r["csr_ratio"],
                    r["dense_ratio"],
                ]
                for r in search
            ],
        ),
        "\n## borrow(): lending costs\n",
        "Each buffer is lent alone in `auto` mode; every freed byte is then written, or the held buffer gets an "
        "in-place XOR key stream. Seconds; verify = xxh3-128 digest of the buffer after restoring.\n",
        markdown_table(
            [
                "buffer",
                "bytes",
                "lent as",
                "ratio",
                "compress s",
                "decompress s",
                "apply s",
                "undo s",
                "digest s",
                "verify s",
                "verified",
            ],
            [
                [
                    r["buffer"],
                    r["bytes"],
                    r["lent_as"],
                    "—" if r["ratio"] is None else r["ratio"],
                    r["compress_s"],
                    r["decompress_s"],
                    "—" if r["apply_s"] is None else r["apply_s"],
                    "—" if r["undo_s"] is None else r["undo_s"],
                    r["digest_s"],
                    r["verify_s"],
                    r["verified"],
                ]
                for r in lends
            ],
        ),
        f"\n## transform / inverse throughput, in place, {config['elements']:,} elements\n",
        "Median of 3 warm runs; GB/s = array bytes / wall seconds. GB per CPU-s = array bytes / CPU seconds of "
        "one transform (all threads): it does not depend on the machine's load, and times the core count it "
        "estimates the wall rate on an idle machine. `permute` moves 4096-element blocks along the cycles of a "
        "seeded block permutation and shuffles inside each block through a seeded table, in place with a few "
        "block-sized buffers.\n",
        markdown_table(
            [
                "dtype",
                "op",
                "bytes",
                "transform s",
                "inverse s",
                "transform GB/s",
                "inverse GB/s",
                "transform GB per CPU-s",
                "restored",
            ],
            [
                [
                    r["dtype"],
                    r["op"],
                    r["bytes"],
                    r["transform_s"],
                    r["inverse_s"],
                    r["transform_gb_s"],
                    r["inverse_gb_s"],
                    r["transform_gb_per_cpu_s"],
                    r["restored"],
                ]
                for r in rates
            ],
        ),
    ]
    return "\n".join(parts)


def main(argv: list[str]) -> int:
    """Run the suite and write ``bench/results/memory.{json,md}``."""
    parser = argparse.ArgumentParser(prog="python -m bench memory")
    parser.add_argument("--quick", action="store_true", help="small sizes, for smoke tests")
    parser.add_argument("--elements", type=int, default=None, help="transform array length (default 10^8)")
    args = parser.parse_args(argv)
    shapes = QUICK_SHAPES if args.quick else SHAPES
    elements = args.elements or (10**5 if args.quick else ELEMENTS)
    config = {
        "quick": args.quick,
        "shapes": {k: list(v) for k, v in shapes.items()},
        "obstacles": OBSTACLES,
        "buffer_bytes": 2**20 if args.quick else BUFFER_BYTES,
        "elements": elements,
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }
    search = [row for name, shape in shapes.items() for row in _search_rows(name, shape)]
    lends = _borrow_rows(config["buffer_bytes"])
    rates = _transform_rows(elements, ["float64", "uint8"])
    payload = {"config": config, "search": search, "borrow": lends, "transforms": rates}
    write_results("memory", payload, _markdown(config, search, lends, rates))
    return 0
