"""The driver of bench/gpu.sh: one GPU run that fits its time budget (docs/fast-path.md#gpu-run).

Stages, in order, each in its own process (a crash or a hung kernel costs one stage, not the run):

1. ``smoke``: every fast op (`workloads.py`) against its reference on CUDA, fresh random inputs at the paper
   shapes, fp32 without TF32: output, input and parameter gradients within 1e-4 of each tensor's scale;
2. ``headline``: the benchmarks that carry the claim (`HEADLINE`), eager rows first, then the compiled ones;
3. ``paper-epoch``: `paper_epoch.py` (DPNet, paper preset, bf16 and tf32, the training's own settings);
4. ``rest``: every other benchmark while the budget lasts.

No test starts after the stage's deadline (`_gpu_rows.py`) and a stage still running at it is stopped; a failing
check, test or stage is recorded and the run goes on. ``bench/results/<gpu>.json`` (`_results.py`) is rewritten
after every row. ``--dry-run``: the same pipeline on the CPU at tiny sizes (CI), then the estimated time of each
stage on an H100 at the paper sizes (`estimate`, from `step_model.py` and the kernel report's lower bounds).
"""
from __future__ import annotations

import time

STARTED = time.time()  # the budget counts from here, before the imports of a cold start

import argparse  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import os  # noqa: E402
import platform  # noqa: E402
import re  # noqa: E402
import signal  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
from datetime import datetime, timezone  # noqa: E402
from pathlib import Path  # noqa: E402

import torch  # noqa: E402

import _results  # noqa: E402
import speedup_table  # noqa: E402
from _device import MEASURE_SECONDS, WARMUP_SECONDS  # noqa: E402

BENCH = Path(__file__).resolve().parent
BUDGET_SECONDS = 420.0
PAPER_EPOCH_RESERVE = 90.0
"""Seconds of the budget the headline stage leaves to the paper epoch."""
TOLERANCE = 1e-4
BENCH_FILES = ["bench/test_bench_rgct.py", "bench/test_bench_models.py", "bench/test_bench_ops.py",
               "bench/test_bench_weak.py"]
HEADLINE = ("test_rgct_forward_backward or (test_bench_models and test_model_forward_backward) "
            "or (test_lss_forward_backward and paper) or test_attention_forward_backward")
HEADLINE_ORDER = [
    "test_rgct_forward_backward[reference", "test_rgct_forward_backward[fast-",
    "test_model_forward_backward[reference", "test_model_forward_backward[fast-",
    "test_lss_forward_backward[reference", "test_lss_forward_backward[fast-", "test_attention_forward_backward",
    "test_rgct_forward_backward[compile", "test_rgct_forward_backward[fast+compile",
    "test_lss_forward_backward[fast+compile",
    "test_model_forward_backward[compile-dpnet-bf16", "test_model_forward_backward[fast+compile-dpnet-bf16",
    "test_model_forward_backward[compile-edrnet-bf16", "test_model_forward_backward[fast+compile-edrnet-bf16",
    "test_model_forward_backward[compile-dpnet-fp32", "test_model_forward_backward[fast+compile-dpnet-fp32",
    "test_model_forward_backward[compile-edrnet-fp32", "test_model_forward_backward[fast+compile-edrnet-fp32",
]
"""The order the headline rows run in: every eager row, then each compile(reference) beside its fast+compile, bf16
first (where eager steps are host-bound and compiling matters most)."""
DRY_RUN_REST = "test_temporal_conv_forward and not backward and not compile"


def machine_name(dry_run: bool) -> str:
    """``nvidia-h100-80gb-hbm3`` for "NVIDIA H100 80GB HBM3"; ``cpu-dry-run`` for a dry run."""
    if dry_run:
        return "cpu-dry-run"
    return re.sub(r"[^a-z0-9]+", "-", torch.cuda.get_device_name().lower()).strip("-")


# --- stage 1: the CUDA smoke -------------------------------------------------------------------------------

