"""`avel-fast data synth|states` as a new user meets them: range errors, the size and mode of what synth writes,
the states tables at terminal width (docs/cli.md#data-synth, docs/cli.md#data-states)."""
import os
import stat

import h5py
import pytest
from typer.testing import CliRunner

from avel_fast.cli.main import app
from avel_fast.data import synthetic_labels
from avel_fast.data.synthetic import NUM_BACKGROUND_VIDEOS, NUM_VIDEOS, background_videos_for

runner = CliRunner()


def assert_one_error_line(result, message):
    assert result.exit_code == 1, result.output
    assert result.output.strip() == f"error: {message}"


@pytest.mark.parametrize("command", [["data", "synth", "OUT"], ["data", "states", "--synthetic"]])
def test_too_few_videos_is_one_error_line(tmp_path, command):
    command = [str(tmp_path / "out") if arg == "OUT" else arg for arg in command]
    result = runner.invoke(app, [*command, "--videos", "2"])
    assert_one_error_line(result, "--videos must be an integer >= 3 (one per split), got 2")
    assert list(tmp_path.iterdir()) == []


def test_negative_background_videos_is_one_error_line(tmp_path):
    result = runner.invoke(app, ["data", "synth", str(tmp_path / "out"), "--videos", "3", "--background-videos", "-1"])
    assert_one_error_line(result, "--background-videos must be an integer >= 0, got -1")
    assert list(tmp_path.iterdir()) == []


def test_background_videos_scale_with_the_event_videos():
    assert background_videos_for(NUM_VIDEOS) == NUM_BACKGROUND_VIDEOS  # the full set is unchanged
    assert [background_videos_for(n) for n in (3, 60, 120, 1000)] == [1, 3, 5, 43]
    assert len(synthetic_labels(0, 60).background) == 3
    assert len(synthetic_labels(0).background) == NUM_BACKGROUND_VIDEOS


def test_synth_writes_the_background_videos_of_a_small_set_with_the_umask_mode(tmp_path):
    umask = os.umask(0o022)
    try:
        result = runner.invoke(app, ["data", "synth", str(tmp_path / "out"), "--videos", "60"])
    finally:
        os.umask(umask)
    assert result.exit_code == 0, result.output
    assert "wrote 60 videos + 3 background-only videos" in result.output
    with h5py.File(tmp_path / "out" / "audio_feature_noisy.h5", "r") as f:
        assert f["avadataset"].shape[0] == 3
    assert stat.S_IMODE((tmp_path / "out").stat().st_mode) == 0o755
    assert [path.name for path in tmp_path.iterdir()] == ["out"]


def test_states_prints_its_warning_once_and_full_width_tables(real_ave_dir):
    result = runner.invoke(app, ["data", "states", str(real_ave_dir)], env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    assert result.output.count("event of length 0 at line 27") == 1
    assert "…" not in result.output
    header = next(line for line in result.output.splitlines() if "class" in line and "BG_1" in line)
    assert header.split("┃")[2:-1] == [f" {name} " for name in (
        "BG_1", "BG_2", "START_1", "START_2", "CONTINUE_1", "CONTINUE_2", "END_1", "END_2")]
    assert "Rodents, rats, mice" in result.output
