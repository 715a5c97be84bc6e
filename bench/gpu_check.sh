#!/usr/bin/env bash
# The GPU check, in one run on a lent CUDA machine (written for an H200 with CuPy 14 for CUDA 13, numba and
# numba-cuda preinstalled, no network). Run from the repository root:
#
#     OUT=/some/dir bash bench/gpu_check.sh
#
# 1. facts: the device, the Python packages, and the cupy backend's probe answer;
# 2. start-up: every CUDA kernel compiled as a GPU server does before it reports ready (`catalytic warmup
#    --backend cupy`: seconds, kernels), then a small warm-up run of `python -m bench backends`;
# 3. cupy against numba (NUMBA_NUM_THREADS=16) at 10^8 and at 10^9 vertices: corner-to-corner BFS on a 5-D
#    lattice, components of a 3-D one, the BFS distance field of a 4-D one, and (10^8 only: numba's heap takes
#    minutes past that, and the weights alone are 8 GB) the weighted distance field (Dijkstra's costs) of a 3-D
#    one; 20 % procedural obstacles, seed 1; the numba rows are single calls, the cupy rows warm medians;
# 4. conformance on the device: tests/kernels/test_gpu.py (marker gpu: the simulator's cases on the real
#    device, then larger lattices against numba) and the primitive tests' cupy rows (CATALYTIC_BACKEND=cupy),
#    with what is left of the time budget;
# 5. ns per vertex on each backend, the speed-up over numba and the targets (10^9-vertex BFS <= 1 s on the
#    device, >= 20x numba, identical answers) as one table, printed last and written to $OUT/gpu_check.md.
#
# The project is used in place (PYTHONPATH=.), so nothing is installed. Its own dependencies must be
# importable; when some are missing and CATALYTIC_WHEELS names a folder of wheels (pip download ... -d DIR on
# a machine with network, carried along), they are installed from it with --no-index. Every step runs
# under `timeout`, and the steps' limits are cut to what is left of a budget of under 8 minutes.

set -u -o pipefail

OUT="${OUT:-bench/results/gpu-check}"
PY="${PYTHON:-python3}"
mkdir -p "$OUT"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export NUMBA_NUM_THREADS=16
unset NUMBA_ENABLE_CUDASIM CATALYTIC_BACKEND CATALYTIC_CUDA_DEVICE
BUDGET_S=470
# Vertex counts of the benchmark lattices; smaller values give a dry run of the script on any machine.
SMALL="${SMALL:-100000000}"
LARGE="${LARGE:-1000000000}"
failures=()

log() { echo "[gpu_check +${SECONDS}s] $*" | tee -a "$OUT/log.txt"; }
left() { echo $((BUDGET_S - SECONDS)); }
step() {
    # step NAME LIMIT_S COMMAND...: run under a time limit (never past the budget), keep its output in $OUT.
    local name=$1 limit=$2
    shift 2
    local remaining
    remaining=$(left)
    if ((remaining < limit)); then limit=$remaining; fi
    if ((limit < 10)); then
        log "$name: skipped, the time budget is spent"
        failures+=("$name: skipped (time)")
        return
    fi
    log "$name (limit ${limit}s)"
    timeout --signal=TERM --kill-after=10 "$limit" "$@" >"$OUT/$name.txt" 2>&1
    local rc=$?
    tail -n 15 "$OUT/$name.txt"
    if ((rc != 0)); then
        log "$name: exit status $rc"
        failures+=("$name: exit $rc")
    fi
}

log "device"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>&1 | tee "$OUT/nvidia-smi.txt"

missing=$("$PY" - <<'EOF'
import importlib.util
needed = ["numpy", "numba", "xxhash", "lz4", "tqdm", "cupy", "pytest", "hypothesis", "networkx", "scipy"]
print(" ".join(name for name in needed if importlib.util.find_spec(name) is None))
EOF
)
if [[ -n "$missing" ]]; then
    log "missing Python packages: $missing"
    if [[ -n "${CATALYTIC_WHEELS:-}" && -d "${CATALYTIC_WHEELS}" ]]; then
        read -r -a missing_names <<<"$missing"
        step install-wheels 60 "$PY" -m pip install --no-index --find-links "$CATALYTIC_WHEELS" "${missing_names[@]}"
    fi
fi

step facts 60 "$PY" - <<'EOF'
import importlib, platform
print("python", platform.python_version())
for name in ("numpy", "numba", "numba_cuda", "cupy", "xxhash", "pytest"):
    try:
        module = importlib.import_module(name)
        print(name, getattr(module, "__version__", "?"))
    except ImportError as exc:
        print(name, "MISSING:", exc)
from catalytic.kernels.cupy_backend import CupyBackend
print("cupy backend:", CupyBackend.probe() or "usable")
EOF

step warmup-cuda 60 "$PY" -m catalytic.cli warmup --backend cupy --json
step bench-warmup 40 "$PY" -m bench backends --quick --backends cupy,numba --name gpu-warmup
step bench-small 120 "$PY" -m bench backends --backends cupy,numba --tasks bfs,components,distance_field,sssp \
    --vertices "$SMALL" --repeat 3 --repeat-cpu 0 --name backends-gpu-small
# The numba BFS over 10^9 vertices is the longest row by far, so it runs last: if the budget cuts it short,
# every other row (and the GPU BFS itself) is already written.
step bench-large 220 "$PY" -m bench backends --backends cupy,numba --tasks components,distance_field,bfs \
    --vertices "$LARGE" --repeat 3 --repeat-cpu 0 --name backends-gpu-large
for size in small large; do
    cp "bench/results/backends-gpu-$size.json" "bench/results/backends-gpu-$size.md" "$OUT/" 2>/dev/null ||
        log "no benchmark results at the $size size"
done

step test-gpu 90 "$PY" -m pytest -m gpu tests/kernels/test_gpu.py -q -x -p no:cacheprovider -rs
step test-primitives-cupy 40 env CATALYTIC_BACKEND=cupy \
    "$PY" -m pytest tests/kernels/test_primitives.py -k cupy -q -x -p no:cacheprovider -rs

"$PY" - "$OUT" "${failures[@]+"${failures[@]}"}" <<'EOF' | tee "$OUT/gpu_check.md"
import json, sys
from pathlib import Path

from bench.suite_backends import gpu_summary

out, failures = Path(sys.argv[1]), sys.argv[2:]
rows = []
for size in ("small", "large"):
    try:
        rows += json.loads((out / f"backends-gpu-{size}.json").read_text())["rows"]
    except (OSError, ValueError, KeyError) as exc:
        failures.append(f"{size} benchmark results unreadable: {exc}")
print(gpu_summary(rows, failures))
EOF