def relative_error(got: torch.Tensor, want: torch.Tensor) -> float:
    """Largest difference relative to the reference tensor's scale (docs/fast-path.md#tolerances)."""
    scale = want.detach().abs().max().clamp_min(1e-12)
    return float((got.detach().float() - want.detach().float()).abs().max() / scale)


def smoke(device: str, videos: int | None, results: Path, workloads: tuple | None = None) -> int:
    """Each workload's fast op against its reference (module docstring); returns how many failed."""
    from workloads import WORKLOADS

    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    failed = 0
    for workload in workloads or WORKLOADS:
        started, row = time.perf_counter(), {"test": f"smoke::{workload.name}", "stage": "smoke"}
        try:
            torch.manual_seed(0)
            reference, fast = workload.modules(device)
            reference.eval()  # no dropout: the Triton kernels draw other masks
            fast.eval()
            inputs = workload.inputs(videos or workload.videos, device)
            tensors = [x for x in inputs if isinstance(x, torch.Tensor) and x.requires_grad]
            errors = []
            for module in (reference, fast):
                output = workload.objective(module, *inputs)
                grads = torch.autograd.grad(output, tensors + list(module.parameters()), allow_unused=True)
                errors.append([output, *grads])
            error = max(relative_error(got, want) for got, want in zip(*reversed(errors)) if want is not None)
            row.update(outcome="passed" if error <= TOLERANCE else "failed", relative_error=error)
        except Exception as err:  # noqa: BLE001: a failing op is recorded, the others still run
            row.update(outcome="failed", error=f"{type(err).__name__}: {err}"[-2000:])
        row["seconds"] = round(time.perf_counter() - started, 3)
        failed += row["outcome"] == "failed"
        print(f"smoke {workload.name}: {row['outcome']} {row.get('relative_error', row.get('error', ''))}", flush=True)
        _results.update(results, lambda data: data.setdefault("rows", []).append(row))
    return failed


# --- running stages ----------------------------------------------------------------------------------------

def run_stage(name: str, command: list[str], results: Path, deadline: float, env: dict | None = None) -> str:
    """Run `command` (a stage) until it ends or `deadline` (Unix time) passes, then stop its whole process
    group; records and returns the stage's status."""
    started = time.time()
    if started >= deadline:
        status = "skipped: budget spent"
    else:
        process = subprocess.Popen(command, env=env, start_new_session=True)
        try:
            code = process.wait(timeout=deadline - started)
            status = "ok" if code == 0 else f"failed (exit {code})"
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            status = "stopped at the budget"
    seconds = round(time.time() - started, 1)
    _results.update(results, lambda data: data.setdefault("stages", []).append(
        {"stage": name, "status": status, "seconds": seconds}))
    print(f"== {name}: {status} ({seconds:.0f} s)", flush=True)
    return status


def stage_env(results: Path, stage: str, deadline: float, order: list[str] | None = None, dry_run: bool = False
              ) -> dict:
    env = dict(os.environ, AVEL_FAST_RESULTS=str(results), AVEL_FAST_STAGE=stage, AVEL_FAST_DEADLINE=str(deadline),
               AVEL_FAST_ORDER=json.dumps(order or []))
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(BENCH), env.get("PYTHONPATH")]))
    if dry_run:
        env["AVEL_FAST_BENCH_DIM"] = "32"
    return env


def pytest_command(selection: str | None) -> list[str]:
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "_gpu_rows", "--benchmark-only",
               "--benchmark-columns=median,rounds", *BENCH_FILES]
    return command + (["-k", selection] if selection else [])


def cpu_name() -> str:
    cpuinfo = Path("/proc/cpuinfo")
    names = re.findall(r"model name\s*:\s*(.+)", cpuinfo.read_text()) if cpuinfo.is_file() else []
    return names[0] if names else platform.processor()


