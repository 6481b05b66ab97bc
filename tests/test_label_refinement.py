"""Temporal label refinement (TLR eqs. 9-18, docs/weak.md#label-refinement) on a tiny stand-in base model and on
the real training labels."""
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from avel_fast.constants import BACKGROUND, NUM_CLASSES, NUM_EVENT_CLASSES, NUM_SEGMENTS
from avel_fast.data.dataset import video_labels_from_segments
from avel_fast.reference.label_refinement import (
    WeakBase,
    aux_loss,
    check_splice_window,
    draw_second_videos,
    dummy_window_labels,
    max_pool,
    mean_pool,
    oracle_window_labels,
    pseudo_labels,
    refine_labels,
    repeat_predictions,
    splice,
    splice_indices,
    step1_loss,
    threshold_window_labels,
    union_labels,
    window_label_quality,
    window_loss,
    window_mask,
    window_starts,
)

AUDIO_DIM, MAP, CHANNELS = 5, 3, 6
T = NUM_SEGMENTS
PAPER_WINDOWS = [(2, 2), (3, 1), (4, 2), (5, 5)]  # TLR Tab. 7


class TinyWeakModel(nn.Module):
    """Stand-in base model with the split of the real ones: audio-guided attention over the map locations per
    segment (`segment_features`), then a bidirectional GRU over time and a classifier (`from_segment_features`)."""

    def __init__(self, dropout: float = 0.0, scale: float = 4.0) -> None:
        super().__init__()
        self.audio_proj = nn.Linear(AUDIO_DIM, CHANNELS)
        self.location = nn.Linear(CHANNELS, 1)
        self.gru = nn.GRU(AUDIO_DIM + CHANNELS, 8, batch_first=True, bidirectional=True)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(16, NUM_CLASSES)
        self.scale = scale

    def segment_features(self, audio, visual):
        maps = visual.flatten(2, -2)  # [B, T, L, C]
        weights = self.location(torch.tanh(maps + self.audio_proj(audio)[:, :, None])).squeeze(-1).softmax(dim=-1)
        return audio, (weights[..., None] * maps).sum(dim=2)

    def from_segment_features(self, audio, attended):
        hidden, _ = self.gru(torch.cat((audio, attended), dim=-1))
        return self.scale * self.head(self.dropout(hidden))

    def forward(self, audio, visual):
        return self.from_segment_features(*self.segment_features(audio, visual))


class LabelEcho(nn.Module):
    """A perfect segment classifier: the audio holds the one-hot segment label, the scores are 10 times it."""

    def segment_features(self, audio, visual):
        return (audio,)

    def from_segment_features(self, audio):
        return 10.0 * audio

    def forward(self, audio, visual):
        return self.from_segment_features(audio)


def make_base(kind: str, splice_features: bool = True, **kwargs) -> WeakBase:
    torch.manual_seed(0)
    return getattr(WeakBase, kind)(TinyWeakModel(**kwargs), splice_features=splice_features)


def make_videos(num_event: int, num_background: int, seed: int = 0):
    """Random features; event videos with one random class each, then the background-only videos."""
    generator = torch.Generator().manual_seed(seed)
    num_videos = num_event + num_background
    audio = torch.randn(num_videos, T, AUDIO_DIM, generator=generator)
    visual = torch.rand(num_videos, T, MAP, MAP, CHANNELS, generator=generator)
    classes = torch.randint(0, NUM_EVENT_CLASSES, (num_event,), generator=generator)
    video_labels = torch.zeros(num_videos, NUM_CLASSES)
    video_labels[torch.arange(num_event), classes] = 1.0
    video_labels[num_event:, BACKGROUND] = 1.0
    return audio, visual, video_labels


def explicit_synthetic(tensor, i, j, start, window):
    """Eq. 9 spelled out: video j with segments start..start+window-1 taken from video i."""
    return torch.cat((tensor[j, :start], tensor[i, start : start + window], tensor[j, start + window :]))


# ---------------------------------------------------------------------------------------------------- windows


