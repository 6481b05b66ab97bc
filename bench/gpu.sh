#!/usr/bin/env bash
# One command on a CUDA machine with the package installed (pip install -e ".[dev]"), within a time budget it
# checks itself: a CUDA smoke of every kernel against its reference, the headline benchmarks, timed paper-preset
# DPNet epochs, then the other benchmarks while the budget lasts; bench/results/<gpu-name>.json is rewritten after
# every row (docs/fast-path.md#gpu-run; the stages are bench/gpu_run.py's).
#   bash bench/gpu.sh [--budget-s SECONDS] [--dry-run] [--out DIR]
# --dry-run: the same pipeline on the CPU at tiny sizes (CI: tests/test_bench_gpu_script.py), results in a
# temporary directory unless --out is given, then the estimated time of each stage on an H100 at the paper sizes.
# PYTHON names the interpreter (default: python).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python}
ARGS=()
DRY_RUN=0
OUT=""
while [[ $# -gt 0 ]]; do
  case $1 in
    --dry-run) DRY_RUN=1; ARGS+=(--dry-run) ;;
    --out) OUT=${2:?--out needs a directory}; shift ;;
    --budget-s) ARGS+=(--budget-s "${2:?--budget-s needs a number of seconds}"); shift ;;
    *) echo "usage: bash bench/gpu.sh [--budget-s SECONDS] [--dry-run] [--out DIR]" >&2; exit 2 ;;
  esac
  shift
done
if [[ -z $OUT && $DRY_RUN == 1 ]]; then
  OUT=$(mktemp -d)
  trap 'rm -rf "$OUT"' EXIT
fi
exec_args=("${ARGS[@]}")
[[ -n $OUT ]] && exec_args+=(--out "$OUT")
"$PYTHON" bench/gpu_run.py "${exec_args[@]}"
