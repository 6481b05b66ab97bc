"""`avel-fast train pretext` (docs/audio.md#pretext-training): the smoke run writes a run directory and probe.json,
a directory of (image, WAV) pairs trains alike, options of other models are refused, and every kind of bad pair
directory is reported naming the file."""
import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from avel_fast.cli.main import app
from avel_fast.pretext import read_pairs, synthetic_scenes
from avel_fast.train import resolve_config, resume_config, train
from avel_fast.train.run_dir import read_metrics
import avel_fast.train.families.pretext as pretext_family
from avel_fast.train.families.pretext import decisions

soundfile = pytest.importorskip("soundfile")
Image = pytest.importorskip("PIL.Image")

RUN_FILES = {"config.json", "metrics.jsonl", "best.pt", "last.pt", "test_metrics.json", "probe.json"}
pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_thread")]


def invoke(*args):
    return CliRunner().invoke(app, [str(arg) for arg in args], env={"COLUMNS": "200"})


def write_pairs(directory, count=15, seconds=1.1, labels=True):
    """`count` synthetic scenes as 32x32 PNG + 16 kHz WAV pairs, with their scenes in labels.csv."""
    scenes = synthetic_scenes(1, count, num_scenes=3, seconds=seconds)
    directory.mkdir()
    pixels = np.clip((scenes.images.numpy() + 3) / 6 * 255, 0, 255).astype(np.uint8).transpose(0, 2, 3, 1)
    for index in range(count):
        Image.fromarray(pixels[index]).save(directory / f"clip{index:02d}.png")
        soundfile.write(directory / f"clip{index:02d}.wav", scenes.waveforms[index].numpy(), scenes.sample_rate)
    if labels:
        rows = "".join(f"clip{index:02d},scene{int(scene)}\n" for index, scene in enumerate(scenes.labels))
        (directory / "labels.csv").write_text("name,label\n" + rows)
    return scenes


def test_smoke_run_writes_the_run_directory_and_the_probe(tmp_path):
    out = tmp_path / "run"
    result = invoke("train", "pretext", "--preset", "smoke", "--out", out)
    assert result.exit_code == 0, result.output
    assert {path.name for path in out.iterdir()} == RUN_FILES
    config = json.loads((out / "config.json").read_text())["config"]
    chosen = (config["model"], config["options"]["features"], config["options"]["targets"], config["options"]["k"])
    assert chosen == ("pretext", "textures", "cluster", 6)
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [record["epoch"] for record in records] == [1, 2] and set(records[0]["val"]) == {"accuracy"}
    report = json.loads((out / "test_metrics.json").read_text())
    assert report["split"] == "test" and set(report["metrics"]) == {"accuracy", "loss"}
    assert report["val_accuracy"] == max(record["val"]["accuracy"] for record in records)
    probe = json.loads((out / "probe.json").read_text())
    assert set(probe["probe_accuracy"]) == {"pretext", "random_init"}
    assert all(0.0 <= value <= 1.0 for value in probe["probe_accuracy"].values())
    assert probe["nmi"] >= 0.9 and probe["scenes"] == 6  # texture clusters recover the scenes
    assert probe["probe_train_examples"] == 54 and probe["probe_test_examples"] == 18
    assert f"probe accuracy, pretext {probe['probe_accuracy']['pretext']:.4f}" in result.output
    for command in ("eval", "report"):
        refused = invoke(command, out)
        assert refused.exit_code == 1 and "a pretext run is scored when it ends" in refused.output, command


def test_bit_targets_from_mfcc(tmp_path):
    config = resolve_config("pretext", preset="smoke", features="mfcc", targets="bits", k=4, epochs=1)
    report = train(config, tmp_path / "run")
    probe = json.loads((tmp_path / "run" / "probe.json").read_text())
    assert probe["nmi"] is None and probe["targets"] == "bits"
    assert report["summaries"]["probe"]["cluster NMI"] is None
    assert 0.0 <= report["metrics"]["accuracy"] <= 1.0


