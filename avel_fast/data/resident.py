"""Resident dataset (docs/data.md#resident): a whole split on the training device, batches drawn with `index_select`.

No per-sample Python and no DataLoader workers: an epoch is one seeded permutation and one `index_select` per
tensor and batch. Models that start with global average pooling read `pooled_visual`, computed once and cached;
the 7x7 maps may be kept in float16 (`visual_dtype`) and are cast to `compute_dtype` per batch. To drop the
maps altogether, build it from `data.pooled()`.
"""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch

from avel_fast._rng import derive_seed
from avel_fast.data.dataset import AVEData, pool_visual

POOL_CHUNK_VIDEOS = 256


@dataclass(frozen=True)
class Batch:
    """One batch on the device: features in the compute dtype, labels, and the row indices it holds."""

    audio: torch.Tensor  # [B, T, D]
    visual: torch.Tensor  # [B, T, 7, 7, 512] or pooled [B, T, 512]
    labels: torch.Tensor  # int64 [B, T]
    video_labels: torch.Tensor  # [B, 29]
    index: torch.Tensor  # int64 [B], rows of the dataset


class SeededBatches:
    """The batch arithmetic and seeded epoch order of a dataset resident on `self.device` (any row type)."""

    device: torch.device

    def __len__(self) -> int:
        raise NotImplementedError

    def num_batches(self, batch_size: int, *, drop_last: bool = False) -> int:
        if batch_size < 1:
            raise ValueError(f"batch_size={batch_size}: expected >= 1")
        return len(self) // batch_size if drop_last else -(-len(self) // batch_size)

    def order(
        self, *, shuffle: bool = True, seed: int = 0, epoch: int = 0, device: str | torch.device | None = None
    ) -> torch.Tensor:
        """The epoch's row order on `device` (default: the dataset's): a permutation seeded by
        ``derive_seed(seed, epoch)``, drawn on the host."""
        device = self.device if device is None else device
        if not shuffle:
            return torch.arange(len(self), device=device)
        generator = torch.Generator().manual_seed(derive_seed(seed, epoch))
        return torch.randperm(len(self), generator=generator).to(device)

    def batch_indices(
        self, batch_size: int, *, shuffle: bool = True, seed: int = 0, epoch: int = 0, drop_last: bool = False
    ) -> tuple[torch.Tensor, ...]:
        """The row indices of each batch of one epoch."""
        order = self.order(shuffle=shuffle, seed=seed, epoch=epoch)
        return order[: self.num_batches(batch_size, drop_last=drop_last) * batch_size].split(batch_size)

    def rows(self, index: torch.Tensor):
        """The rows `index` (int64 on the device) as one batch of the dataset's row type."""
        raise NotImplementedError

    def batches(
        self, batch_size: int, *, shuffle: bool = True, seed: int = 0, epoch: int = 0, drop_last: bool = False
    ) -> Iterator:
        """The batches of one epoch (`rows` of each `batch_indices`)."""
        for index in self.batch_indices(batch_size, shuffle=shuffle, seed=seed, epoch=epoch, drop_last=drop_last):
            yield self.rows(index)


class ResidentDataset(SeededBatches):
    """All rows of `data` on `device`; `visual_dtype` is the storage dtype of the visual maps (default: as given)."""

    def __init__(
        self,
        data: AVEData,
        *,
        device: str | torch.device = "cpu",
        visual_dtype: torch.dtype | None = None,
        compute_dtype: torch.dtype = torch.float32,
    ) -> None:
        self.device = torch.device(device)
        self.compute_dtype = compute_dtype
        self.audio = data.audio.to(self.device, compute_dtype)
        self.visual = data.visual.to(self.device, visual_dtype or data.visual.dtype)
        self.labels = data.labels.to(self.device)
        self.video_labels = data.video_labels.to(self.device, compute_dtype)
        self._pooled: torch.Tensor | None = None

    def __len__(self) -> int:
        return self.audio.shape[0]

    @property
    def visual_pooled(self) -> bool:
        return self.visual.dim() == 3

    @property
    def pooled_visual(self) -> torch.Tensor:
        """[N, T, 512] global average of the 7x7 maps in the compute dtype, computed once per chunk and cached."""
        if self._pooled is None:
            if self.visual_pooled:
                self._pooled = self.visual.to(self.compute_dtype)
            else:
                chunks = [pool_visual(chunk) for chunk in self.visual.split(POOL_CHUNK_VIDEOS)]
                self._pooled = torch.cat(chunks).to(self.compute_dtype)
        return self._pooled

    def rows(self, index: torch.Tensor, *, pooled: bool = False) -> Batch:
        """The rows `index` (int64 on the device) as a batch; `pooled` as in `batches`."""
        visual = self.pooled_visual if pooled else self.visual
        return Batch(
            audio=self.audio.index_select(0, index),
            visual=visual.index_select(0, index).to(self.compute_dtype),
            labels=self.labels.index_select(0, index),
            video_labels=self.video_labels.index_select(0, index),
            index=index,
        )

    def batches(
        self,
        batch_size: int,
        *,
        shuffle: bool = True,
        seed: int = 0,
        epoch: int = 0,
        drop_last: bool = False,
        pooled: bool = False,
    ) -> Iterator[Batch]:
        """The batches of one epoch; `pooled=True` gives the cached pooled visual features instead of the maps."""
        for index in self.batch_indices(batch_size, shuffle=shuffle, seed=seed, epoch=epoch, drop_last=drop_last):
            yield self.rows(index, pooled=pooled)
