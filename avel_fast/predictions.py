"""Saved segment predictions and the prediction protocols (docs/metrics.md#saved-predictions).

Every evaluation writes ``<split>_predictions.h5`` into the run directory, so any metric can be recomputed
outside the package. For the V videos of the split it holds

* ``video_index`` int64 ``[V]``: the videos' indices into the data directory (rows of its label files);
* ``pred`` int64 ``[V, T]``: the class of every segment under the protocol in use (h5 attribute ``protocol``);
* ``scores`` float32 ``[V, T, 29]``: the model's raw segment scores, before any softmax;
* h5 attribute ``labels``: the label set the evaluation scored against (``data``: the run's own labels, else the
  label file; docs/metrics.md#label-sets).

Protocols (docs/metrics.md#protocols):

* ``argmax``: each segment takes the class of its highest score, over all 29 classes;
* ``broadcast`` (weakly supervised runs): the video's event class is given to every segment whose event
  probability is at least a threshold, background to the others (`broadcast_predictions`).
"""
from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import torch

from avel_fast.atomic import atomic_write
from avel_fast.constants import BACKGROUND, NUM_CLASSES
from avel_fast.data import AVEFormatError, read_annotations, synthetic_labels
from avel_fast.data.files import ANNOTATIONS_FILE, LABELS_FILE, load_segment_labels
from avel_fast.metrics import segment_metrics
from avel_fast.reference.mil import mil_pool

PROTOCOLS = ("argmax", "broadcast")
PROTOCOL_METRICS = {"argmax": "metrics", "broadcast": "metrics_broadcast"}
"""The key of ``test_metrics.json`` holding the metrics of each protocol's classes."""
DATA_LABELS = "data"
"""The name of the label set of the run's own data (``labels.h5`` of its AVE directory, or the synthetic labels)."""
BROADCAST_THRESHOLD = 0.5
"""Event probability ``1 - p_background`` from which a segment takes its video's class."""
VIDEO_INDEX_KEY, PRED_KEY, SCORES_KEY = "video_index", "pred", "scores"
PROTOCOL_ATTRIBUTE, LABELS_ATTRIBUTE = "protocol", "labels"


def predictions_file(split: str) -> str:
    """The file name of a split's saved predictions in a run directory."""
    return f"{split}_predictions.h5"


@dataclass(frozen=True)
class Predictions:
    """The content of a predictions file (module docstring)."""

    video_index: np.ndarray  # int64 [V]
    pred: np.ndarray  # int64 [V, T]
    scores: np.ndarray  # float32 [V, T, 29]
    protocol: str
    labels: str = DATA_LABELS


def _check_protocol(protocol: str) -> None:
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol={protocol!r}: expected one of {', '.join(PROTOCOLS)}")


def broadcast_predictions(scores, video_probs=None, *, threshold: float = BROADCAST_THRESHOLD,
                          background: int = BACKGROUND):
    """Segment classes ``[V, T]`` of the ``broadcast`` protocol from raw segment scores ``[V, T, C]``.

    The video's class is the event class (any class but `background`) of highest video-level probability;
    every segment whose event probability ``1 - softmax(scores)[..., background]`` is ``>= threshold`` takes
    it, the other segments take `background`. The video-level probabilities ``video_probs [V, C]`` are those of
    the model's own multiple-instance pool when it has another one (e.g. ``softmax(max_t scores)``); by default
    they are `mil_pool` of the scores, the mean over the segments of the segment softmax (EDRNet eq. 7), the
    pool `mil_loss` trains. Torch tensors or numpy arrays; the result is int64 of the same kind (and device).
    """
    if isinstance(scores, np.ndarray):
        probs = None if video_probs is None else torch.as_tensor(np.asarray(video_probs))
        pred = broadcast_predictions(torch.from_numpy(scores), probs, threshold=threshold, background=background)
        return pred.numpy()
    if not isinstance(scores, torch.Tensor):
        raise TypeError(f"scores must be a torch.Tensor or numpy.ndarray, got {type(scores).__name__}")
    if scores.dim() != 3 or not scores.dtype.is_floating_point:
        raise ValueError(f"scores must be floating [V, T, C], got {scores.dtype} {list(scores.shape)}")
    if not 0 <= background < scores.shape[-1] or scores.shape[-1] < 2:
        raise ValueError(f"background={background} is not one of {scores.shape[-1]} classes beside an event class")
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"threshold must lie in [0, 1], got {threshold}")
    segment_probs = scores.float().softmax(dim=-1)
    if video_probs is None:
        video_probs = mil_pool(scores.float())
    video_probs = torch.as_tensor(video_probs, device=scores.device)
    if video_probs.shape != (scores.shape[0], scores.shape[-1]):
        raise ValueError(
            f"video_probs must have shape {[scores.shape[0], scores.shape[-1]]} ([V, C] of the scores), "
            f"got {list(video_probs.shape)}"
        )
    event_probs = video_probs.float().clone()
    event_probs[:, background] = float("-inf")
    video_class = event_probs.argmax(dim=1)
    is_event = 1.0 - segment_probs[..., background] >= threshold
    return torch.where(is_event, video_class[:, None], torch.full_like(video_class[:, None], background))


def protocol_predictions(scores, protocol: str, video_probs=None):
    """Segment classes ``[V, T]`` of `scores` under `protocol` (`video_probs`: ``broadcast`` only)."""
    _check_protocol(protocol)
    if protocol == "broadcast":
        return broadcast_predictions(scores, video_probs)
    if video_probs is not None:
        raise ValueError("video_probs is used by the broadcast protocol only")
    return scores.argmax(-1) if isinstance(scores, torch.Tensor) else np.asarray(scores).argmax(-1)