@pytest.mark.parametrize(("num_segments", "window", "stride", "starts"), [
    (10, 4, 2, [0, 2, 4, 6]), (10, 2, 2, [0, 2, 4, 6, 8]), (10, 3, 1, list(range(8))), (10, 5, 5, [0, 5]),
    (10, 10, 1, [0]), (7, 3, 2, [0, 2, 4]), (1, 1, 3, [0]),
])  # fmt: skip
def test_window_starts(num_segments, window, stride, starts):
    assert window_starts(num_segments, window, stride).tolist() == starts
    assert len(starts) == (num_segments - window) // stride + 1


@pytest.mark.parametrize(("window", "stride"), PAPER_WINDOWS)
def test_windows_cover_the_video_and_their_complements_cover_the_second_video(window, stride):
    mask = window_mask(T, window, stride)
    assert mask.shape == (len(window_starts(T, window, stride)), T)
    assert mask.sum(dim=1).tolist() == [window] * len(mask)
    for row, start in zip(mask, window_starts(T, window, stride).tolist()):
        assert row.nonzero().flatten().tolist() == list(range(start, start + window))
    assert bool(mask.any(dim=0).all())
    assert bool((~mask).any(dim=0).all())  # eq. 14: every segment of V(j) is in some synthetic video


def test_long_windows_leave_second_video_segments_uncovered():
    """Why the auxiliary objective refuses N >= (T+1)/2: segment T/2 of V(j) is never used."""
    mask = window_mask(T, 6, 2)
    assert not bool((~mask).any(dim=0).all())
    with pytest.raises(ValueError, match=r"window=6: the auxiliary objective needs window < \(num_segments \+ 1\)/2"):
        check_splice_window(T, 6, 2, auxiliary=True)
    check_splice_window(T, 6, 2)
    check_splice_window(T, 5, 5, auxiliary=True)


# ---------------------------------------------------------------------------------------------------- splicing


@pytest.mark.parametrize(("window", "stride"), PAPER_WINDOWS)
@pytest.mark.parametrize("tail", [(), (3,), (2, 2, 3)])
def test_splice_is_the_explicit_per_window_construction(window, stride, tail):
    features = torch.randn(6, T, *tail)
    first, second = torch.tensor([0, 3, 5, 3]), torch.tensor([4, 4, 1, 2])
    (spliced,) = splice((features,), first, second, window, stride)
    starts = window_starts(T, window, stride).tolist()
    expected = torch.stack(
        [explicit_synthetic(features, i, j, start, window) for i, j in zip(first, second) for start in starts]
    )
    assert spliced.shape == (len(first) * len(starts), T, *tail)
    torch.testing.assert_close(spliced, expected, rtol=0, atol=0)


def test_splice_indices_layout():
    video_idx, segment_idx = splice_indices([7], [2], 6, 2, 2)
    assert video_idx.tolist() == [[7, 7, 2, 2, 2, 2], [2, 2, 7, 7, 2, 2], [2, 2, 2, 2, 7, 7]]
    assert segment_idx.tolist() == [list(range(6))] * 3
    empty, _ = splice_indices(torch.zeros(0, dtype=torch.int64), torch.zeros(0, dtype=torch.int64), T, 4, 2)
    assert empty.shape == (0, T)


def test_spliced_features_give_the_scores_of_spliced_raw_videos():
    """The exact speed-up: per-segment features of 2 videos, spliced, = the model on the spliced raw videos."""
    audio, visual, _ = make_videos(5, 3)
    base = make_base("ave")
    first, second = torch.arange(5), torch.tensor([5, 6, 7, 5, 6])
    with torch.no_grad():
        from_features = base.scores(splice(base.segment_features(audio, visual), first, second, 4, 2))
        from_raw = base.model(*splice((audio, visual), first, second, 4, 2))
    torch.testing.assert_close(from_features, from_raw)
    assert from_features.shape == (5 * 4, T, NUM_CLASSES)


# ---------------------------------------------------------------------------------------------------- labels