def test_resumed_pretext_run_equals_the_uninterrupted_one(tmp_path):
    config = resolve_config("pretext", preset="smoke", epochs=3)
    full = train(config, tmp_path / "full")
    assert train(config, tmp_path / "cut", max_epochs_this_run=1) is None
    resumed = train(resume_config(tmp_path / "cut"), tmp_path / "cut", resume=True)
    assert resumed == full
    timeless = [[{k: v for k, v in r.items() if k != "seconds"} for r in read_metrics(tmp_path / name)]
                for name in ("full", "cut")]
    assert timeless[0] == timeless[1]
    assert (tmp_path / "cut" / "probe.json").read_text() == (tmp_path / "full" / "probe.json").read_text()


def test_bit_decisions_are_the_signs_of_the_logits():
    logits = torch.tensor([[2.0, -1.0, 0.5], [-0.1, 3.0, -2.0]])
    bits = torch.tensor([[1.0, 0.0, 0.0], [1.0, 1.0, 0.0]])
    scores, labels = decisions(logits, bits)
    assert torch.equal(scores.argmax(dim=-1) == labels, (logits > 0) == bits.bool())
    clusters = torch.tensor([1, 0])
    assert decisions(logits, clusters)[0] is logits


def test_train_on_a_directory_of_pairs(tmp_path):
    write_pairs(tmp_path / "pairs")
    out = tmp_path / "run"
    result = invoke("train", "pretext", "--preset", "smoke", "--k", "3", "--data", tmp_path / "pairs", "--out", out)
    assert result.exit_code == 0, result.output
    probe = json.loads((out / "probe.json").read_text())
    assert probe["scenes"] <= 3 and probe["probe_train_examples"] == 9 and probe["probe_test_examples"] == 3
    (tmp_path / "pairs" / "labels.csv").unlink()
    unlabelled = tmp_path / "unlabelled"
    result = invoke("train", "pretext", "--preset", "smoke", "--k", "3", "--data", tmp_path / "pairs", "--out",
                    unlabelled)
    assert result.exit_code == 0, result.output
    assert (unlabelled / "test_metrics.json").is_file() and not (unlabelled / "probe.json").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("pretext", "--setting", "wsel"), "--setting wsel is not an option of pretext"),
        (("pretext", "--features", "wav"), "unknown features 'wav': expected one of textures, mfcc"),
        (("pretext", "--targets", "vq"), "unknown targets 'vq': expected one of cluster, bits"),
        (("pretext", "--visual-net", "resnet"), "unknown visual-net 'resnet': expected one of alexnet, small"),
        (("pretext", "--k", "0"), "--k must be a finite number >= 1"),
    ],
)
def test_refused_options(tmp_path, args, message):
    result = invoke("train", *args, "--preset", "smoke", "--out", tmp_path / "run")
    assert result.exit_code == 1 and message in result.output, result.output
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    "args",
    [
        ("dpnet", "--k", "5"), ("edrnet", "--features", "mfcc"), ("pretext", "--replicate"), ("pretext", "--lss"),
        ("pretext", "--eval-labels", "labels.h5"), ("pretext", "--visual-channels", "8"), ("pretext", "--dim", "64"),
        ("pretext", "--no-standardize"), ("pretext", "--backend", "reference"),
    ],
)
def test_options_of_other_families_are_not_options_of_the_command(tmp_path, args):
    result = invoke("train", *args, "--preset", "smoke", "--out", tmp_path / "run")
    assert result.exit_code == 2 and f"No such option: {args[1]}" in result.output, result.output
    assert not (tmp_path / "run").exists()


def test_too_many_clusters_names_the_option(tmp_path):
    result = invoke("train", "pretext", "--preset", "smoke", "--k", "60", "--out", tmp_path / "run")
    assert result.exit_code == 1 and "--k 60" in result.output and "at least 60 rows" in result.output


