#!/usr/bin/env bash
# One command on a CUDA machine with the package installed (pip install -e ".[dev]"): the CUDA tests, the benchmark
# suite (reference vs fast vs torch.compile(reference)) and timed paper-preset DPNet epochs (fast; bf16 and tf32),
# stored as bench/results/<gpu-name>.json; prints the speed-up table and the extrapolated 400-epoch wall time.
#   bash bench/gpu.sh [--dry-run] [--out DIR]
# --dry-run: the same pipeline on the CPU at tiny sizes (CI: tests/test_bench_gpu_script.py), results in a
# temporary directory unless --out is given. PYTHON names the interpreter (default: python).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python}
DRY_RUN=0
OUT=""
while [[ $# -gt 0 ]]; do
  case $1 in
    --dry-run) DRY_RUN=1 ;;
    --out) OUT=${2:?--out needs a directory}; shift ;;
    *) echo "usage: bash bench/gpu.sh [--dry-run] [--out DIR]" >&2; exit 2 ;;
  esac
  shift
done
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
if [[ $DRY_RUN == 1 ]]; then
  TESTS=(tests/test_train_sync.py -k cuda)
  export AVEL_FAST_BENCH_DIM=32
  BENCH=(bench/test_bench_models.py -k "test_model_forward and dpnet and not backward")
  EPOCH=(--dry-run --epochs 1 --out "${OUT:-$WORK/results}")
else
  if ! "$PYTHON" -c 'import sys, torch; sys.exit(not torch.cuda.is_available())'; then
    echo "bench/gpu.sh: no CUDA GPU here (--dry-run runs the pipeline on the CPU)" >&2
    exit 1
  fi
  TESTS=(tests -k cuda)
  BENCH=(bench/test_bench_models.py bench/test_bench_rgct.py bench/test_bench_ops.py)
  EPOCH=(--out "${OUT:-bench/results}")
fi
echo "== CUDA tests"
"$PYTHON" -m pytest -q -p no:cacheprovider "${TESTS[@]}"
echo "== benchmarks"
"$PYTHON" -m pytest -q -p no:cacheprovider "${BENCH[@]}" --benchmark-only --benchmark-json="$WORK/benchmarks.json"
echo "== paper-preset DPNet epochs"
"$PYTHON" bench/paper_epoch.py --benchmarks "$WORK/benchmarks.json" "${EPOCH[@]}"
