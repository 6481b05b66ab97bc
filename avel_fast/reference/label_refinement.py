"""Temporal label refinement for weakly supervised AVEL (docs/weak.md#label-refinement).

Equations are those of "Temporal Label-Refinement for Weakly-Supervised Audio-Visual Event Localization" (TLR
below), §4.2-4.3, eqs. 9-18.

The method wraps a weakly supervised base model (the AVE baseline or PSP, `WeakBase`) in three steps:

1. train it on video labels, with the auxiliary objective ``L_A`` for "+A" (`step1_loss`, `aux_loss`);
2. with that model Φ0, label every window of ``window`` segments (stride ``stride``) of every training video:
   splice the window into a background-only second video (eq. 9) and keep the video's classes that Φ0 still
   detects on the synthetic video (eqs. 10-11, `refine_labels`);
3. re-train from scratch with ``L_MIL + L_LR`` on those window labels (eqs. 12-13, `window_loss`).

Synthetic videos are built in one batch by `gather_segments` (`splice_indices`), never by a loop over windows.
Everything a base model computes before its temporal layers is per segment, so splicing its per-segment
features (`WeakBase.segment_features`) instead of the raw 7x7 maps gives the same scores while that costly part
runs on 2 videos per example instead of 1 + T1 in Step 1, and on about 1 instead of T1 in Step 2, where the
second videos come from a small pool (docs/weak.md#label-refinement).
"""
from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from avel_fast.constants import BACKGROUND, NUM_CLASSES, NUM_EVENT_CLASSES, NUM_SEGMENTS
from avel_fast.metrics import segment_metrics
from avel_fast.reference.ave import soft_margin_on_probs
from avel_fast.reference.gather import gather_segments
from avel_fast.reference.psp import bce_on_probs

WINDOW = 4
STRIDE = 2
TAU = 0.05
"""The paper's window size N, stride s and detection threshold τ (TLR §5, Tab. 4 and 7)."""
CHUNK_VIDEOS = 256
"""Videos per batched forward of `refine_labels` (T1 synthetic videos each)."""


def max_pool(scores: torch.Tensor, dim: int) -> torch.Tensor:
    """The AVE baseline's MIL pooling: max over `dim` (``max().values``: the gradient goes to the first maximum)."""
    return scores.max(dim=dim).values


def mean_pool(scores: torch.Tensor, dim: int) -> torch.Tensor:
    """PSP's MIL pooling: mean over `dim`."""
    return scores.mean(dim=dim)


