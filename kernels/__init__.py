"""Triton kernels of the fast path (docs/fast-path.md#kernels), one module per op: kernels, launch functions,
autograd.Function.

Import-light on purpose: importing `avel_fast.kernels` imports neither Triton nor CUDA; each op module
(`avel_fast.kernels.gated_fusion`, `.lss`, `.temporal_conv`, `.rgct`) imports Triton itself and is imported
lazily by the `avel_fast.nn` module that dispatches to it.
"""