def start_results(path: Path, budget: float, dry_run: bool) -> None:
    device = "cpu (dry run)" if dry_run else torch.cuda.get_device_name()

    def start(results: dict) -> None:
        results.clear()
        results.update(
            machine_info={"node": platform.node(), "gpu": device, "cpu": {"brand_raw": cpu_name()}},
            datetime=datetime.now(timezone.utc).isoformat(), budget_seconds=budget, benchmarks=[], rows=[],
        )

    _results.update(path, start)


def run(results: Path, budget: float, dry_run: bool, started: float) -> int:
    """The four stages (module docstring) within `budget` seconds from `started` (Unix time)."""
    deadline = started + budget
    start_results(results, budget, dry_run)
    python = [sys.executable, str(BENCH / "gpu_run.py")]
    smoke_command = python + ["--smoke", "--results", str(results)] + (["--dry-run"] if dry_run else [])
    run_stage("smoke", smoke_command, results, deadline, stage_env(results, "smoke", deadline))
    headline = f"({HEADLINE}) and not compile" if dry_run else HEADLINE
    headline_deadline = deadline - min(PAPER_EPOCH_RESERVE, budget / 4)
    run_stage("headline", pytest_command(headline), results, headline_deadline,
              stage_env(results, "headline", headline_deadline, HEADLINE_ORDER, dry_run))
    epoch_command = [sys.executable, str(BENCH / "paper_epoch.py"), "--results", str(results)]
    run_stage("paper-epoch", epoch_command + (["--dry-run", "--epochs", "1"] if dry_run else []), results, deadline,
              stage_env(results, "paper-epoch", deadline))
    rest = DRY_RUN_REST if dry_run else None  # every benchmark the headline did not run
    run_stage("rest", pytest_command(rest), results, deadline, stage_env(results, "rest", deadline, dry_run=dry_run))
    speedup_table.main([str(results)])
    print(f"results: {results}")
    return 0


# --- the estimate ------------------------------------------------------------------------------------------

PROCESS_START_SECONDS = 10.0
"""A stage's process on a cold machine: Python, torch, the CUDA context."""
TRITON_COMPILE_SECONDS = 2.0
"""One kernel specialisation through Triton's JIT (the kernel report measures 1-4 s per kernel on a loaded CPU)."""
INDUCTOR_SECONDS = {"model": 45.0, "op": 12.0}
"""torch.compile of one training step (forward and backward graphs) at the paper size, per precision."""
ROW_SETUP_SECONDS = 1.0
"""Building a row's modules and inputs, pytest's own time."""
SYNTHETIC_DATA_SECONDS = 15.0
"""The synthetic AVE of the paper preset, resident on the GPU."""


def headline_rows() -> list[tuple[str, str, str, int, str | None]]:
    """``(step, impl, precision, timed calls, compiled kind)`` of every headline row (calls: warm-up + rounds)."""
    rows = []
    for impl in ("reference", "fast", "compile", "fast+compile"):
        compiled = impl.endswith("compile")
        rows += [(f"rgct-G{group}", impl, "fp32", 12, "op" if compiled else None) for group in (1, 2)]
        rows += [(f"{name}-step", impl, precision, 6, "model" if compiled else None)
                 for name in ("dpnet", "edrnet") for precision in ("fp32", "bf16")]
        if impl != "compile":  # the reference LSS cannot be compiled
            rows.append(("lss", impl, "fp32", 22, "op" if compiled else None))
        if not compiled:
            rows.append(("attention", impl, "fp32", 12, None))
    return rows


