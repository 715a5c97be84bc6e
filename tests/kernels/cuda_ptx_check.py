"""Compile every GPU kernel to PTX for sm_90 without a device: numba's type inference and NVVM's code generation.

The simulator runs kernels as Python, so it cannot catch a kernel that numba-cuda would refuse to type (a
mixed signed/unsigned expression, an atomic on the wrong dtype). This script compiles each kernel with the
argument types the backend launches it with. Run by ``test_cuda_sim.py`` in a child process. It exits 0 when
all compile, 1 on a failure, and 3 when numba-cuda or its NVVM library is missing here (the test then skips).

Device functions are compiled for "the current device", so the current device's compute capability is given
here by hand: there is no device.
"""

from __future__ import annotations

import sys
import types as pytypes
from typing import Any

CC = (9, 0)


def main() -> int:
    try:
        import numba.cuda.dispatcher as dispatcher
        from numba import cuda
        from numba import types as nt
    except ImportError as exc:
        print(f"numba.cuda cannot be imported: {exc}")
        return 3
    if not hasattr(dispatcher, "get_current_device"):
        print("this numba.cuda does not look up the current device where expected")
        return 3
    dispatcher.get_current_device = lambda: pytypes.SimpleNamespace(compute_capability=CC)

    from catalytic.kernels import cuda_kernels as k

    def array(dtype: Any, ndim: int = 1) -> Any:
        return nt.Array(dtype, ndim, "C")

    i64, u64, u32, u8, i32, f64 = nt.int64, nt.uint64, nt.uint32, nt.uint8, nt.int32, nt.float64
    axes = (array(i64), array(i64), array(i64))
    generators = (
        array(i64),
        array(i64),
        array(u64),
        array(u64),
        i64,
        array(i64, 2),
        array(i64, 2),
        i64,
        array(u8),
        i64,
    )
    ring = (array(u32, 2), array(i32, 2), array(i64))  # rings, flags, control
    # (visited, dist, open_bits, words, frugal): BFS and the frugal search pass the same types
    search = (array(u32), array(i32), array(u8), array(u32), nt.boolean)
    signatures = [
        (k.open_flags, (*generators, i64, i64, array(u8))),
        (k.degree_histogram, (*axes, array(u8), array(i64))),
        (k.init_visited, (array(u8), array(u32))),
        (k.mark_sources, (array(i64), array(u32), array(u32, 2), array(i32))),
        (k.expand_level, (*axes, *ring, i64, i64, array(i32), i64, *search)),
        (k.expand_levels, (*axes, *ring, i64, i64, i64, *search)),
        (
            k.bidirectional_levels,
            (
                *axes,
                array(u32, 3),
                array(u32, 2),
                array(i32),
                array(i32),
                array(i32, 3),
                array(i64, 2),
                array(i64),
                i64,
            ),
        ),
        (k.init_frugal, (array(u32), array(u32, 2), i64)),
        (k.label_init, (array(i32),)),
        (k.label_hook, (*axes, array(u8), array(i32), array(i32))),
        (k.label_compress, (array(i32),)),
        (k.label_roots, (array(u8), array(i32), array(u32), array(i32))),
        (k.label_number, (array(u8), array(u32), array(i32), array(i32))),
        (k.label_init, (array(i64),)),
        (k.label_hook, (*axes, array(u8), array(i64), array(i32))),
        (k.label_compress, (array(i64),)),
        (k.label_roots, (array(u8), array(i64), array(u32), array(i64))),
        (k.label_number, (array(u8), array(u32), array(i64), array(i64))),
        # open mask, weights, weighted; then pending, reached, dist, limit, control, far
        (
            k.sssp_relax,
            (*axes, array(u8), array(f64), i64, array(u32), array(u32), array(f64), f64, array(i64), array(f64)),
        ),
        (k.sssp_settled, (array(f64), array(u32), f64, i64, array(u32), array(i64))),
        (k.sssp_tentative, (*axes, array(u8), array(f64), i64, array(u32), i64, array(f64), i64, array(f64))),
        (k.trace, (*axes, array(u8), array(i32), array(f64), i64, i64, i64, i64, i64, i64, array(i64), array(i64))),
        (k.trace, (*axes, array(u8), array(f64), array(f64), i64, i64, i64, i64, i64, i64, array(i64), array(i64))),
        (k.trace_frugal, (*axes, array(u8), array(u32), i64, i64, i64, array(i64), array(i64))),
    ]
    failed = 0
    for kernel, signature in signatures:
        name = kernel.py_func.__name__
        try:
            ptx, _ = cuda.compile_ptx(kernel.py_func, signature, cc=CC)
        except Exception as exc:  # report every kernel, not just the first to fail
            if type(exc).__name__ in ("NvvmSupportError", "CudaSupportError") or "libnvvm" in str(exc).lower():
                print(f"NVVM is not available: {exc}")
                return 3
            failed += 1
            print(f"FAIL {name}: {type(exc).__name__}: {exc}")
            continue
        print(f"ok {name} ({len(ptx)} characters of PTX)")
    print(f"{len(signatures) - failed} of {len(signatures)} kernels compiled")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
