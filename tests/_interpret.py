"""Run Triton checks through Triton's CPU interpreter in a fresh Python process (docs/fast-path.md#env).

``TRITON_INTERPRET=1`` only takes effect if it is set before `triton` is imported, so each check runs in a
subprocess with ``TRITON_INTERPRET=1`` and ``AVEL_FAST_BACKEND=triton``: there `avel_fast.nn` dispatches CPU
tensors to the Triton kernels. A check is a plain function of a test module (not collected by pytest because
its name does not start with ``test``); it raises (an assert) when the kernels are wrong.
"""
from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

TESTS_DIR = Path(__file__).resolve().parent


def run_interpreted(module: str, *checks: str, timeout: float = 600.0) -> None:
    """Call ``module.check()`` for each name in `checks`, in order, in one interpreted subprocess.

    Skips when Triton is not installed; fails the calling test with the subprocess output when a check raises.
    """
    if importlib.util.find_spec("triton") is None:
        pytest.skip("triton is not installed")
    code = f"import {module}\n" + "".join(f"{module}.{check}()\n" for check in checks)
    env = dict(os.environ, TRITON_INTERPRET="1", AVEL_FAST_BACKEND="triton")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(TESTS_DIR), env.get("PYTHONPATH")]))
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=TESTS_DIR, capture_output=True, text=True, timeout=timeout
    )
    if result.returncode != 0:
        pytest.fail(
            f"interpreted Triton checks {module}.{{{', '.join(checks)}}} failed:\n{result.stdout}{result.stderr}",
            pytrace=False,
        )