def test_union_labels():
    labels = torch.zeros(4, NUM_CLASSES)
    labels[0, 3] = labels[1, 5] = labels[2, BACKGROUND] = labels[3, BACKGROUND] = 1.0
    union = union_labels(labels[[0, 0, 2]], labels[[2, 1, 3]])
    assert union[0].tolist() == labels[0].tolist()  # with a background-only V(j) the union is Y(i)
    assert union[1].nonzero().flatten().tolist() == [3, 5]  # background column unset when an event is present
    assert union[2].nonzero().flatten().tolist() == [BACKGROUND]


def test_threshold_window_labels_conjunction_and_background():
    video_labels = torch.zeros(2, NUM_CLASSES)
    video_labels[0, 2] = video_labels[1, BACKGROUND] = 1.0
    probs = torch.full((2, 3, NUM_CLASSES), 0.01)
    probs[0, 0, 2], probs[0, 1, 2], probs[0, :, 7] = 0.5, 0.04, 0.9  # class 7 is not a label of video 0
    probs[1, :, BACKGROUND] = 0.9
    labels = threshold_window_labels(video_labels, probs, tau=0.05)
    assert labels.argmax(dim=-1).tolist() == [[2, BACKGROUND, BACKGROUND], [BACKGROUND] * 3]
    assert labels.sum(dim=-1).tolist() == [[1.0] * 3] * 2
    assert threshold_window_labels(video_labels, probs, tau=0.04)[0].argmax(dim=-1).tolist() == [2, 2, BACKGROUND]
    assert threshold_window_labels(video_labels, probs, tau=0.0)[0].argmax(dim=-1).tolist() == [2, 2, 2]


def test_oracle_window_labels_by_hand():
    segments = torch.full((2, 6), BACKGROUND)
    segments[0, 3:5] = 9
    labels = oracle_window_labels(segments, 2, 2)
    assert labels.argmax(dim=-1).tolist() == [[BACKGROUND, 9, 9], [BACKGROUND] * 3]
    assert labels.sum(dim=-1).tolist() == [[1.0] * 3] * 2


def test_oracle_window_labels_on_the_real_training_split(train_labels):
    """1325 of 13,356 windows are background, in 789 of the 3339 videos (and the other window choices)."""
    expected = {(4, 2): (1325, 13356, 789), (2, 2): (2488, 16695, 1035), (3, 1): (3166, 26712, 929),
                (5, 5): (602, 6678, 601)}  # fmt: skip
    segments = torch.from_numpy(train_labels)
    for (window, stride), counts in expected.items():
        background = oracle_window_labels(segments, window, stride)[..., BACKGROUND] > 0
        assert (int(background.sum()), background.numel(), int(background.any(dim=1).sum())) == counts


def test_dummy_window_labels():
    _, _, video_labels = make_videos(3, 2)
    labels = dummy_window_labels(video_labels)
    assert labels.shape == (5, 4, NUM_CLASSES)
    torch.testing.assert_close(labels, video_labels[:, None].expand(-1, 4, -1), rtol=0, atol=0)
    assert dummy_window_labels(video_labels, T, 3, 1).shape == (5, 8, NUM_CLASSES)


def test_pseudo_labels_and_repeat_predictions():
    scores = torch.randn(3, T, NUM_CLASSES)
    scores[0, 4, BACKGROUND] = scores[1, 2, BACKGROUND] = 50.0
    scores[0, 7, 11] = 40.0
    video_labels = torch.zeros(3, NUM_CLASSES)
    video_labels[0, 11] = video_labels[1, 4] = video_labels[2, BACKGROUND] = 1.0
    labels = pseudo_labels(scores, video_labels)
    assert labels[:2].tolist() == scores[:2].argmax(dim=-1).tolist()  # unfiltered argmax, background included
    assert labels[2].tolist() == [BACKGROUND] * T
    repeated = repeat_predictions(scores)
    assert repeated[0].tolist() == [11] * T  # the background's higher maximum is skipped
    expected = [int(scores[v].max(dim=0).values[:NUM_EVENT_CLASSES].argmax()) for v in range(3)]
    assert repeated[:, 0].tolist() == expected
    mean_expected = int(scores[1].mean(dim=0)[:NUM_EVENT_CLASSES].argmax())
    assert repeat_predictions(scores, mean_pool)[1].tolist() == [mean_expected] * T


