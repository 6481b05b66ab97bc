"""bench/kernel_report.py: every Triton kernel at the paper shapes, compiled for sm_90 by Triton's toolchain
(docs/fast-path.md#kernel-report): no spills, every kernel launched by a workload, the occupancy flag."""
import importlib.util
import os
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"


@pytest.fixture(scope="module")
def kernel_report():
    pytest.importorskip("triton")
    spec = importlib.util.spec_from_file_location("kernel_report", BENCH / "kernel_report.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def paper_report(kernel_report):
    """The report's rows, computed once (the kernels compile in a few seconds each, then from Triton's cache)."""
    if os.environ.get("TRITON_INTERPRET", "0") not in ("", "0"):
        pytest.skip("TRITON_INTERPRET=1 replaces the compiler")
    reason = kernel_report.cuda_backend_unavailable()
    if reason is not None:
        pytest.skip(f"Triton's CUDA backend cannot compile here: {reason}")
    return kernel_report.report()


def test_paper_shape_kernels_do_not_spill(paper_report):
    rows, _ = paper_report
    assert rows
    spilling = [(row.workload, row.kernel, row.spill_bytes) for row in rows if row.spill_bytes]
    assert spilling == []


def test_every_kernel_is_launched_and_modelled(paper_report, kernel_report):
    rows, missing = paper_report
    assert missing == [], "a kernel no workload launches: add its op to bench/workloads.py"
    assert {row.kernel for row in rows} == {name.rsplit(".", 1)[1] for name in kernel_report.kernels()}
    assert all(row.flops is not None and row.flops > 0 and row.bytes > 0 for row in rows), "update FLOPS"
    for row in rows:
        assert row.bound_seconds == pytest.approx(max(row.bytes / 3.35e12, row.flops / 67e12))
        assert row.waves == pytest.approx(row.grid / (row.ctas_per_sm * 132))


def test_capture_leaves_the_process_as_it_was(kernel_report, paper_report):
    from triton.runtime.jit import JITFunction

    assert JITFunction.run.__name__ == "run"
    assert "TRITON_INTERPRET" not in os.environ or os.environ["TRITON_INTERPRET"] in ("", "0")


@pytest.mark.parametrize(
    "registers, shared, warps, expected",
    [
        (168, 10752, 4, 3),  # the RGCT backward at G = 2: 168 registers round to 5376 per warp -> 12 warps
        (255, 0, 8, 1),  # register-bound: 8192 per warp, 8 warps fit, one CTA of 8 warps
        (32, 120 * 1024, 4, 1),  # shared-memory-bound
        (32, 0, 4, 16),  # thread-bound: 2048 threads / 128
        (16, 0, 1, 32),  # CTA-slot-bound
    ],
)
def test_ctas_per_sm_and_the_low_occupancy_flag(kernel_report, registers, shared, warps, expected):
    ctas = kernel_report.ctas_per_sm(registers, shared, warps)
    assert ctas == expected
    row = kernel_report.Row("w", "k", 132, warps, registers, 0, shared, ctas, 1.0, 1, 1.0, 0.0, 0.0)
    flagged = any("low occupancy" in warning for warning in row.warnings)
    assert flagged == (expected < 2)
