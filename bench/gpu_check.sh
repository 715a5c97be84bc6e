#!/usr/bin/env bash
# The GPU check, in one run on a lent CUDA machine (written for an H200 with CuPy 14 for CUDA 13, numba and
# numba-cuda preinstalled, no network). Run from the repository root:
#
#     OUT=/some/dir bash bench/gpu_check.sh
#
# 1. facts: the device, the Python packages, and the cupy backend's probe answer;
# 2. conformance on the device: tests/kernels/test_gpu.py (marker gpu: the simulator's cases on the real
#    device, then larger lattices against numba) and the primitive tests' cupy rows (CATALYTIC_BACKEND=cupy);
# 3. a small warm-up run of `python -m bench backends` (JIT compiles, numba's cache, device start-up);
# 4. cupy against numba (NUMBA_NUM_THREADS=16) on 5-D 63^5 corner-to-corner BFS, 3-D 1000^3 components and a
#    4-D 100^4 distance field, 20 % procedural obstacles, seed 1; the numba rows are single calls (minutes
#    each on 10^9 vertices), the cupy rows warm medians of 5;
# 5. the targets (10^9-vertex BFS <= 1 s on the device, >= 20x numba, identical answers) as one table,
#    printed last and written to $OUT/gpu_check.md.
#
# The project is used in place (PYTHONPATH=.), so nothing is installed. Its own dependencies must be
# importable; when some are missing and CATALYTIC_WHEELS names a folder of wheels (pip download ... -d DIR on
# a machine with network, carried along), they are installed from it with --no-index. Every step runs
# under `timeout`, and the steps' limits add up to under 8 minutes.

set -u -o pipefail

OUT="${OUT:-bench/results/gpu-check}"
PY="${PYTHON:-python3}"
mkdir -p "$OUT"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export NUMBA_NUM_THREADS=16
unset NUMBA_ENABLE_CUDASIM CATALYTIC_BACKEND CATALYTIC_CUDA_DEVICE
BUDGET_S=470
# Axis lengths of the benchmark lattices; smaller values give a dry run of the script on any machine.
SHAPE_5D="${SHAPE_5D:-63}"
SHAPE_3D="${SHAPE_3D:-1000}"
SHAPE_4D="${SHAPE_4D:-100}"
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
        step install-wheels 60 "$PY" -m pip install --no-index --find-links "$CATALYTIC_WHEELS" $missing
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

step test-gpu 150 "$PY" -m pytest -m gpu tests/kernels/test_gpu.py -q -x -p no:cacheprovider -rs
step test-primitives-cupy 60 env CATALYTIC_BACKEND=cupy \
    "$PY" -m pytest tests/kernels/test_primitives.py -k cupy -q -x -p no:cacheprovider -rs

# The numba BFS over 10^9 vertices is the longest row by far, so it runs last: if the budget cuts it short,
# every other row (and the GPU BFS itself) is already written.
step bench-warmup 40 "$PY" -m bench backends --quick --backends cupy,numba --name gpu-warmup
step bench 400 "$PY" -m bench backends --backends cupy,numba --tasks distance_field,components,bfs \
    --shape-5d "$SHAPE_5D" --shape-3d "$SHAPE_3D" --shape-4d "$SHAPE_4D" --repeat 5 --repeat-cpu 0 --name backends-gpu
cp bench/results/backends-gpu.json bench/results/backends-gpu.md "$OUT/" 2>/dev/null || log "no benchmark results"

"$PY" - "$OUT" "${failures[@]+"${failures[@]}"}" <<'EOF' | tee "$OUT/gpu_check.md"
import json, sys
from pathlib import Path

out, failures = Path(sys.argv[1]), sys.argv[2:]
rows = []
try:
    rows = json.loads((out / "backends-gpu.json").read_text())["rows"]
except (OSError, ValueError, KeyError) as exc:
    failures.append(f"benchmark results unreadable: {exc}")
measured = {(r["task"], r["backend"]): r for r in rows if r.get("status") == "measured"}
lines = ["| check | measured | target | met |", "|---|---|---|---|"]
bfs_gpu = measured.get(("bfs", "cupy"))
if bfs_gpu:
    lines.append(f"| BFS on the GPU ({bfs_gpu['lattice']}), warm median | {bfs_gpu['median_s']:.3f} s | <= 1 s | "
                 f"{'yes' if bfs_gpu['median_s'] <= 1.0 else 'NO'} |")
else:
    lines.append("| BFS on the GPU | not measured | <= 1 s | NO |")
for task in ("bfs", "distance_field", "components"):
    gpu, cpu = measured.get((task, "cupy")), measured.get((task, "numba"))
    if gpu and cpu:
        ratio = cpu["median_s"] / gpu["median_s"]
        lines.append(f"| {task}: numba {cpu['median_s']:.2f} s / cupy {gpu['median_s']:.3f} s | {ratio:.1f}x | "
                     f">= 20x | {'yes' if ratio >= 20 else 'NO'} |")
    else:
        lines.append(f"| {task}: speed-up over numba | not measured | >= 20x | NO |")
    if gpu and cpu:
        same = gpu["value"] == cpu["value"] and gpu["digest"] == cpu["digest"]
        lines.append(f"| {task}: identical answers (count {gpu['value']}, digest {gpu['digest']}) | "
                     f"{'identical' if same else 'DIFFERENT'} | identical | {'yes' if same else 'NO'} |")
for failure in failures:
    lines.append(f"| step failed: {failure} | - | passes | NO |")
print("\n".join(lines))
EOF