def test_window_label_quality():
    segments = torch.full((3, 6), BACKGROUND)
    segments[0, :4], segments[1, 2:] = 3, 5
    truth = oracle_window_labels(segments, 2, 2)  # video 0: 3, 3, bg; video 1: bg, 5, 5; video 2: bg x 3
    perfect = window_label_quality(truth, segments, 2, 2)
    assert (perfect["window_accuracy"], perfect["event_f1"], perfect["background_f1"]) == (1.0, 1.0, 1.0)
    assert perfect["num_windows"] == 9
    pred = truth.clone()
    pred[0, 2] = pred[1, 0] = F.one_hot(torch.tensor(3), NUM_CLASSES).float()  # two false event windows
    pred[1, 1] = F.one_hot(torch.tensor(BACKGROUND), NUM_CLASSES).float()  # one missed event window
    quality = window_label_quality(pred, segments, 2, 2)
    assert quality["window_accuracy"] == pytest.approx(6 / 9)
    assert quality["event_precision"] == pytest.approx(3 / 5)
    assert quality["event_recall"] == pytest.approx(3 / 4)
    assert quality["background_recall"] == pytest.approx(3 / 5)
    assert quality["event_f1"] == pytest.approx(2 / (5 / 3 + 4 / 3))


def test_dummy_labels_quality_on_the_real_training_split(train_labels):
    """Every window of an event video labelled with its event: all 12,031 event windows found, 1325 - 4 false."""
    segments = torch.from_numpy(train_labels)
    quality = window_label_quality(dummy_window_labels(video_labels_from_segments(segments)), segments)
    assert quality["event_recall"] == 1.0
    assert quality["event_precision"] == pytest.approx(12031 / (13356 - 4))  # the zero-length video: 4 windows
    assert quality["num_windows"] == 13356


# ---------------------------------------------------------------------------------------------------- losses


@pytest.mark.parametrize("kind", ["ave", "psp"])
def test_window_loss_with_one_full_window_is_the_mil_loss(kind):
    base = make_base(kind)
    audio, visual, video_labels = make_videos(4, 2)
    scores = base.model(audio, visual)
    mil = base.mil_loss(scores, video_labels)
    torch.testing.assert_close(window_loss(base, scores, video_labels[:, None], window=T, stride=1), mil)


@pytest.mark.parametrize("kind", ["ave", "psp"])
@pytest.mark.parametrize(("window", "stride"), PAPER_WINDOWS)
def test_window_loss_is_the_mean_over_windows_of_g(kind, window, stride):
    """Eqs. 12-13 spelled out: pool each window of the original scores, softmax, g, mean over windows."""
    base = make_base(kind)
    scores = torch.randn(3, T, NUM_CLASSES, requires_grad=True)
    starts = window_starts(T, window, stride).tolist()
    labels = F.one_hot(torch.randint(0, NUM_CLASSES, (3, len(starts))), NUM_CLASSES).float()
    loss = window_loss(base, scores, labels, window, stride)
    pool = max_pool if kind == "ave" else mean_pool
    expected = torch.stack([
        torch.stack([base.loss(pool(scores[v, s : s + window], 0).softmax(-1)[None], labels[v, w][None])
                     for w, s in enumerate(starts)]).mean()
        for v in range(3)
    ]).mean()  # fmt: skip
    torch.testing.assert_close(loss, expected)
    (grad,) = torch.autograd.grad(loss, scores)
    (expected_grad,) = torch.autograd.grad(expected, scores)
    torch.testing.assert_close(grad, expected_grad)


def softmax_weighted_pool(scores, dim):
    """A pooling for which pooling within then across differs from pooling all T1·T scores at once (max then max
    and mean then mean do not)."""
    return (scores * scores.softmax(dim=dim)).sum(dim=dim)


def cross_entropy_on_probs(prob, target):
    """A loss more sensitive to the pooled scores than the soft margin on probabilities."""
    return -(target * prob.log()).sum(dim=-1).mean()


