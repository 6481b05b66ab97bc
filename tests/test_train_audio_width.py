"""Audio features of any width (docs/data.md#contract): an AVE directory with 502-d sound textures in place of the
128-d VGGish embeddings trains every model, the width is recorded in config.json, and `avel-fast eval` rebuilds
the model with it."""
import dataclasses
import json

import h5py
import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from avel_fast.cli.main import app
from avel_fast.data import synthetic_ave, write_ave
from avel_fast.train import TrainingError, evaluate_run

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_thread")]
TEXTURE_WIDTH = 502


def invoke(*args):
    return CliRunner().invoke(app, [str(arg) for arg in args], env={"COLUMNS": "200"})


@pytest.fixture(scope="module")
def texture_ave(tmp_path_factory):
    """A small synthetic AVE directory whose audio is replaced by [V, 10, 502] texture-like features."""
    data = synthetic_ave(5, 60, 0)
    generator = torch.Generator().manual_seed(0)
    audio = torch.rand(len(data), 10, TEXTURE_WIDTH, generator=generator)
    audio[:, :, :8] += data.labels[:, :, None] / 10  # a little class information in the first entries
    return write_ave(dataclasses.replace(data, audio=audio), tmp_path_factory.mktemp("textures") / "ave")


@pytest.mark.parametrize("model", ["dpnet", "edrnet"])
def test_train_and_eval_with_texture_audio(tmp_path, texture_ave, model):
    out = tmp_path / "run"
    result = invoke("train", model, "--preset", "smoke", "--data", texture_ave, "--out", out)
    assert result.exit_code == 0, result.output
    assert json.loads((out / "config.json").read_text())["config"]["options"]["audio_dim"] == TEXTURE_WIDTH
    best = torch.load(out / "best.pt", weights_only=True)
    assert best["feature_stats"]["audio_mean"].shape == (TEXTURE_WIDTH,)
    assert best["config"]["options"]["audio_dim"] == TEXTURE_WIDTH
    report = json.loads((out / "test_metrics.json").read_text())
    evaluated = invoke("eval", out)
    assert evaluated.exit_code == 0, evaluated.output
    assert f"{report['metrics']['accuracy']:.4f}" in evaluated.output


def test_eval_refuses_data_of_another_width(tmp_path, texture_ave):
    out = tmp_path / "run"
    result = invoke("train", "dpnet", "--preset", "smoke", "--epochs", "1", "--data", texture_ave, "--out", out)
    assert result.exit_code == 0, result.output
    with h5py.File(texture_ave / "audio_feature.h5", "r") as file:
        narrow = file["avadataset"][:, :, :128]
    changed = tmp_path / "changed"
    changed.mkdir()
    for path in texture_ave.iterdir():
        (changed / path.name).write_bytes(path.read_bytes())
    with h5py.File(changed / "audio_feature.h5", "w") as file:
        file.create_dataset("avadataset", data=narrow.astype(np.float32))
    config = json.loads((out / "config.json").read_text())
    config["config"]["data"] = str(changed)
    (out / "config.json").write_text(json.dumps(config))
    with pytest.raises(TrainingError, match="the data has audio dim 128, but the run was trained with 502"):
        evaluate_run(out)


def test_a_run_of_the_default_width_records_it_and_refuses_other_data(tmp_path, texture_ave):
    """Without standardisation the recorded width itself is checked (`fitted_config`)."""
    out = tmp_path / "run"
    result = invoke("train", "dpnet", "--preset", "smoke", "--epochs", "1", "--no-standardize", "--out", out)
    assert result.exit_code == 0, result.output
    config = json.loads((out / "config.json").read_text())
    assert config["config"]["options"]["audio_dim"] == 128
    config["config"]["data"] = str(texture_ave)
    (out / "config.json").write_text(json.dumps(config))
    result = invoke("eval", out)
    assert result.exit_code == 1 and "the data has audio dim 502, but the run was trained with 128" in result.output
