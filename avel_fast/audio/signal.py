"""Input checks, the FFT resampler and chunking shared by the texture and MFCC paths (`docs/audio.md#input`)."""
from __future__ import annotations

import numpy as np
import torch

COMPUTE_DTYPES = (torch.float32, torch.float64)


def as_waveform_batch(waveform, sample_rate, dtype: torch.dtype, device) -> tuple[torch.Tensor, bool]:
    """`waveform` [N, S] or [S] (tensor or array, full-scale floats) as a [N, S] tensor; True when it was 1-D.

    Raises ValueError naming the problem: wrong rank, not floating point, NaN/inf, non-positive `sample_rate`,
    a compute `dtype` other than float32/float64, an unknown or unavailable `device`.
    """
    if dtype not in COMPUTE_DTYPES:
        raise ValueError(f"dtype must be torch.float32 or torch.float64, got {dtype}")
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, (int, np.integer)) or sample_rate <= 0:
        raise ValueError(f"sample_rate must be a positive integer (Hz), got {sample_rate!r}")
    if isinstance(waveform, np.ndarray):
        if not np.issubdtype(waveform.dtype, np.floating):
            raise ValueError(f"waveform must be floating point (full scale, e.g. int16 / 32768), got {waveform.dtype}")
        waveform = torch.from_numpy(np.ascontiguousarray(waveform))
    elif not isinstance(waveform, torch.Tensor):
        raise ValueError(f"waveform must be a torch.Tensor or numpy array, got {type(waveform).__name__}")
    if not waveform.is_floating_point():
        raise ValueError(f"waveform must be floating point (full scale, e.g. int16 / 32768), got {waveform.dtype}")
    if waveform.dim() not in (1, 2):
        raise ValueError(f"waveform must be [S] or [N, S] (mono), got {waveform.dim()}-D shape {tuple(waveform.shape)}")
    if waveform.numel() and not bool(torch.isfinite(torch.stack(torch.aminmax(waveform))).all()):  # NaN propagates
        raise ValueError("waveform contains NaN or inf")
    single = waveform.dim() == 1
    device = waveform.device if device is None else resolve_device(device)
    return (waveform[None] if single else waveform).to(device=device, dtype=dtype), single


def resolve_device(device) -> torch.device:
    """`device` as a torch.device; ValueError for a name torch does not know or CUDA on a machine without it."""
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"device {device!r} is not a torch device (e.g. cpu, cuda, cuda:1)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {str(device)!r}: CUDA is not available on this machine")
    return device


def fft_resample(x: torch.Tensor, new_length: int) -> torch.Tensor:
    """`scipy.signal.resample` of real signals along the last axis (truncate / zero-pad the rfft spectrum)."""
    length = x.shape[-1]
    if new_length == length:
        return x
    spectrum = torch.fft.rfft(x, dim=-1)
    kept = min(length, new_length)
    spectrum = spectrum[..., : kept // 2 + 1]
    if kept % 2 == 0:
        edge = torch.ones(spectrum.shape[-1], dtype=x.dtype, device=x.device)
        edge[-1] = 2.0 if new_length < length else 0.5
        spectrum = spectrum * edge
    return torch.fft.irfft(spectrum, new_length, dim=-1) * (new_length / length)


def squared_magnitude(z: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """|z|² = Re² + Im² of a complex tensor (into `out` if given), without the hypot of `abs` (several times faster
    on the CPU)."""
    return torch.mul(z.real, z.real, out=out).addcmul_(z.imag, z.imag)


def default_chunk(device: torch.device, bytes_per_clip: int, cpu_chunk: int = 1) -> int:
    """Clips per batch: `cpu_chunk` on the CPU (measured fastest), else a quarter of the free CUDA memory."""
    if device.type != "cuda":
        return cpu_chunk
    free, _ = torch.cuda.mem_get_info(device)
    return max(1, int(free // 4 // max(bytes_per_clip, 1)))


def check_chunk(chunk) -> None:
    if chunk is not None and (isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 1):
        raise ValueError(f"chunk must be a positive integer or None, got {chunk!r}")
