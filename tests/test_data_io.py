"""Writer -> loader round trips, `avel-fast data synth|check`, and one test per kind of bad AVE input
(docs/data.md#validation)."""
import dataclasses
import shutil

import h5py
import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from avel_fast.cli.main import app
from avel_fast.constants import BACKGROUND
from avel_fast.data import AVEFormatError, AVEFormatWarning, load_ave, synthetic_ave, validate_ave_dir, write_ave
from avel_fast.data import writer as writer_module

FIELDS = ("audio", "visual", "labels", "video_labels")
runner = CliRunner()


def assert_same(a, b):
    for name in FIELDS:
        assert getattr(a, name).dtype == getattr(b, name).dtype, name
        assert torch.equal(getattr(a, name), getattr(b, name)), name


def h5_read(path, key="avadataset"):
    with h5py.File(path, "r") as f:
        return f[key][()]


def h5_write(path, array, key="avadataset"):
    with h5py.File(path, "w") as f:
        f.create_dataset(key, data=array)


@pytest.fixture(scope="module")
def small():
    return synthetic_ave(seed=7, num_videos=12, num_background_videos=3)


@pytest.fixture(scope="module")
def template(small, tmp_path_factory):
    return write_ave(small, tmp_path_factory.mktemp("ave") / "small")


@pytest.fixture
def ave_dir(template, tmp_path):
    return shutil.copytree(template, tmp_path / "ave")


def test_write_then_load_bit_for_bit(small, template):
    loaded = load_ave(template, setting="wsel")
    assert_same(small, loaded)
    assert_same(small.background, loaded.background)
    assert loaded.splits.keys() == small.splits.keys()
    assert all(torch.equal(loaded.splits[name], small.splits[name]) for name in small.splits)
    assert loaded.class_names == small.class_names
    assert load_ave(template).background is None
    pooled = load_ave(template, pooled_visual=True)
    assert torch.equal(pooled.visual, small.visual.mean(dim=(2, 3)))


def test_float16_maps_round_trip(small, tmp_path):
    half = synthetic_ave(seed=7, num_videos=12, num_background_videos=3, visual_dtype=torch.float16)
    write_ave(half, tmp_path / "half")
    assert h5_read(tmp_path / "half" / "visual_feature.h5").dtype == np.float16
    assert_same(half, load_ave(tmp_path / "half", visual_dtype=torch.float16))
    assert torch.equal(load_ave(tmp_path / "half").visual, small.visual.half().float())


def test_cli_synth_check_load_round_trip(tmp_path):
    out = tmp_path / "synth"
    arguments = ["data", "synth", str(out), "--videos", "40", "--background-videos", "4", "--seed", "3"]
    result = runner.invoke(app, arguments)
    assert result.exit_code == 0, result.output
    check = runner.invoke(app, ["data", "check", str(out)])
    assert check.exit_code == 0, check.output
    assert "OK 13 checks passed, 0 warnings, 0 errors" in check.output
    expected = synthetic_ave(seed=3, num_videos=40, num_background_videos=4)
    loaded = load_ave(out, setting="wsel")
    assert_same(expected, loaded)
    assert_same(expected.background, loaded.background)
    refused = runner.invoke(app, ["data", "synth", str(out), "--videos", "40"])
    assert refused.exit_code == 1 and "not empty" in refused.output
    forced = runner.invoke(app, ["data", "synth", str(out), "--videos", "20", "--background-videos", "0", "--force"])
    assert forced.exit_code == 0, forced.output
    assert len(load_ave(out)) == 20 and not (out / "labels_noisy.h5").exists()


def test_writer_is_atomic(small, tmp_path, monkeypatch):
    def fail(*args):
        raise RuntimeError("disk full")

    monkeypatch.setattr(writer_module, "_write_labels", fail)
    with pytest.raises(RuntimeError, match="disk full"):
        write_ave(small, tmp_path / "out")
    assert list(tmp_path.iterdir()) == []


