"""bench/gpu.sh --dry-run: the GPU benchmark pipeline end to end on the CPU at tiny sizes (CI's check of it)."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_gpu_script_dry_run_writes_results_and_prints_the_tables(tmp_path):
    pytest.importorskip("pytest_benchmark")
    environment = {**os.environ, "PYTHON": sys.executable, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        ["bash", "bench/gpu.sh", "--dry-run", "--out", str(tmp_path)], cwd=ROOT, env=environment,
        capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    results = json.loads((tmp_path / "cpu-dry-run.json").read_text())
    assert {bench["extra_info"]["impl"] for bench in results["benchmarks"]} == {"reference", "fast"}
    assert set(results["paper_epoch"]) == {"bf16", "tf32"}
    assert all(timing["epoch_seconds"] > 0 for timing in results["paper_epoch"].values())
    assert "speed-up vs baseline" in result.stdout and "400 epochs ≈" in result.stdout


def test_gpu_script_refuses_an_unknown_option():
    result = subprocess.run(["bash", "bench/gpu.sh", "--fast"], cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert result.returncode == 2 and "usage: bash bench/gpu.sh" in result.stderr
