"""Label refinement that reports its own label quality (docs/weak.md#label-quality): the comparison of the refined
window labels with the trivial and ground-truth ones, the event videos left without an event window,
``--keep-video-label``, ``--refine oracle`` and one definition of each weak loss g."""
import json
import shutil

import pytest
import torch
from typer.testing import CliRunner

import avel_fast.train.families.weak as weak_family
from avel_fast.cli.main import app
from avel_fast.constants import BACKGROUND, NUM_CLASSES
from avel_fast.data.dataset import video_labels_from_segments
from avel_fast.reference.ave import soft_margin_on_probs
from avel_fast.reference.label_refinement import (
    WeakBase,
    all_background_event_videos,
    dummy_window_labels,
    keep_video_label,
    oracle_window_labels,
    window_label_comparison,
)
from avel_fast.reference.psp import bce_on_probs
from avel_fast.train import TrainingError, family_of, resolve_config, train
from avel_fast.train.progress import TrainProgress
from avel_fast.train.families.weak import STEP1_DIR, read_labels
from avel_fast.train.run_dir import write_config

# video 0: event 3 on segments 0-3; video 1: event 5 on segments 6-9; video 2: background only
SEGMENTS = torch.full((3, 10), BACKGROUND)
SEGMENTS[0, :4], SEGMENTS[1, 6:] = 3, 5
VIDEO_LABELS = video_labels_from_segments(SEGMENTS)
BG = torch.eye(NUM_CLASSES)[BACKGROUND]


def all_background_windows(videos: int) -> torch.Tensor:
    return BG.expand(videos, 4, NUM_CLASSES).clone()


def test_all_background_event_videos_counts_event_videos_only():
    labels = oracle_window_labels(SEGMENTS)
    assert all_background_event_videos(labels, VIDEO_LABELS).tolist() == [False, False, False]
    labels[1] = BG  # video 1 lost its event windows; video 2 is background only and stays uncounted
    assert all_background_event_videos(labels, VIDEO_LABELS).tolist() == [False, True, False]
    assert all_background_event_videos(all_background_windows(3), VIDEO_LABELS).tolist() == [True, True, False]


def test_keep_video_label_restores_only_event_videos_without_event_windows():
    labels = oracle_window_labels(SEGMENTS)
    labels[1] = BG
    kept = keep_video_label(labels, VIDEO_LABELS)
    torch.testing.assert_close(kept[1], dummy_window_labels(VIDEO_LABELS)[1], rtol=0, atol=0)
    torch.testing.assert_close(kept[[0, 2]], labels[[0, 2]], rtol=0, atol=0)
    assert kept.dtype == labels.dtype


def test_window_label_comparison_puts_refined_next_to_trivial_and_ground_truth():
    refined = oracle_window_labels(SEGMENTS)
    refined[1] = BG  # 2 of video 1's event windows missed (windows 6-9 and 4-7 hold event 5)
    compared = window_label_comparison(refined, VIDEO_LABELS, SEGMENTS)
    assert set(compared) == {"refined", "trivial", "ground_truth"}
    assert compared["ground_truth"]["window_accuracy"] == compared["ground_truth"]["event_recall"] == 1.0
    # trivial: every window of videos 0 and 1 an event window: 4 of 12 windows wrong (2 per event video)
    assert compared["trivial"]["window_accuracy"] == pytest.approx(8 / 12)
    assert compared["trivial"]["event_recall"] == 1.0
    assert compared["refined"]["window_accuracy"] == pytest.approx(10 / 12)
    assert compared["refined"]["event_recall"] == pytest.approx(2 / 4)


def test_the_weak_base_uses_the_families_weak_losses():
    """One definition of each weak loss g: `WeakBase` (L_A, L_LR) and the families (L_MIL) call the same function."""
    model = torch.nn.Linear(1, 1)
    assert WeakBase.ave(model, splice_features=False).loss is soft_margin_on_probs
    assert WeakBase.psp(model, splice_features=False).loss is bce_on_probs
    probabilities, targets = torch.rand(4, NUM_CLASSES).softmax(dim=-1), VIDEO_LABELS[[0, 1, 2, 0]]
    for name, loss in (("ave", soft_margin_on_probs), ("psp", bce_on_probs)):
        assert torch.equal(family_of(name).weak_loss(probabilities, targets), loss(probabilities, targets))


# --- through the pipeline (smoke sizes) ----------------------------------------------------------------------------


def _smoke(**overrides):
    return resolve_config("ave", preset="smoke", setting="wsel", device="cpu", synthetic_videos=60, **overrides)


class Notes(TrainProgress):
    def __init__(self) -> None:
        self.notes = []

    def note(self, text: str) -> None:
        self.notes.append(text)


TAU = 0.5
"""Far above what a one-epoch Step 1 gives an event (about 1/29): most windows come out background."""