def test_writer_rejects_pooled_and_non_empty(small, template):
    with pytest.raises(ValueError, match="pooled"):
        write_ave(small.pooled(), template.parent / "pooled")
    with pytest.raises(FileExistsError, match="not empty"):
        write_ave(small, template)


def test_labels_rebuilt_from_annotations(small, ave_dir):
    (ave_dir / "labels.h5").unlink()
    with pytest.warns(AVEFormatWarning, match="rebuilt from Annotations.txt"):
        loaded = load_ave(ave_dir)
    assert torch.equal(loaded.labels, small.labels)


def test_corrected_labels(small, ave_dir):
    corrected = small.labels.clone()
    video = int(torch.nonzero((corrected != BACKGROUND).all(dim=1))[0])
    corrected[video, 0] = BACKGROUND
    h5_write(ave_dir / "right_label.h5", np.eye(29, dtype=np.float32)[corrected.numpy()])
    assert torch.equal(load_ave(ave_dir, corrected_labels=True).labels, corrected)
    assert torch.equal(load_ave(ave_dir).labels, small.labels)


def test_corrected_labels_missing(ave_dir):
    with pytest.raises(AVEFormatError, match="right_labels.h5 .*file not found"):
        load_ave(ave_dir, corrected_labels=True)


def test_bad_setting(ave_dir):
    with pytest.raises(ValueError, match="setting='weak'"):
        load_ave(ave_dir, setting="weak")


def test_zero_length_event_is_a_warning(small, ave_dir):
    labels = small.labels.clone()
    labels[4] = BACKGROUND  # video 4 keeps its class in mil_labels.h5: an event of length 0
    h5_write(ave_dir / "labels.h5", np.eye(29, dtype=np.float32)[labels.numpy()])
    with pytest.warns(AVEFormatWarning, match="video 4: event of length 0"):
        loaded = load_ave(ave_dir)
    assert (loaded.labels[4] == BACKGROUND).all() and loaded.video_labels[4, BACKGROUND] == 0
    report = validate_ave_dir(ave_dir)
    assert report.ok and any("video 4: event of length 0" in w for w in report.warnings)
    assert runner.invoke(app, ["data", "check", str(ave_dir)]).exit_code == 0


def expect_bad(ave_dir, file, dataset, problem, *, setting="sel"):
    """The loader raises an AVEFormatError naming file, dataset and problem; `data check` reports it and exits 1."""
    with pytest.raises(AVEFormatError) as info:
        load_ave(ave_dir, setting=setting)
    err = info.value
    assert err.file == str(ave_dir / file) and err.dataset == dataset and problem in err.problem, str(err)
    assert str(err) == f"{ave_dir / file}{f' [{dataset}]' if dataset else ''}: {err.problem}"
    result = runner.invoke(app, ["data", "check", str(ave_dir)])
    assert result.exit_code == 1
    assert f"error: {err}" in result.output.replace("\n", "")


def test_missing_file(ave_dir):
    (ave_dir / "visual_feature.h5").unlink()
    expect_bad(ave_dir, "visual_feature.h5", "avadataset", "file not found")


def test_missing_background_file_in_weak_setting(ave_dir):
    (ave_dir / "labels_noisy.h5").unlink()
    assert len(load_ave(ave_dir)) == 12
    expect_bad(ave_dir, "labels_noisy.h5", "avadataset", "file not found", setting="wsel")


def test_wrong_shape(ave_dir):
    h5_write(ave_dir / "audio_feature.h5", np.zeros((12, 9, 128), dtype=np.float32))
    expect_bad(ave_dir, "audio_feature.h5", "avadataset", "shape (12, 9, 128), expected audio features (V, 10, D)")


def test_zero_width_audio(ave_dir):
    h5_write(ave_dir / "audio_feature.h5", np.zeros((12, 10, 0), dtype=np.float32))
    expect_bad(ave_dir, "audio_feature.h5", "avadataset", "shape (12, 10, 0), expected audio features (V, 10, D)")