def _as_numpy(values) -> np.ndarray:
    return values.detach().cpu().numpy() if isinstance(values, torch.Tensor) else np.asarray(values)


def _problem(video_index: np.ndarray, pred: np.ndarray, scores: np.ndarray) -> tuple[str, str] | None:
    """(key, what is wrong) of the first inconsistency of a predictions triple, or None."""
    if video_index.ndim != 1 or video_index.dtype.kind not in "iu":
        return VIDEO_INDEX_KEY, f"expected integer [V], got {video_index.dtype} {list(video_index.shape)}"
    if video_index.size and video_index.min() < 0:
        return VIDEO_INDEX_KEY, f"negative video index {int(video_index.min())}"
    if len(np.unique(video_index)) != len(video_index):
        return VIDEO_INDEX_KEY, "a video appears twice"
    if pred.ndim != 2 or pred.shape[0] != len(video_index) or pred.dtype.kind not in "iu":
        return PRED_KEY, f"expected integer [V, T] with V = {len(video_index)}, got {pred.dtype} {list(pred.shape)}"
    if pred.size and (pred.min() < 0 or pred.max() >= NUM_CLASSES):
        return PRED_KEY, f"class indices {int(pred.min())}..{int(pred.max())}, outside 0..{NUM_CLASSES - 1}"
    if scores.shape != (*pred.shape, NUM_CLASSES) or scores.dtype.kind != "f":
        want = [*pred.shape, NUM_CLASSES]
        found = f"{scores.dtype} {list(scores.shape)}"
        return SCORES_KEY, f"expected floating {want} ([V, T] of pred, {NUM_CLASSES} classes), got {found}"
    return None


def write_predictions(
    path: str | Path, video_index, pred, scores, *, protocol: str = "argmax", labels: str = DATA_LABELS
) -> None:
    """Write a predictions file atomically (module docstring); tensors or arrays, checked first (ValueError)."""
    _check_protocol(protocol)
    video_index, pred, scores = _as_numpy(video_index), _as_numpy(pred), _as_numpy(scores)
    problem = _problem(video_index, pred, scores)
    if problem is not None:
        raise ValueError(f"{problem[0]}: {problem[1]}")
    buffer = io.BytesIO()
    with h5py.File(buffer, "w") as file:
        file.attrs[PROTOCOL_ATTRIBUTE] = protocol
        file.attrs[LABELS_ATTRIBUTE] = labels
        file.create_dataset(VIDEO_INDEX_KEY, data=video_index.astype(np.int64))
        file.create_dataset(PRED_KEY, data=pred.astype(np.int64))
        file.create_dataset(SCORES_KEY, data=scores.astype(np.float32))
    atomic_write(Path(path), lambda stream: stream.write(buffer.getbuffer()))


def _text(value):
    return value.decode() if isinstance(value, bytes) else value


def read_predictions(path: str | Path) -> Predictions:
    """The content of a predictions file; `AVEFormatError` naming the file and key when it is not one."""
    path = Path(path)
    if not path.is_file():
        raise AVEFormatError(path, "", "file not found")
    try:
        file = h5py.File(path, "r")
    except OSError as err:
        raise AVEFormatError(path, "", f"not a readable HDF5 file ({err})") from None
    with file:
        values = {}
        for key in (VIDEO_INDEX_KEY, PRED_KEY, SCORES_KEY):
            if not isinstance(file.get(key), h5py.Dataset):
                raise AVEFormatError(path, key, f"dataset missing (file has: {', '.join(file.keys()) or 'nothing'})")
            values[key] = file[key][()]
        protocol, labels = (_text(file.attrs.get(name)) for name in (PROTOCOL_ATTRIBUTE, LABELS_ATTRIBUTE))
    if protocol not in PROTOCOLS:
        raise AVEFormatError(path, "", f"attribute {PROTOCOL_ATTRIBUTE}={protocol!r}: expected one of {PROTOCOLS}")
    problem = _problem(values[VIDEO_INDEX_KEY], values[PRED_KEY], values[SCORES_KEY])
    if problem is not None:
        raise AVEFormatError(path, *problem)
    return Predictions(
        video_index=values[VIDEO_INDEX_KEY].astype(np.int64), pred=values[PRED_KEY].astype(np.int64),
        scores=values[SCORES_KEY].astype(np.float32), protocol=protocol, labels=labels or DATA_LABELS,
    )  # fmt: skip


def score_predictions(predictions: Predictions, segment_labels) -> dict:
    """`segment_metrics` of the saved classes against ``segment_labels [videos, T]`` of every data video (e.g.
    `load_segment_labels` of ``labels.h5`` or of another label set), taken at the predictions' video indices."""
    segment_labels = _as_numpy(segment_labels)
    if predictions.video_index.size and predictions.video_index.max() >= len(segment_labels):
        raise ValueError(
            f"video index {int(predictions.video_index.max())} is outside the {len(segment_labels)} labelled videos"
        )
    return segment_metrics(predictions.pred, segment_labels[predictions.video_index])


def dataset_segment_labels(data: str | Path | None, synthetic_seed: int = 0, synthetic_videos: int = 0) -> np.ndarray:
    """Segment labels int64 ``[videos, T]`` of every video of a run's data, as training reads them: ``labels.h5``
    of the AVE directory `data` (rebuilt from ``Annotations.txt`` without it), or the synthetic set's labels
    (`synthetic_labels(synthetic_seed, synthetic_videos)`) when `data` is None."""
    if data is None:
        return synthetic_labels(synthetic_seed, synthetic_videos, 0).labels.numpy()
    root = Path(data)
    if (root / LABELS_FILE).is_file():
        return load_segment_labels(root / LABELS_FILE, None)
    return read_annotations(root / ANNOTATIONS_FILE)[0]