@pytest.mark.parametrize("kind", ["ave", "psp", "softmax-weighted"])
def test_aux_loss_pools_within_then_across(kind):
    """Eqs. 15-18 spelled out on explicitly built synthetic videos: AVE max then max, PSP mean then mean."""
    base = make_base("psp" if kind == "psp" else "ave", splice_features=False)
    if kind == "softmax-weighted":
        base = WeakBase(base.model, softmax_weighted_pool, cross_entropy_on_probs, splice_features=False)
    audio, visual, video_labels = make_videos(3, 2)
    first, second = torch.tensor([0, 1, 2]), torch.tensor([3, 4, 3])
    loss = aux_loss(base, (audio, visual), first, second, video_labels)
    pool = base.pool
    per_video = []
    for i, j in zip(first.tolist(), second.tolist()):
        synthetic = [
            base.model(explicit_synthetic(audio, i, j, s, 4)[None], explicit_synthetic(visual, i, j, s, 4)[None])[0]
            for s in (0, 2, 4, 6)
        ]
        pooled = pool(torch.stack([pool(x, 0) for x in synthetic]), 0)
        per_video.append(base.loss(pooled.softmax(-1)[None], video_labels[i][None]))  # union with a bg-only V(j)
    torch.testing.assert_close(loss, torch.stack(per_video).mean())


@pytest.mark.parametrize("kind", ["ave", "psp"])
def test_step1_loss_on_spliced_features_equals_spliced_raw_videos(kind):
    """Same L_MIL + L_A and the same parameter gradients whether features or raw maps are spliced."""
    audio, visual, video_labels = make_videos(6, 4)
    batch, seconds = torch.tensor([0, 1, 2, 3, 4, 6]), torch.tensor([6, 7, 9, 8, 6, 7])
    args = (audio[batch], visual[batch], video_labels[batch])
    second = (audio[seconds], visual[seconds], video_labels[seconds])
    results = []
    for splice_features in (True, False):
        base = make_base(kind, splice_features)
        loss = step1_loss(base, *args, second)
        results.append((loss, torch.autograd.grad(loss, list(base.model.parameters()))))
        without = step1_loss(base, *args)
        torch.testing.assert_close(without, base.mil_loss(base.model(*args[:2]), args[2]))
        assert float(loss.detach()) > float(without.detach())
    torch.testing.assert_close(results[0][0], results[1][0])
    for features_grad, raw_grad in zip(results[0][1], results[1][1]):
        torch.testing.assert_close(features_grad, raw_grad)


# ---------------------------------------------------------------------------------------------------- step 2


@pytest.fixture(scope="module")
def refine_inputs():
    audio, visual, video_labels = make_videos(12, 5, seed=3)
    second = draw_second_videos(17, torch.arange(12, 17), torch.Generator().manual_seed(1))
    return audio, visual, video_labels, second


def test_refine_labels_is_the_per_window_prediction(refine_inputs):
    """Step 2 = Φ0 on each synthetic video built by hand, eval mode (dropout off), thresholded at τ."""
    audio, visual, video_labels, second = refine_inputs
    base = make_base("ave", dropout=0.5)
    labels = refine_labels(base, audio, visual, video_labels, second, tau=0.05)
    assert base.model.training
    base.model.eval()
    with torch.no_grad():
        probs = torch.stack([
            torch.stack([base.video_prob(base.model(explicit_synthetic(audio, i, int(second[i]), s, 4)[None],
                                                    explicit_synthetic(visual, i, int(second[i]), s, 4)[None]))[0]
                         for s in (0, 2, 4, 6)])
            for i in range(len(audio))
        ])  # fmt: skip
    expected = threshold_window_labels(video_labels, probs, 0.05)
    torch.testing.assert_close(labels, expected, rtol=0, atol=0)
    event_windows = int(labels[:12, :, :BACKGROUND].sum())
    assert 0 < event_windows < 12 * 4  # the threshold separates windows of this model