@dataclass(frozen=True)
class WeakBase:
    """A weakly supervised base model as label refinement sees it (docs/weak.md#label-refinement).

    `model(audio, visual)` gives raw segment scores ``[M, T, 29]``; `pool(scores, dim)` is its MIL pooling over
    time and `loss(prob, target)` its weak loss g on video probabilities. The video prediction is
    ``Φ(x) = softmax(pool(x))``. With `splice_features` the model must also have ``segment_features(audio,
    visual)``, a tuple of per-segment tensors ``[M, T, ...]`` (everything before its temporal layers), and
    ``from_segment_features(*features)``, the scores from them; synthetic videos are then spliced from those
    features, otherwise from the raw inputs.
    """

    model: nn.Module
    pool: Callable[[torch.Tensor, int], torch.Tensor]
    loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    splice_features: bool = True

    def __post_init__(self) -> None:
        if self.splice_features:
            missing = [name for name in ("segment_features", "from_segment_features") if not hasattr(self.model, name)]
            if missing:
                raise ValueError(
                    f"model {type(self.model).__name__} has no {' or '.join(missing)}: "
                    "use splice_features=False to splice the raw inputs"
                )

    @classmethod
    def ave(cls, model: nn.Module, *, splice_features: bool = True) -> WeakBase:
        """The AVE baseline: max pooling, `soft_margin_on_probs` on the video probabilities."""
        return cls(model, max_pool, soft_margin_on_probs, splice_features)

    @classmethod
    def psp(cls, model: nn.Module, *, splice_features: bool = True) -> WeakBase:
        """Weak PSP: mean pooling of the weighted scores, `bce_on_probs` on the video probabilities."""
        return cls(model, mean_pool, bce_on_probs, splice_features)

    def segment_features(self, audio: torch.Tensor, visual: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """What synthetic videos are spliced from: the model's per-segment features, or the raw inputs."""
        if self.splice_features:
            return tuple(self.model.segment_features(audio, visual))
        return audio, visual

    def scores(self, features: tuple[torch.Tensor, ...]) -> torch.Tensor:
        """Raw segment scores ``[M, T, 29]`` from `segment_features`' output."""
        return self.model.from_segment_features(*features) if self.splice_features else self.model(*features)

    def video_prob(self, scores: torch.Tensor) -> torch.Tensor:
        """``Φ = softmax(Pool_t x_t)``, ``[..., 29]`` from scores ``[..., T, 29]``."""
        return self.pool(scores, -2).softmax(dim=-1)

    def mil_loss(self, scores: torch.Tensor, video_labels: torch.Tensor) -> torch.Tensor:
        """``L_MIL = g(Φ(x), Y)``, mean over the videos."""
        return self.loss(self.video_prob(scores), video_labels.to(scores.dtype))


def _check_count(name: str, value, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")


def window_starts(num_segments: int, window: int, stride: int) -> torch.Tensor:
    """0-based starts ``t1 = 0, s, 2s, ..., T - N`` (int64 ``[T1]``, ``T1 = (T - N)/s + 1``) of the windows of
    eqs. 12-13; needs ``1 <= N <= T`` and ``s | (T - N)``."""
    _check_count("num_segments", num_segments, 1)
    _check_count("window", window, 1)
    _check_count("stride", stride, 1)
    if window > num_segments:
        raise ValueError(f"window={window} is longer than the video (num_segments={num_segments})")
    if (num_segments - window) % stride:
        raise ValueError(
            f"stride={stride} must divide num_segments - window = {num_segments - window} (TLR §4.2: s | (T - N))"
        )
    return torch.arange(0, num_segments - window + 1, stride)


def window_mask(num_segments: int, window: int, stride: int) -> torch.Tensor:
    """Bool ``[T1, T]``: ``mask[w, t]`` iff segment t lies in window w."""
    starts = window_starts(num_segments, window, stride)
    offsets = torch.arange(num_segments) - starts[:, None]
    return (offsets >= 0) & (offsets < window)


def check_splice_window(num_segments: int, window: int, stride: int, *, auxiliary: bool = False) -> None:
    """Refuse windows that cannot make synthetic videos: ``1 <= N < T``, ``s | (T - N)``, and for the auxiliary
    objective ``N < (T + 1)/2``, so that the complements of the windows cover the second video (eq. 14)."""
    window_starts(num_segments, window, stride)
    if window == num_segments:
        raise ValueError(
            f"window={window} must be shorter than the video (num_segments={num_segments}) to splice a second video"
        )
    if auxiliary and 2 * window >= num_segments + 1:
        raise ValueError(
            f"window={window}: the auxiliary objective needs window < (num_segments + 1)/2 = "
            f"{(num_segments + 1) / 2:g} (TLR eq. 14)"
        )


def _as_rows(values, name: str) -> torch.Tensor:
    rows = torch.as_tensor(values)
    if rows.dim() != 1 or rows.dtype.is_floating_point or rows.dtype == torch.bool:
        raise ValueError(f"{name} must be a 1-d integer tensor of video indices, got {rows.dtype} {tuple(rows.shape)}")
    return rows.to(torch.int64)


def splice_indices(first, second, num_segments: int, window: int, stride: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices of the synthetic videos of eq. 9 for `gather_segments`: ``(video_idx, segment_idx)``, int64
    ``[B*T1, T]``. Row ``b*T1 + w`` is video ``first[b]`` on window w and video ``second[b]`` elsewhere, every
    segment at its own position (both modalities take the same indices)."""
    first, second = _as_rows(first, "first"), _as_rows(second, "second")
    if first.shape != second.shape:
        raise ValueError(f"first and second must have the same length, got {len(first)} and {len(second)}")
    check_splice_window(num_segments, window, stride)
    inside = window_mask(num_segments, window, stride).to(first.device)
    video_idx = torch.where(inside, first[:, None, None], second[:, None, None]).flatten(0, 1)
    segment_idx = torch.arange(num_segments, device=first.device).expand_as(video_idx)
    return video_idx, segment_idx


def splice(features: tuple[torch.Tensor, ...], first, second, window: int, stride: int) -> tuple[torch.Tensor, ...]:
    """The synthetic videos of eq. 9 of each pair ``(first[b], second[b])``: every tensor of `features`
    (``[V, T, ...]``, rows indexed by `first`/`second`) gathered to ``[B*T1, T, ...]`` by `splice_indices`."""
    video_idx, segment_idx = splice_indices(first, second, features[0].shape[1], window, stride)
    return tuple(gather_segments(feature, video_idx, segment_idx) for feature in features)


def _check_video_labels(video_labels: torch.Tensor, name: str = "video_labels") -> None:
    if video_labels.dim() != 2 or video_labels.shape[1] != NUM_CLASSES:
        raise ValueError(f"{name} must have shape [V, {NUM_CLASSES}], got {tuple(video_labels.shape)}")


def label_vectors(events: torch.Tensor) -> torch.Tensor:
    """Label vectors ``[..., 29]`` (float 0/1) from the event classes present, bool ``[..., 28]``: the background
    column is set iff no event class is (TLR §3, the definition of ``Y(C+1)``)."""
    return torch.cat((events, ~events.any(dim=-1, keepdim=True)), dim=-1).float()


def union_labels(video_labels: torch.Tensor, other_labels: torch.Tensor) -> torch.Tensor:
    """``Y^(ij)``, the labels of ``L(i) ∪ L(j)`` (eq. 18): the union of the event classes, background iff none."""
    _check_video_labels(video_labels)
    _check_video_labels(other_labels, "other_labels")
    events = (video_labels[:, :BACKGROUND] > 0) | (other_labels[:, :BACKGROUND] > 0)
    return label_vectors(events).to(video_labels.device)


def aux_loss(
    base: WeakBase,
    features: tuple[torch.Tensor, ...],
    first,
    second,
    video_labels: torch.Tensor,
    window: int = WINDOW,
    stride: int = STRIDE,
) -> torch.Tensor:
    """The auxiliary objective ``L_A`` (eqs. 14-18), mean over the videos `first`.

    `features` are `base.segment_features` of V videos (``[V, T, ...]``) with their labels `video_labels`
    ``[V, 29]``; video ``first[b]`` is spliced with ``second[b]`` on all T1 windows (one second video per
    video, as eq. 14 needs). The scores of each synthetic video are pooled within it (eq. 15), then across its
    T1 windows (eq. 16), and ``softmax`` of that (eq. 17) is scored by g against ``Y^(ij)`` (eq. 18).
    """
    check_splice_window(features[0].shape[1], window, stride, auxiliary=True)
    _check_video_labels(video_labels)
    first, second = _as_rows(first, "first"), _as_rows(second, "second")
    num_windows = len(window_starts(features[0].shape[1], window, stride))
    scores = base.scores(splice(features, first, second, window, stride)).unflatten(0, (len(first), num_windows))
    pooled = base.pool(base.pool(scores, 2), 1)
    target = union_labels(video_labels[first.to(video_labels.device)], video_labels[second.to(video_labels.device)])
    return base.loss(pooled.softmax(dim=-1), target.to(pooled.dtype))


def step1_loss(
    base: WeakBase,
    audio: torch.Tensor,
    visual: torch.Tensor,
    video_labels: torch.Tensor,
    second: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None,
    *,
    window: int = WINDOW,
    stride: int = STRIDE,
) -> torch.Tensor:
    """The Step-1 loss of a batch: ``L_MIL``, plus ``L_A`` when `second` = (audio, visual, video labels) of one
    second video per video is given (TLR §4.3: "added to L_MIL").

    The per-segment features of the batch and of its second videos are computed once, in one call; ``L_MIL``
    scores the batch's own features and ``L_A`` splices both.
    """
    _check_video_labels(video_labels)
    if second is None:
        return base.mil_loss(base.scores(base.segment_features(audio, visual)), video_labels)
    second_audio, second_visual, second_labels = second
    if len(second_audio) != len(audio) or len(second_visual) != len(visual) or len(second_labels) != len(audio):
        raise ValueError(f"second must hold one video per video of the batch ({len(audio)})")
    batch = len(audio)
    features = base.segment_features(torch.cat((audio, second_audio)), torch.cat((visual, second_visual)))
    own = tuple(feature[:batch] for feature in features)
    rows = torch.arange(batch, device=audio.device)
    labels = torch.cat((video_labels, second_labels.to(video_labels)))
    return base.mil_loss(base.scores(own), video_labels) + aux_loss(
        base, features, rows, rows + batch, labels, window, stride
    )


def draw_second_videos(num_videos: int, pool_rows: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """One second video per video, uniform with replacement from `pool_rows` (the background-only videos, TLR
    §5): int64 ``[num_videos]`` on the device of `pool_rows`."""
    pool_rows = _as_rows(pool_rows, "pool_rows")
    if len(pool_rows) == 0:
        raise ValueError("pool_rows is empty: label refinement needs at least one background-only video")
    picks = torch.randint(len(pool_rows), (num_videos,), generator=generator)
    return pool_rows[picks.to(pool_rows.device)]


def threshold_window_labels(video_labels: torch.Tensor, window_probs: torch.Tensor, tau: float = TAU) -> torch.Tensor:
    """Window labels ``[V, T1, 29]`` from Φ0's probabilities on the synthetic videos ``[V, T1, 29]``: the event
    classes c with ``Y(c) = 1`` and ``P(c) >= τ`` (eqs. 10-11; a conjunction, so τ = 0 admits only the video's
    classes), background iff none."""
    if not tau >= 0:
        raise ValueError(f"tau must be a number >= 0, got {tau!r}")
    _check_video_labels(video_labels)
    if window_probs.dim() != 3 or window_probs.shape[0] != len(video_labels) or window_probs.shape[2] != NUM_CLASSES:
        raise ValueError(
            f"window_probs must have shape [{len(video_labels)}, T1, {NUM_CLASSES}], got {tuple(window_probs.shape)}"
        )
    present = video_labels[:, None, :BACKGROUND].to(window_probs.device) > 0
    return label_vectors(present & (window_probs[..., :BACKGROUND] >= tau))


@contextlib.contextmanager
def _eval_mode(model: nn.Module) -> Iterator[None]:
    training = model.training
    model.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        model.train(training)


def refine_labels(
    base: WeakBase,
    audio: torch.Tensor,
    visual: torch.Tensor,
    video_labels: torch.Tensor,
    second_videos: torch.Tensor,
    *,
    window: int = WINDOW,
    stride: int = STRIDE,
    tau: float = TAU,
    chunk_videos: int = CHUNK_VIDEOS,
    compute_dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Step 2 (eqs. 9-11): the window labels ``[V, T1, 29]`` (float 0/1) of all V videos.

    Video i is spliced with the video ``second_videos[i]`` (a row of the same `audio` / `visual`, drawn once from
    the background-only videos by `draw_second_videos`) on each of its T1 windows, Φ0 = `base` in eval mode
    and without gradients predicts each synthetic video, and `threshold_window_labels` keeps the video's
    classes detected with probability ``>= tau``. The per-segment features of the second videos (a few distinct
    background-only videos) are computed once; then videos go `chunk_videos` at a time through their
    per-segment features, one gather and one batched forward of the T1 synthetic videos each. Features (e.g.
    float16 maps) are cast to `compute_dtype` per chunk.
    """
    _check_video_labels(video_labels)
    check_splice_window(audio.shape[1], window, stride)
    if not tau >= 0:
        raise ValueError(f"tau must be a number >= 0, got {tau!r}")
    _check_count("chunk_videos", chunk_videos, 1)
    num_videos = len(audio)
    if len(visual) != num_videos or len(video_labels) != num_videos:
        raise ValueError(
            f"audio, visual and video_labels must hold the same videos, got {num_videos}, {len(visual)} and "
            f"{len(video_labels)}"
        )
    second_videos = _as_rows(second_videos, "second_videos").to(audio.device)
    if second_videos.shape != (num_videos,):
        raise ValueError(f"second_videos must have shape [{num_videos}], got {tuple(second_videos.shape)}")
    num_windows = len(window_starts(audio.shape[1], window, stride))
    if num_videos == 0:
        return torch.zeros(0, num_windows, NUM_CLASSES, device=audio.device)
    if not 0 <= int(second_videos.min()) <= int(second_videos.max()) < num_videos:
        raise ValueError(f"second_videos must be video indices in 0..{num_videos - 1}")
    pool, pool_position = torch.unique(second_videos, return_inverse=True)

    def features_of(rows: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return base.segment_features(
            audio.index_select(0, rows).to(compute_dtype), visual.index_select(0, rows).to(compute_dtype)
        )

    labels = []
    with _eval_mode(base.model):
        pool_chunks = [features_of(rows) for rows in pool.split(chunk_videos)]
        pool_features = tuple(torch.cat(parts) for parts in zip(*pool_chunks))
        for rows in torch.arange(num_videos, device=audio.device).split(chunk_videos):
            features = tuple(torch.cat(parts) for parts in zip(features_of(rows), pool_features))
            own = torch.arange(len(rows), device=audio.device)
            scores = base.scores(splice(features, own, len(rows) + pool_position[rows], window, stride))
            probs = base.video_prob(scores).unflatten(0, (len(rows), num_windows))
            labels.append(threshold_window_labels(video_labels[rows.to(video_labels.device)], probs, tau))
    return torch.cat(labels)


def window_loss(
    base: WeakBase, scores: torch.Tensor, window_labels: torch.Tensor, window: int = WINDOW, stride: int = STRIDE
) -> torch.Tensor:
    """``L_LR`` (eqs. 12-13): the base pooling over each window of the original videos' scores ``[B, T, 29]``
    (``x.unfold(1, N, s)``), ``softmax``, g against `window_labels` ``[B, T1, 29]``; mean over windows and
    videos. With ``N = T`` and ``s = 1`` it is ``L_MIL``."""
    if scores.dim() != 3:
        raise ValueError(f"scores must have shape [B, T, {NUM_CLASSES}], got {tuple(scores.shape)}")
    num_windows = len(window_starts(scores.shape[1], window, stride))
    if window_labels.shape != (scores.shape[0], num_windows, scores.shape[2]):
        raise ValueError(
            f"window_labels must have shape [{scores.shape[0]}, {num_windows}, {scores.shape[2]}] for "
            f"window={window}, stride={stride}, got {tuple(window_labels.shape)}"
        )
    window_probs = base.pool(scores.unfold(1, window, stride), -1).softmax(dim=-1)  # [B, T1, 29]
    return base.loss(window_probs.flatten(0, 1), window_labels.flatten(0, 1).to(scores.dtype))


def dummy_window_labels(
    video_labels: torch.Tensor, num_segments: int = NUM_SEGMENTS, window: int = WINDOW, stride: int = STRIDE
) -> torch.Tensor:
    """LR_dummy (TLR §5, Tab. 3): every window labelled with its video's labels, ``[V, T1, 29]``."""
    _check_video_labels(video_labels)
    num_windows = len(window_starts(num_segments, window, stride))
    return video_labels.float()[:, None].expand(-1, num_windows, -1).clone()


def oracle_window_labels(segment_labels: torch.Tensor, window: int = WINDOW, stride: int = STRIDE) -> torch.Tensor:
    """Ground-truth window labels ``[V, T1, 29]`` from segment labels ``[V, T]``: the event classes of the
    window's segments, background iff all its segments are background (docs/weak.md#label-refinement)."""
    segment_labels = torch.as_tensor(segment_labels)
    if segment_labels.dim() != 2 or segment_labels.dtype != torch.int64:
        raise ValueError(
            f"segment_labels must be int64 [V, T], got {segment_labels.dtype} {tuple(segment_labels.shape)}"
        )
    window_starts(segment_labels.shape[1], window, stride)
    windows = segment_labels.unfold(1, window, stride)  # [V, T1, N]
    events = F.one_hot(windows, NUM_CLASSES).amax(dim=2)[..., :BACKGROUND] > 0
    return label_vectors(events)


def _window_classes(window_labels: torch.Tensor, name: str) -> torch.Tensor:
    """The one class of each window label vector (AVE windows hold one event class or background)."""
    if window_labels.dim() != 3 or window_labels.shape[2] != NUM_CLASSES:
        raise ValueError(f"{name} must have shape [V, T1, {NUM_CLASSES}], got {tuple(window_labels.shape)}")
    if not bool(((window_labels > 0).sum(dim=-1) == 1).all()):
        raise ValueError(f"{name} must set exactly one class per window (an event class or the background)")
    return window_labels.argmax(dim=-1)


def window_label_quality(
    pred_window_labels: torch.Tensor, gt_segments: torch.Tensor, window: int = WINDOW, stride: int = STRIDE
) -> dict:
    """How well window labels match the ground truth `oracle_window_labels(gt_segments)` (used to calibrate τ on
    validation videos, TLR §5): ``window_accuracy``, event-window ``event_precision`` (correct event
    windows / predicted event windows), ``event_recall`` (/ true event windows), ``event_f1``, the same three for
    background windows, and ``num_windows``. Undefined ratios are ``nan`` as in `avel_fast.metrics`."""
    gt_segments = torch.as_tensor(gt_segments)
    truth = _window_classes(oracle_window_labels(gt_segments, window, stride), "gt window labels")
    pred = _window_classes(pred_window_labels, "pred_window_labels")
    if pred.shape != truth.shape:
        raise ValueError(
            f"pred_window_labels has {tuple(pred.shape)} windows but gt_segments give {tuple(truth.shape)}"
        )
    metrics = segment_metrics(pred.cpu(), truth)
    return {
        "window_accuracy": metrics["accuracy"],
        "event_precision": metrics["ave_precision"],
        "event_recall": metrics["ave_recall"],
        "event_f1": metrics["ave_f1"],
        "background_precision": metrics["non_ave_precision"],
        "background_recall": metrics["non_ave_recall"],
        "background_f1": metrics["non_ave_f1"],
        "num_windows": metrics["num_segments"],
    }


def all_background_event_videos(window_labels: torch.Tensor, video_labels: torch.Tensor) -> torch.Tensor:
    """Bool ``[V]``: the event videos (an event class in their video label ``[V, 29]``) whose every window
    label ``[V, T1, 29]`` came out background, the videos on which ``L_LR`` teaches background on a whole event
    (docs/weak.md#label-quality)."""
    _check_video_labels(video_labels)
    if window_labels.dim() != 3 or window_labels.shape[0] != len(video_labels):
        raise ValueError(
            f"window_labels must have shape [{len(video_labels)}, T1, {NUM_CLASSES}], got {tuple(window_labels.shape)}"
        )
    event_video = (video_labels[:, :BACKGROUND] > 0).any(dim=1).to(window_labels.device)
    return event_video & (window_labels[..., :BACKGROUND] <= 0).all(dim=(1, 2))


def keep_video_label(window_labels: torch.Tensor, video_labels: torch.Tensor) -> torch.Tensor:
    """``--keep-video-label``, a deviation from TLR eqs. 10-11 (docs/weak.md#label-quality): the window labels
    ``[V, T1, 29]`` with every window of an `all_background_event_videos` video labelled with its video label
    (its LR_dummy labels); the other videos' windows unchanged."""
    restore = all_background_event_videos(window_labels, video_labels)
    dummy = video_labels.to(window_labels)[:, None].expand_as(window_labels)
    return torch.where(restore[:, None, None], dummy, window_labels)


def window_label_comparison(
    window_labels: torch.Tensor, video_labels: torch.Tensor, gt_segments, window: int = WINDOW, stride: int = STRIDE
) -> dict:
    """`window_label_quality` of three label sets of the same videos (docs/weak.md#label-quality): ``refined``
    (`window_labels` ``[V, T1, 29]``), ``trivial`` (`dummy_window_labels` of `video_labels`, every window the
    video label) and ``ground_truth`` (`oracle_window_labels` of `gt_segments` ``[V, T]``, a perfect score by
    construction: the row ``--refine oracle`` trains on)."""
    gt_segments = torch.as_tensor(gt_segments)
    sets = {
        "refined": window_labels,
        "trivial": dummy_window_labels(video_labels.cpu(), gt_segments.shape[1], window, stride),
        "ground_truth": oracle_window_labels(gt_segments, window, stride),
    }
    return {name: window_label_quality(labels, gt_segments, window, stride) for name, labels in sets.items()}


def pseudo_labels(scores: torch.Tensor, video_labels: torch.Tensor) -> torch.Tensor:
    """AVE+PL targets (TLR Tab. 3): ``argmax_c x_t`` of the plain base model's scores ``[V, T, 29]``,
    unfiltered; videos whose label is background only keep all-background segments. int64 ``[V, T]``."""
    _check_video_labels(video_labels)
    if scores.dim() != 3 or scores.shape[0] != len(video_labels) or scores.shape[2] != NUM_CLASSES:
        raise ValueError(f"scores must have shape [{len(video_labels)}, T, {NUM_CLASSES}], got {tuple(scores.shape)}")
    labels = scores.argmax(dim=-1)
    background_only = ~(video_labels[:, :BACKGROUND] > 0).any(dim=1).to(labels.device)
    return labels.masked_fill(background_only[:, None], BACKGROUND)


def repeat_predictions(
    scores: torch.Tensor, pool: Callable[[torch.Tensor, int], torch.Tensor] = max_pool
) -> torch.Tensor:
    """AVE-repeat (TLR Tab. 1): the event class with the highest video probability ``softmax(Pool_t x_t)``
    (0..27, the background excluded) on every segment. int64 ``[V, T]`` from scores ``[V, T, 29]``."""
    if scores.dim() != 3 or scores.shape[2] != NUM_CLASSES:
        raise ValueError(f"scores must have shape [V, T, {NUM_CLASSES}], got {tuple(scores.shape)}")
    event = pool(scores, 1).softmax(dim=-1)[:, :NUM_EVENT_CLASSES].argmax(dim=-1)
    return event[:, None].expand(-1, scores.shape[1]).clone()
