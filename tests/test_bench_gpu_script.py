"""bench/gpu.sh and its driver bench/gpu_run.py (docs/fast-path.md#gpu-run): the pipeline end to end on the CPU at
tiny sizes (CI's check of it), the time budget, failures recorded while the run goes on, the estimate."""
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"
WORKLOADS = {"rgct-G1", "rgct-G2", "temporal_conv", "gated_fusion-k1", "gated_fusion-k3", "lss", "attention"}


@pytest.fixture
def gpu_run(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCH))
    import gpu_run

    return gpu_run


def run_script(*args, timeout=600):
    environment = {**os.environ, "PYTHON": sys.executable, "OMP_NUM_THREADS": "1"}
    return subprocess.run(["bash", "bench/gpu.sh", *args], cwd=ROOT, env=environment, capture_output=True, text=True,
                          timeout=timeout)


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_gpu_script_dry_run_writes_results_and_prints_the_estimate(tmp_path):
    pytest.importorskip("pytest_benchmark")
    pytest.importorskip("triton")
    result = run_script("--dry-run", "--out", str(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    results = json.loads((tmp_path / "cpu-dry-run.json").read_text())
    assert [stage["stage"] for stage in results["stages"]] == ["smoke", "headline", "paper-epoch", "rest"]
    assert all(stage["status"] == "ok" for stage in results["stages"]), results["stages"]
    smoke = {row["test"]: row for row in results["rows"] if row["stage"] == "smoke"}
    assert set(smoke) == {f"smoke::{name}" for name in WORKLOADS}
    assert all(row["outcome"] == "passed" and row["relative_error"] <= 1e-4 for row in smoke.values())
    groups = {(bench["group"], bench["extra_info"]["impl"]) for bench in results["benchmarks"]}
    for group in ("rgct-G1/fwd+bwd", "rgct-G2/fwd+bwd", "dpnet-step/fwd+bwd", "edrnet-step/fwd+bwd", "lss/fwd+bwd",
                  "ave-attention/fwd+bwd"):
        assert {(group, "reference"), (group, "fast")} <= groups
    assert ("temporal_conv/fwd", "fast") in groups  # the rest stage
    assert set(results["paper_epoch"]) == {"bf16", "tf32"}
    assert all(timing["deterministic"] and timing["epoch_seconds"] > 0 for timing in results["paper_epoch"].values())
    assert set(results["estimate"]) == {"smoke", "headline", "paper-epoch", "rest"}
    assert all(stage["scheduled_seconds"] > 0 for stage in results["estimate"].values())
    assert "speed-up vs baseline" in result.stdout and "400 epochs ≈" in result.stdout
    assert "estimated time at the paper sizes on one H100" in result.stdout and "total" in result.stdout


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_a_spent_budget_stops_the_stages_and_keeps_the_results(tmp_path):
    pytest.importorskip("triton")  # the estimate records the Triton launches
    started = time.time()
    result = run_script("--dry-run", "--budget-s", "4", "--out", str(tmp_path), timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    results = json.loads((tmp_path / "cpu-dry-run.json").read_text())
    statuses = [stage["status"] for stage in results["stages"]]
    assert len(statuses) == 4 and statuses[-1] in ("stopped at the budget", "skipped: budget spent")
    assert sum(stage["seconds"] for stage in results["stages"]) < 10
    assert time.time() - started < 90  # the estimate after the stages included


def test_gpu_script_refuses_an_unknown_option():
    result = subprocess.run(["bash", "bench/gpu.sh", "--fast"], cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert result.returncode == 2 and "usage: bash bench/gpu.sh" in result.stderr


def test_a_bad_budget_is_one_error_line(gpu_run, capsys):
    assert gpu_run.main(["--dry-run", "--budget-s", "0"]) == 1
    assert capsys.readouterr().err.strip() == "error: --budget-s must be positive, got 0"


def test_a_failing_stage_is_recorded_and_a_hung_one_stopped(gpu_run, tmp_path):
    results = tmp_path / "r.json"
    deadline = time.time() + 60
    assert gpu_run.run_stage("fails", [sys.executable, "-c", "raise SystemExit(3)"], results, deadline) == \
        "failed (exit 3)"
    marker = tmp_path / "child-alive"
    child = tmp_path / "child.py"
    child.write_text(f"import time\ntime.sleep(3)\nopen({str(marker)!r}, 'w')\n")
    hang = f"import subprocess, sys, time; subprocess.Popen([sys.executable, {str(child)!r}]); time.sleep(60)"
    started = time.time()
    assert gpu_run.run_stage("hangs", [sys.executable, "-c", hang], results, time.time() + 1) == \
        "stopped at the budget"
    assert time.time() - started < 10
    assert gpu_run.run_stage("late", [sys.executable, "-c", "pass"], results, time.time() - 1) == \
        "skipped: budget spent"
    time.sleep(3.5)
    assert not marker.exists(), "the stage's child process outlived the stop"
    stages = json.loads(results.read_text())["stages"]
    assert [stage["stage"] for stage in stages] == ["fails", "hangs", "late"]


def test_smoke_records_a_mismatch_and_checks_the_next_op(gpu_run, tmp_path):
    from workloads import WORKLOADS, Workload

    gated = next(workload for workload in WORKLOADS if workload.name == "gated_fusion-k1")

    def off_by_a_little(module, audio, visual):
        fast = type(module).__module__.startswith("avel_fast.nn")
        return gated.objective(module, audio, visual) * (1.001 if fast else 1.0)

    wrong = Workload("wrong", gated.build, gated.inputs, off_by_a_little, videos=2)
    results = tmp_path / "r.json"
    assert gpu_run.smoke("cpu", 2, results, (wrong, gated)) == 1
    rows = {row["test"]: row for row in json.loads(results.read_text())["rows"]}
    assert rows["smoke::wrong"]["outcome"] == "failed" and rows["smoke::wrong"]["relative_error"] > 1e-4
    assert rows["smoke::gated_fusion-k1"]["outcome"] == "passed"


def test_relative_error_is_against_the_reference_scale(gpu_run):
    want = torch.tensor([10.0, -20.0])
    assert gpu_run.relative_error(want + torch.tensor([0.0, 2e-3]), want) == pytest.approx(1e-4, rel=1e-3)


def test_the_schedule_cuts_the_headline_for_the_paper_epoch(gpu_run):
    rows = gpu_run.scheduled([("smoke", 30.0), ("headline", 500.0), ("paper-epoch", 40.0), ("rest", 0.0)], 420.0)
    gets = {name: seconds for name, _, seconds in rows}
    assert gets["smoke"] == 30.0 and gets["headline"] == pytest.approx(420.0 - 90.0 - 30.0)
    assert gets["paper-epoch"] == 40.0 and gets["rest"] == pytest.approx(50.0)
    assert sum(gets.values()) == pytest.approx(420.0)