def test_refine_labels_same_for_any_chunking_splice_and_storage(refine_inputs):
    audio, visual, video_labels, second = refine_inputs
    expected = refine_labels(make_base("psp"), audio, visual, video_labels, second, window=3, stride=1, tau=0.04)
    assert expected.shape == (17, 8, NUM_CLASSES)
    for kwargs in (dict(chunk_videos=1), dict(chunk_videos=5)):
        labels = refine_labels(make_base("psp"), audio, visual, video_labels, second, window=3, stride=1, tau=0.04,
                               **kwargs)  # fmt: skip
        torch.testing.assert_close(labels, expected, rtol=0, atol=0)
    raw = refine_labels(make_base("psp", splice_features=False), audio, visual, video_labels, second, window=3,
                        stride=1, tau=0.04)  # fmt: skip
    torch.testing.assert_close(raw, expected, rtol=0, atol=0)
    half = refine_labels(make_base("psp"), audio, visual.half(), video_labels, second, window=3, stride=1, tau=0.04)
    assert half.shape == expected.shape and half.dtype == torch.float32
    empty = refine_labels(make_base("psp"), audio[:0], visual[:0], video_labels[:0], second[:0])
    assert empty.shape == (0, 4, NUM_CLASSES)


def test_refine_labels_tau_limits_and_monotonicity(refine_inputs):
    audio, visual, video_labels, second = refine_inputs
    base = make_base("ave")
    taus = [0.0, 0.02, 0.035, 0.05, 0.08, 0.3, 1.0, 1.01]
    results = [refine_labels(base, audio, visual, video_labels, second, tau=tau) for tau in taus]
    torch.testing.assert_close(results[0], dummy_window_labels(video_labels), rtol=0, atol=0)
    assert bool((results[-1][..., BACKGROUND] == 1).all()) and float(results[-1].sum()) == 17 * 4
    counts = [int(labels[..., :BACKGROUND].sum()) for labels in results]
    assert counts == sorted(counts, reverse=True) and len(set(counts)) > 2
    for looser, stricter in zip(results, results[1:]):
        assert bool((stricter[..., :BACKGROUND] <= looser[..., :BACKGROUND]).all())
    for labels in results:
        assert bool((labels[12:].argmax(dim=-1) == BACKGROUND).all())  # background-only videos
        assert labels.sum(dim=-1).eq(1).all()


def test_refine_labels_with_a_perfect_predictor_are_the_oracle_labels(train_labels):
    """A perfect video-level Φ0 on the real training split (3339 + 178 background-only videos) gives the
    ground-truth window labels: 1325 background windows in 789 videos."""
    segments = torch.cat((torch.from_numpy(train_labels), torch.full((178, T), BACKGROUND)))
    audio = F.one_hot(segments, NUM_CLASSES).float()
    second = draw_second_videos(len(segments), torch.arange(3339, 3517), torch.Generator().manual_seed(0))
    base = WeakBase.ave(LabelEcho())
    labels = refine_labels(base, audio, torch.zeros(len(segments), T, 1), video_labels_from_segments(segments), second)
    torch.testing.assert_close(labels, oracle_window_labels(segments), rtol=0, atol=0)
    background = labels[:3339, :, BACKGROUND] > 0
    assert (int(background.sum()), int(background.any(dim=1).sum())) == (1325, 789)


def test_draw_second_videos():
    pool = torch.tensor([10, 20, 30])
    draws = draw_second_videos(3000, pool, torch.Generator().manual_seed(5))
    assert draws.shape == (3000,) and set(draws.tolist()) == {10, 20, 30}
    assert max(abs(int((draws == row).sum()) - 1000) for row in pool.tolist()) < 100
    torch.testing.assert_close(draws, draw_second_videos(3000, pool, torch.Generator().manual_seed(5)))