def estimate() -> list[tuple[str, float]]:
    """Seconds of each stage at the paper sizes on an H100, from `step_model` (module docstring; a model)."""
    import step_model
    from avel_fast.train.config import resolve_config
    from workloads import STEPS, WORKLOADS

    by_name = {workload.name: workload for workload in STEPS + WORKLOADS}
    counts = {(name, fast): step_model.count_step(by_name[name], fast)
              for name in ("dpnet-step", "edrnet-step", "rgct-G1", "rgct-G2", "lss", "attention")
              for fast in (False, True)}
    kernels = {launch.name for count in counts.values() for launch in count.launches}
    smoke = PROCESS_START_SECONDS + len(kernels) * TRITON_COMPILE_SECONDS + 2 * sum(
        count.seconds() for (name, _), count in counts.items() if not name.endswith("-step"))
    headline = PROCESS_START_SECONDS
    for name, impl, precision, calls, compiled in headline_rows():
        seconds = calls * counts[(name, impl.startswith("fast"))].seconds(precision, compiled is not None)
        if name == "lss":  # an op of bench/test_bench_ops.py: at least timed_rounds' warm-up and measuring time
            seconds = max(seconds, WARMUP_SECONDS + MEASURE_SECONDS)
        headline += ROW_SETUP_SECONDS + seconds + (INDUCTOR_SECONDS[compiled] if compiled else 0.0)
    config = resolve_config("dpnet", preset="paper")
    steps = math.ceil(3339 / config.batch_size)  # the AVE training split
    epoch = steps * counts[("dpnet-step", True)].seconds("bf16") + steps * counts[("dpnet-step", True)].seconds()
    paper_epoch = PROCESS_START_SECONDS + SYNTHETIC_DATA_SECONDS + 3 * 1.3 * epoch  # + validation ≈ 30 %
    stages = [("smoke", smoke), ("headline", headline), ("paper-epoch", paper_epoch)]
    return stages + [("rest", 0.0)]


def scheduled(stages: list[tuple[str, float]], budget: float) -> list[tuple[str, float, float]]:
    """``(stage, seconds needed, seconds it gets)``: each stage runs until it ends or its deadline (the budget;
    for the headline the budget less the paper epoch's reserve), the rest fills what is left."""
    clock, rows = 0.0, []
    for name, needed in stages:
        deadline = budget - min(PAPER_EPOCH_RESERVE, budget / 4) if name == "headline" else budget
        gets = budget - clock if name == "rest" else max(min(needed, deadline - clock), 0.0)
        clock += gets
        rows.append((name, needed, gets))
    return rows


def print_estimate(results: Path, budget: float) -> None:
    rows = scheduled(estimate(), budget)
    print("== estimated time at the paper sizes on one H100, cold (a model, not a measurement; "
          "docs/fast-path.md#gpu-run)")
    for name, needed, gets in rows:
        note = "the other benchmarks, while the budget lasts" if name == "rest" else (
            f"needs {needed:.0f} s: cut at its deadline" if gets < needed else "")
        print(f"   {name:<12} {gets:7.0f} s  {note}")
    print(f"   {'total':<12} {sum(gets for _, _, gets in rows):7.0f} s (budget {budget:.0f} s)")
    _results.update(results, lambda data: data.update(
        estimate={name: {"needed_seconds": round(needed, 1), "scheduled_seconds": round(gets, 1)}
                  for name, needed, gets in rows}))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget-s", type=float, default=BUDGET_SECONDS, help="seconds the whole run may take")
    parser.add_argument("--out", type=Path, default=BENCH / "results", help="directory of the results file")
    parser.add_argument("--dry-run", action="store_true",
                        help="the pipeline on the CPU at tiny sizes, and the estimate")
    parser.add_argument("--smoke", action="store_true", help=argparse.SUPPRESS)  # stage 1, run by the driver
    parser.add_argument("--results", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.smoke:
        return int(smoke("cpu" if args.dry_run else "cuda", 2 if args.dry_run else None, args.results) > 0)
    if args.budget_s <= 0:
        print(f"error: --budget-s must be positive, got {args.budget_s:g}", file=sys.stderr)
        return 1
    if not args.dry_run and not torch.cuda.is_available():
        print("error: no CUDA GPU here (--dry-run runs the pipeline on the CPU)", file=sys.stderr)
        return 1
    args.out.mkdir(parents=True, exist_ok=True)
    results = args.out / f"{machine_name(args.dry_run)}.json"
    code = run(results, args.budget_s, args.dry_run, STARTED)
    if args.dry_run:
        print_estimate(results, args.budget_s)
    return code


if __name__ == "__main__":
    sys.exit(main())