def test_audio_of_any_width_round_trips(small, tmp_path):
    """Sound textures [V, 10, 502] in place of VGGish: the width is read from the file, background included."""
    generator = torch.Generator().manual_seed(0)
    background = dataclasses.replace(small.background, audio=torch.randn(3, 10, 502, generator=generator))
    wide = dataclasses.replace(small, audio=torch.randn(12, 10, 502, generator=generator), background=background)
    loaded = load_ave(write_ave(wide, tmp_path / "wide"), setting="wsel")
    assert_same(wide, loaded)
    assert loaded.audio_dim == loaded.background.audio_dim == 502


def test_background_audio_of_another_width(ave_dir):
    h5_write(ave_dir / "audio_feature_noisy.h5", np.zeros((3, 10, 502), dtype=np.float32))
    expect_bad(ave_dir, "audio_feature_noisy.h5", "avadataset",
               "shape (3, 10, 502), expected audio features (V, 10, 128)", setting="wsel")


def test_video_count_mismatch(ave_dir):
    h5_write(ave_dir / "mil_labels.h5", h5_read(ave_dir / "mil_labels.h5")[:11])
    expect_bad(ave_dir, "mil_labels.h5", "avadataset", "11 videos, but the other files hold 12")


def test_wrong_dtype(ave_dir):
    h5_write(ave_dir / "audio_feature.h5", np.ones((12, 10, 128), dtype=np.int32))
    expect_bad(ave_dir, "audio_feature.h5", "avadataset", "dtype int32, expected a floating type")


def test_big_endian_features_load_like_native_ones(small, ave_dir):
    for name in ("audio_feature.h5", "visual_feature.h5"):
        h5_write(ave_dir / name, h5_read(ave_dir / name).astype(">f4"))
    assert_same(small, load_ave(ave_dir))


def test_non_finite_features(ave_dir):
    with h5py.File(ave_dir / "visual_feature.h5", "r+") as f:
        f["avadataset"][5, 3, 0, 0, 0] = np.nan
    problem = "non-finite values (NaN or inf), first in video 5, segment 3"
    expect_bad(ave_dir, "visual_feature.h5", "avadataset", problem)


def test_split_index_out_of_range(ave_dir):
    order = h5_read(ave_dir / "train_order.h5", "order")
    order[0] = 12
    h5_write(ave_dir / "train_order.h5", order, "order")
    expect_bad(ave_dir, "train_order.h5", "order", "1 indices outside 0..11 (e.g. 12)")


def test_split_index_repeated_across_splits(ave_dir):
    val = h5_read(ave_dir / "val_order.h5", "order")
    test = h5_read(ave_dir / "test_order.h5", "order")
    h5_write(ave_dir / "test_order.h5", np.append(test, val[0]), "order")
    expect_bad(ave_dir, "test_order.h5", "order", f"index {val[0]} is also in val_order.h5")


def test_label_rows_not_one_hot(ave_dir):
    onehot = h5_read(ave_dir / "labels.h5")
    onehot[2, 7, 3] = 1.0 - onehot[2, 7, 3]
    h5_write(ave_dir / "labels.h5", onehot)
    expect_bad(ave_dir, "labels.h5", "avadataset", "1 label rows are not one-hot (first: video 2, segment 7")


def test_video_labels_inconsistent_with_segments(small, ave_dir):
    video_labels = h5_read(ave_dir / "mil_labels.h5")
    event_class = int(small.labels[6].min())
    video_labels[6] = 0.0
    video_labels[6, (event_class + 1) % 28] = 1.0
    h5_write(ave_dir / "mil_labels.h5", video_labels)
    expect_bad(
        ave_dir, "mil_labels.h5", "avadataset",
        f"1 videos have event segments of a class their video label lacks (first: video 6, class {event_class}",
    )


def test_background_video_with_event_class(ave_dir):
    video_labels = h5_read(ave_dir / "labels_noisy.h5")
    video_labels[1, 5] = 1.0
    h5_write(ave_dir / "labels_noisy.h5", video_labels)
    problem = "background-only video 1 has an event class set"
    expect_bad(ave_dir, "labels_noisy.h5", "avadataset", problem, setting="wsel")