# ---------------------------------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(("call", "message"), [
    (lambda: window_starts(10, 11, 1), r"window=11 is longer than the video \(num_segments=10\)"),
    (lambda: window_starts(10, 4, 4), r"stride=4 must divide num_segments - window = 6"),
    (lambda: window_starts(10, 0, 1), "window must be an integer >= 1, got 0"),
    (lambda: window_starts(10, 4, 0), "stride must be an integer >= 1, got 0"),
    (lambda: window_starts(10, 4.0, 2), r"window must be an integer >= 1, got 4\.0"),
    (lambda: window_starts(0, 1, 1), "num_segments must be an integer >= 1, got 0"),
    (lambda: check_splice_window(10, 10, 1), r"window=10 must be shorter than the video \(num_segments=10\)"),
    (lambda: splice_indices([0, 1], [2], 10, 4, 2), "first and second must have the same length, got 2 and 1"),
    (lambda: splice_indices([0.5], [2], 10, 4, 2), "first must be a 1-d integer tensor of video indices"),
    (lambda: union_labels(torch.zeros(2, 28), torch.zeros(2, 29)), r"video_labels must have shape \[V, 29\]"),
    (lambda: threshold_window_labels(torch.zeros(2, 29), torch.zeros(2, 4, 29), tau=-0.1),
     "tau must be a number >= 0, got -0.1"),
    (lambda: threshold_window_labels(torch.zeros(2, 29), torch.zeros(3, 4, 29)),
     r"window_probs must have shape \[2, T1, 29\], got \(3, 4, 29\)"),
    (lambda: window_loss(make_base("ave"), torch.zeros(2, 10, 29), torch.zeros(2, 3, 29)),
     r"window_labels must have shape \[2, 4, 29\] for window=4, stride=2, got \(2, 3, 29\)"),
    (lambda: window_loss(make_base("ave"), torch.zeros(10, 29), torch.zeros(2, 3, 29)),
     r"scores must have shape \[B, T, 29\], got \(10, 29\)"),
    (lambda: oracle_window_labels(torch.zeros(2, 10)), "segment_labels must be int64 \\[V, T\\], got torch.float32"),
    (lambda: window_label_quality(torch.ones(1, 4, 29), torch.full((1, 10), 28)),
     "pred_window_labels must set exactly one class per window"),
    (lambda: window_label_quality(torch.eye(29)[None, :3], torch.full((1, 10), 28)),
     r"pred_window_labels has \(1, 3\) windows but gt_segments give \(1, 4\)"),
    (lambda: pseudo_labels(torch.zeros(2, 10, 29), torch.zeros(3, 29)), r"scores must have shape \[3, T, 29\]"),
    (lambda: repeat_predictions(torch.zeros(2, 10, 28)), r"scores must have shape \[V, T, 29\]"),
    (lambda: draw_second_videos(3, torch.zeros(0, dtype=torch.int64), torch.Generator()), "pool_rows is empty"),
    (lambda: WeakBase.ave(nn.Linear(2, 2)), "model Linear has no segment_features or from_segment_features"),
])  # fmt: skip
def test_bad_arguments(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_bad_arguments_of_the_training_steps(refine_inputs):
    audio, visual, video_labels, second = refine_inputs
    base = make_base("ave")
    features = base.segment_features(audio, visual)
    with pytest.raises(ValueError, match=r"window=6: the auxiliary objective needs window < \(num_segments \+ 1\)/2"):
        aux_loss(base, features, [0], [12], video_labels, window=6, stride=2)
    with pytest.raises(ValueError, match=r"second must hold one video per video of the batch \(3\)"):
        step1_loss(base, audio[:3], visual[:3], video_labels[:3], (audio[:2], visual[:2], video_labels[:2]))
    with pytest.raises(ValueError, match=r"second_videos must be video indices in 0..16"):
        refine_labels(base, audio, visual, video_labels, second + 17)
    with pytest.raises(ValueError, match=r"second_videos must have shape \[17\], got \(3,\)"):
        refine_labels(base, audio, visual, video_labels, second[:3])
    with pytest.raises(ValueError, match="audio, visual and video_labels must hold the same videos, got 17, 16"):
        refine_labels(base, audio, visual[:16], video_labels, second)
    with pytest.raises(ValueError, match="tau must be a number >= 0, got nan"):
        refine_labels(base, audio, visual, video_labels, second, tau=math.nan)
    with pytest.raises(ValueError, match="chunk_videos must be an integer >= 1, got 0"):
        refine_labels(base, audio, visual, video_labels, second, chunk_videos=0)
    with pytest.raises(ValueError, match=r"window=10 must be shorter than the video"):
        refine_labels(base, audio, visual, video_labels, second, window=10, stride=1)
