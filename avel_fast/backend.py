"""The one place that decides which implementation a fast op runs, and the one vocabulary of backends
(docs/fast-path.md#backends).

`BACKENDS`, the implementations of one fast op:

* ``triton``: the fused Triton kernels of `avel_fast.kernels` (CUDA tensors; CPU tensors only under
  ``TRITON_INTERPRET=1``, which is how CI checks the kernels).
* ``torch``: the algebraically optimised PyTorch path (any device).
* ``reference``: the plain modules of `avel_fast.reference`.

Default: ``triton`` for CUDA tensors when Triton imports, ``torch`` otherwise. The environment variable
``AVEL_FAST_BACKEND=triton|torch|reference`` overrides it.
"""
from __future__ import annotations

import functools
import importlib.util
import os

import torch

BACKENDS = ("triton", "torch", "reference")
MODEL_BACKENDS = ("fast", "reference")
"""Which modules a model is built from (``avel-fast train --backend``): `avel_fast.models`, whose ops run the
backend `select_backend` picks, or `avel_fast.reference`."""
SAMPLER_BACKENDS = ("cpp", "python")
"""Which implementation an augmentation sampler runs (`avel_fast.augment`): the native one or its Python twin."""
ENV_VAR = "AVEL_FAST_BACKEND"


class BackendUnavailableError(RuntimeError):
    """The requested backend cannot run on this machine or for these tensors."""


@functools.lru_cache(maxsize=None)
def triton_importable() -> bool:
    """True when the `triton` package is installed (checked without importing it)."""
    return importlib.util.find_spec("triton") is not None


def triton_interpreted() -> bool:
    """True when Triton kernels run through Triton's CPU interpreter (``TRITON_INTERPRET=1``)."""
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


def requested_backend() -> str | None:
    """The backend forced by ``AVEL_FAST_BACKEND``, or None for automatic choice."""
    value = os.environ.get(ENV_VAR, "").strip().lower()
    if value in ("", "auto"):
        return None
    if value not in BACKENDS:
        raise BackendUnavailableError(f"{ENV_VAR}={value!r} is not one of {', '.join(BACKENDS)} (or 'auto')")
    return value


def select_backend(tensor: torch.Tensor) -> str:
    """The backend that runs an op on `tensor`: the override if set (and usable), else automatic."""
    forced = requested_backend()
    if forced == "triton":
        if not triton_importable():
            raise BackendUnavailableError(f"{ENV_VAR}=triton but the 'triton' package is not installed")
        if not tensor.is_cuda and not triton_interpreted():
            raise BackendUnavailableError(
                f"{ENV_VAR}=triton needs CUDA tensors (got {tensor.device}); set TRITON_INTERPRET=1 "
                "before importing triton to run the kernels on CPU through Triton's interpreter"
            )
        return "triton"
    if forced is not None:
        return forced
    if tensor.is_cuda and triton_importable():
        return "triton"
    return "torch"


def usable_backends() -> dict[str, str]:
    """Each backend with a short reason it is or is not usable here (for `avel-fast env`)."""
    cuda = torch.cuda.is_available()
    if not triton_importable():
        triton_status = "unavailable: triton is not installed"
    elif cuda:
        triton_status = "usable on CUDA"
    elif triton_interpreted():
        triton_status = "usable on CPU through TRITON_INTERPRET=1 (slow; for checking)"
    else:
        triton_status = "unavailable: no CUDA device (TRITON_INTERPRET=1 runs it on CPU)"
    return {"triton": triton_status, "torch": "usable", "reference": "usable"}
