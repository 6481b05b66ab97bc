"""Record the ops that would synchronise the host with a CUDA device (docs/fast-path.md), on any
device: a `TorchDispatchMode` sees every aten op, so a CPU run shows what a CUDA run would wait for."""
from __future__ import annotations

import sys
from pathlib import Path

import torch
from torch.utils._python_dispatch import TorchDispatchMode

SYNCING_OPS = {
    "aten::_local_scalar_dense": "a value read back to the host (.item(), .tolist(), bool(), int(), float())",
    "aten::nonzero": "a result whose size depends on the values",
    "aten::masked_select": "a result whose size depends on the values",
    "aten::unique_dim": "a result whose size depends on the values",
    "aten::_unique2": "a result whose size depends on the values",
    "aten::unique_consecutive": "a result whose size depends on the values",
    "aten::is_nonzero": "a value read back to the host",
    "aten::equal": "a value read back to the host",
    "aten::lift_fresh": "a fresh tensor from Python data (a host-to-device copy)",
    "aten::lift_fresh_copy": "a fresh tensor from Python data (a host-to-device copy)",
}


TORCH_DIR = str(Path(torch.__file__).parent)


def _caller() -> str:
    """``file:line`` of the innermost frame outside torch (and this module): who asked for the op."""
    frame = sys._getframe(2)
    while frame is not None and (frame.f_code.co_filename.startswith(TORCH_DIR) or frame.f_code.co_filename == __file__):
        frame = frame.f_back
    return "?" if frame is None else f"{frame.f_code.co_filename}:{frame.f_lineno}"


class SyncProbe(TorchDispatchMode):
    """Inside ``with SyncProbe() as probe:``, ``probe.records`` lists ``(op, why, caller)`` for every op of
    `SYNCING_OPS`, plus every boolean-mask indexing (its result size depends on the values)."""

    def __init__(self) -> None:
        super().__init__()
        self.records: list[tuple[str, str, str]] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = func._schema.name
        if name in SYNCING_OPS:
            self.records.append((name, SYNCING_OPS[name], _caller()))
        elif name in ("aten::index", "aten::index_put", "aten::index_put_") and any(
            isinstance(index, torch.Tensor) and index.dtype == torch.bool for index in (args[1] or ())
        ):
            self.records.append((name, "boolean-mask indexing (a result whose size depends on the values)", _caller()))
        return func(*args, **kwargs)
