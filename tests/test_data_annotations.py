"""Labels rebuilt from the real `Annotations.txt` agree with the released h5 label files (docs/data.md#files)."""
import h5py
import numpy as np
import pytest

from avel_fast.constants import BACKGROUND, CLASS_NAMES
from avel_fast.data import (
    AVEFormatError, AVEFormatWarning, read_annotations, read_split, split_labels, validate_ave_dir,
)

ZERO_LENGTH_VIDEO = 26  # line 27 of the real file: "Church bell&VWi2ENBuTbw&good&0&0"


def _h5(path):
    with h5py.File(path, "r") as f:
        return f["avadataset"][()]


@pytest.fixture(scope="module")
def real_labels(real_ave_dir):
    with pytest.warns(AVEFormatWarning, match="line 27"):
        return read_annotations(real_ave_dir / "Annotations.txt")


def test_class_order_is_first_appearance(real_labels):
    labels, names = real_labels
    assert labels.shape == (4143, 10) and labels.dtype == np.int64
    assert tuple(names) == CLASS_NAMES


def test_agrees_with_labels_closs(real_labels, real_ave_dir):
    labels, _ = real_labels
    closs = _h5(real_ave_dir / "labels_closs.h5")
    np.testing.assert_array_equal(labels != BACKGROUND, closs == 1)


def test_agrees_with_mil_labels(real_labels, real_ave_dir):
    labels, _ = real_labels
    mil = _h5(real_ave_dir / "mil_labels.h5")
    assert mil.shape == (4143, 29)
    event_class = labels.min(axis=1)  # one event per video; background (28) is the largest index
    has_event = event_class != BACKGROUND
    assert has_event.sum() == 4142
    np.testing.assert_array_equal(mil.argmax(axis=1)[has_event], event_class[has_event])
    np.testing.assert_array_equal(mil.sum(axis=1), np.ones(4143))
    assert mil[ZERO_LENGTH_VIDEO, 0] == 1  # the video keeps its class at video level
    assert (labels[ZERO_LENGTH_VIDEO] == BACKGROUND).all()


def test_zero_length_event_is_a_warning_not_an_error(real_ave_dir):
    with pytest.warns(AVEFormatWarning) as record:
        read_annotations(real_ave_dir / "Annotations.txt")
    messages = [str(w.message) for w in record]
    assert len(messages) == 1 and "line 27 (video 26, 'Church bell')" in messages[0]


def test_splits_partition_all_videos(real_ave_dir):
    splits = [read_split(real_ave_dir / f"{name}_order.h5", num_videos=4143) for name in ("train", "val", "test")]
    assert [s.size for s in splits] == [3339, 402, 402]
    assert all(s.dtype == np.int64 for s in splits)
    np.testing.assert_array_equal(np.sort(np.concatenate(splits)), np.arange(4143))


def test_header_line_is_tolerated(tmp_path):
    path = tmp_path / "Annotations.txt"
    path.write_text("Category&VideoID&Quality&StartTime&EndTime\nBark&a&good&2&5\nCat&b&good&0&10\nBark&c&good&9&10\n")
    labels, names = read_annotations(path)
    assert names == list(CLASS_NAMES)  # AVE categories keep their AVE indices, as in load_ave
    bark, cat = CLASS_NAMES.index("Bark"), CLASS_NAMES.index("Cat")
    np.testing.assert_array_equal(
        labels,
        [[28, 28, bark, bark, bark, 28, 28, 28, 28, 28], [cat] * 10, [28] * 9 + [bark]],
    )


def test_classes_outside_ave_keep_their_order_of_appearance(tmp_path):
    path = tmp_path / "Annotations.txt"
    path.write_text("Kazoo&a&good&0&10\nBark&b&good&0&10\n")
    labels, names = read_annotations(path)
    assert names == ["Kazoo", "Bark"] and labels[:, 0].tolist() == [0, 1]


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ("Bark&a&good&5&3", "not within"), ("Bark&a&good&2", "expected 5"), ("Bark&a&good&x&3", "not integers"),
        ("Bark&a&good&--3&4", "not integers"), ("Bark&a&good&²&4", "not integers"),
    ],
)
def test_malformed_line_names_the_line(tmp_path, line, problem):
    path = tmp_path / "Annotations.txt"
    path.write_text(f"Cat&b&good&0&10\n{line}\n")
    with pytest.raises(AVEFormatError, match=problem) as info:
        read_annotations(path)
    assert info.value.file == str(path) and info.value.dataset == "line 2"


def test_a_malformed_first_line_is_not_taken_for_a_header(tmp_path):
    path = tmp_path / "Annotations.txt"
    path.write_text("Cat&b&good&x&5\nBark&a&good&2&5\n")
    with pytest.raises(AVEFormatError, match="not integers") as info:
        read_annotations(path)
    assert info.value.dataset == "line 1"


def test_real_directory_report(real_ave_dir):
    report = validate_ave_dir(real_ave_dir)
    assert any(w.startswith("video 26: event of length 0") and "line 27" in w for w in report.warnings)
    missing = sorted(e.file.rsplit("/", 1)[-1] for e in report.errors if e.problem == "file not found")
    assert missing == ["audio_feature.h5", "visual_feature.h5", "visual_feature_noisy.h5"]  # not in ../shared
    assert len(report.errors) == 3
    assert ("mil_labels.h5", "consistent with Annotations.txt") in report.checks


@pytest.mark.filterwarnings("ignore::avel_fast.data.AVEFormatWarning")  # the zero-length event
def test_split_labels_of_the_real_directory(real_ave_dir):
    labels, _ = read_annotations(real_ave_dir / "Annotations.txt")
    test = split_labels(real_ave_dir, "test")
    np.testing.assert_array_equal(test, labels[read_split(real_ave_dir / "test_order.h5")])
    assert split_labels(real_ave_dir).shape == (3339, 10)
    with pytest.raises(ValueError, match="unknown split 'dev'"):
        split_labels(real_ave_dir, "dev")


def test_a_missing_file_is_named_without_an_empty_dataset(tmp_path):
    with pytest.raises(AVEFormatError) as info:
        read_annotations(tmp_path / "Annotations.txt")
    assert str(info.value) == f"{tmp_path / 'Annotations.txt'}: file not found"