def test_pairs_are_read_in_name_order_with_their_labels(tmp_path):
    scenes = write_pairs(tmp_path / "pairs", count=4)
    pairs = read_pairs(tmp_path / "pairs")
    assert pairs.names == ("clip00", "clip01", "clip02", "clip03") and pairs.images.shape == (4, 3, 32, 32)
    assert pairs.images.dtype == np.float32 and 0 <= pairs.images.min() and pairs.images.max() <= 1
    assert pairs.sample_rates == (16_000,) * 4 and pairs.waveforms[0].shape == (17_600,)
    assert [pairs.label_names[label] for label in pairs.labels] == [f"scene{int(s)}" for s in scenes.labels]


@pytest.fixture
def pairs_dir(tmp_path):
    write_pairs(tmp_path / "pairs", count=4)
    return tmp_path / "pairs"


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda d: (d / "clip01.wav").unlink(), "clip01.png: no sound clip01.wav beside it"),
        (lambda d: (d / "clip02.png").unlink(), "clip02.wav: no image clip02.png beside it"),
        (lambda d: (d / "clip03.png").write_bytes(b"not a png"), "clip03.png: not a readable image"),
        (lambda d: (d / "clip03.wav").write_bytes(b"RIFF junk"), "clip03.wav: not a readable sound file"),
        (lambda d: Image.new("RGB", (40, 32)).save(d / "clip02.png"),
         "clip02.png: 40x32 pixels, but clip00.png has 32x32"),
        (lambda d: Image.new("RGB", (32, 32)).save(d / "clip02.jpg"), "a second file for 'clip02'"),
        (lambda d: (d / "labels.csv").write_text("clip00,a\nclip01,b\nclip02,a\n"), "no label for 1 pair(s)"),
        (lambda d: (d / "labels.csv").write_text("clip00,a\nclip09,b\n"), "line 2: no image/sound pair named 'clip09'"),
        (lambda d: (d / "labels.csv").write_text("clip00,a,extra\n"), "line 1: expected 'name,label'"),
        (lambda d: (d / "labels.csv").write_text("clip00,a\nclip00,b\n"), "line 2: 'clip00' is labelled twice"),
    ],
)
def test_bad_pair_directories(pairs_dir, damage, message):
    damage(pairs_dir)
    with pytest.raises(ValueError) as info:
        read_pairs(pairs_dir)
    assert message in str(info.value)


def test_missing_or_empty_pair_directory(tmp_path):
    with pytest.raises(ValueError, match="no such directory"):
        read_pairs(tmp_path / "absent")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no image files"):
        read_pairs(tmp_path / "empty")


def test_bad_pairs_through_the_command(tmp_path, pairs_dir):
    (pairs_dir / "clip01.wav").unlink()
    result = invoke("train", "pretext", "--preset", "smoke", "--data", pairs_dir, "--out", tmp_path / "run")
    assert result.exit_code == 1 and "clip01.png: no sound clip01.wav beside it" in result.output
    (pairs_dir / "clip01.png").unlink()
    (pairs_dir / "labels.csv").unlink()
    result = invoke("train", "pretext", "--preset", "smoke", "--k", "2", "--visual-net", "alexnet", "--data",
                    pairs_dir, "--out", tmp_path / "run")
    assert result.exit_code == 1 and "too small for AlexNet" in result.output
    soundfile.write(pairs_dir / "clip00.wav", np.zeros(20_000, dtype=np.float32), 16_000)
    result = invoke("train", "pretext", "--preset", "smoke", "--k", "2", "--features", "mfcc", "--data", pairs_dir,
                    "--out", tmp_path / "run")
    assert result.exit_code == 1 and "MFCC of different sizes" in result.output


def test_pair_directory_without_the_audio_extra_is_a_clean_error(tmp_path, monkeypatch):
    def missing(_):
        raise ImportError("reading image/WAV pairs needs Pillow and soundfile: pip install 'avel_fast[audio]'")

    monkeypatch.setattr(pretext_family, "read_pairs", missing)
    (tmp_path / "pairs").mkdir()
    result = invoke("train", "pretext", "--preset", "smoke", "--data", tmp_path / "pairs", "--out", tmp_path / "run")
    assert result.exit_code == 1 and "--data: reading image/WAV pairs needs Pillow" in result.output
    assert "Traceback" not in result.output and not (tmp_path / "run").exists()