@pytest.fixture(scope="module")
def lr_run(tmp_path_factory):
    """One smoke ``--refine lr`` run shared by the tests below: its directory, config and the notes it printed."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        run, progress, config = tmp_path_factory.mktemp("refine") / "lr", Notes(), _smoke(refine="lr", tau=TAU)
        train(config, run, progress=progress)
    finally:
        torch.set_num_threads(threads)
    return run, config, progress.notes


def test_window_labels_json_compares_refined_trivial_and_ground_truth_and_warns(lr_run):
    run, config, notes = lr_run
    quality = json.loads((run / "window_labels.json").read_text())
    refined, trivial, truth = quality["val"], quality["val_trivial"], quality["val_ground_truth"]
    assert truth["window_accuracy"] == truth["event_recall"] == trivial["event_recall"] == 1.0
    assert refined["num_windows"] == trivial["num_windows"] == truth["num_windows"]
    assert quality["refined_below_trivial"] == (refined["window_accuracy"] < trivial["window_accuracy"])
    assert quality["refined_below_trivial"] and not quality["keep_video_label"]
    warnings = [note for note in notes if note.startswith("warning:")]
    assert len(warnings) == 1 and "below the trivial ones" in warnings[0]
    video_labels = family_of("ave").load_data(config).train.video_labels
    labels = read_labels(run / "window_labels.h5", "window_labels").float()
    lost = all_background_event_videos(labels, video_labels)
    assert quality["train_event_videos_all_background"] == int(lost.sum()) > 0
    assert quality["train_event_videos"] == int((video_labels[:, :BACKGROUND] > 0).any(dim=1).sum())


def test_keep_video_label_gives_the_event_videos_without_event_windows_their_label(lr_run, tmp_path, one_thread):
    """The same Step 1 (copied), Step 2 and 3 with ``--keep-video-label``."""
    run, config, _ = lr_run
    kept_config = _smoke(refine="lr", tau=TAU, keep_video_label=True)
    kept_run = tmp_path / "kept"
    shutil.copytree(run / STEP1_DIR, kept_run / STEP1_DIR)
    write_config(kept_run, kept_config)
    train(kept_config, kept_run, resume=True)
    video_labels = family_of("ave").load_data(config).train.video_labels
    plain = read_labels(run / "window_labels.h5", "window_labels").float()
    kept = read_labels(kept_run / "window_labels.h5", "window_labels").float()
    assert torch.equal(kept, keep_video_label(plain, video_labels)) and not torch.equal(kept, plain)
    assert not bool(all_background_event_videos(kept, video_labels).any())
    quality = json.loads((kept_run / "window_labels.json").read_text())
    plain_quality = json.loads((run / "window_labels.json").read_text())
    assert quality["keep_video_label"]
    assert quality["train_event_videos_all_background"] == plain_quality["train_event_videos_all_background"]
    assert not json.loads((kept_run / STEP1_DIR / "config.json").read_text())["config"]["options"]["keep_video_label"]


def test_oracle_trains_step_3_alone_on_the_ground_truth_window_labels(tmp_path, monkeypatch, one_thread):
    seen = []
    real = weak_family.window_loss
    monkeypatch.setattr(weak_family, "window_loss", lambda base, scores, labels, *a: seen.append(labels) or real(
        base, scores, labels, *a))
    config = _smoke(refine="oracle")
    train(config, tmp_path / "oracle")
    assert {path.name for path in (tmp_path / "oracle").iterdir()} >= {"test_metrics.json", "best.pt"}
    assert not (tmp_path / "oracle" / STEP1_DIR).exists() and not (tmp_path / "oracle" / "window_labels.h5").exists()
    truth = oracle_window_labels(family_of("ave").load_data(config).train.labels).flatten(1)
    rows = torch.cat(seen).flatten(1)
    assert bool((rows[:, None] == truth[None]).all(dim=-1).any(dim=1).all())  # every row a training video's truth
    event_rows = (rows.unflatten(1, (4, NUM_CLASSES))[..., :BACKGROUND] > 0).any(dim=(1, 2))
    assert bool((rows.unflatten(1, (4, NUM_CLASSES))[event_rows][..., BACKGROUND] > 0).any())  # not the dummy labels


@pytest.mark.parametrize("overrides,message", [
    (dict(keep_video_label=True), "--keep-video-label needs --refine lr or a\\+lr"),
    (dict(refine="dummy", keep_video_label=True), "--keep-video-label needs --refine lr or a\\+lr"),
    (dict(refine="oracle", tau=0.1), "--tau needs --refine lr or a\\+lr"),
    (dict(refine="oracle", step1_epochs=2), "--step1-epochs needs --refine lr, a\\+lr or pl"),
])
def test_options_that_would_be_ignored_are_refused(overrides, message):
    with pytest.raises(TrainingError, match=message):
        _smoke(**overrides)


def test_oracle_and_keep_video_label_are_weak_options_of_ave_and_psp():
    with pytest.raises(TrainingError, match="--refine oracle refines weak labels: use it with --setting wsel"):
        resolve_config("psp", preset="smoke", setting="sel", refine="oracle", device="cpu")
    message = "--keep-video-label is not an option of dpnet \\(an option of ave and psp\\)"
    with pytest.raises(TrainingError, match=message):
        resolve_config("dpnet", preset="smoke", keep_video_label=True, device="cpu")


def test_the_command_line_refuses_keep_video_label_without_refinement(tmp_path):
    result = CliRunner().invoke(app, ["train", "ave", "--setting", "wsel", "--preset", "smoke", "--keep-video-label",
                                      "--out", str(tmp_path / "run")], env={"COLUMNS": "200"})
    assert result.exit_code == 1 and "error: --keep-video-label needs --refine lr or a+lr" in result.output
    assert not (tmp_path / "run").exists()
