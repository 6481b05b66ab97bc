"""A run directory written before the options moved into the families (a flat ``config.json``, checkpoints holding
that flat config) still evaluates, reports and resumes. The fixture is the ``config.json`` of such a DPNet smoke
run; its checkpoints are made here by today's code (same weights) and given the flat config."""
import json
import shutil
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from avel_fast.cli.main import app
from avel_fast.train import TrainConfig, train
from avel_fast.train.run_dir import read_config

FIXTURES = Path(__file__).parent / "fixtures"
pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_thread")]


def invoke(*args):
    return CliRunner().invoke(app, [str(arg) for arg in args], env={"COLUMNS": "200"})


@pytest.fixture
def old_run(tmp_path):
    """A DPNet smoke run of the flat format, stopped after its first epoch."""
    stored = json.loads((FIXTURES / "config-dpnet-flat.json").read_text())
    run = tmp_path / "old"
    assert train(TrainConfig.from_dict(stored["config"]), run, max_epochs_this_run=1) is None
    (run / "config.json").write_text(json.dumps(stored))
    for name in ("best.pt", "last.pt"):
        checkpoint = torch.load(run / name, weights_only=True)
        torch.save({**checkpoint, "config": stored["config"]}, run / name)
    return run


def test_an_old_run_resumes_evaluates_and_reports(old_run, tmp_path):
    config = read_config(old_run)
    assert config.model == "dpnet" and config.options.replicate and config.options.link
    whole = train(config, tmp_path / "whole")
    resumed = invoke("train", "dpnet", "--resume", "--out", old_run)
    assert resumed.exit_code == 0, resumed.output
    report = json.loads((old_run / "test_metrics.json").read_text())
    assert report == json.loads((tmp_path / "whole" / "test_metrics.json").read_text())
    assert report["metrics"]["accuracy"] == whole["metrics"]["accuracy"]
    evaluated = invoke("eval", old_run)
    assert evaluated.exit_code == 0, evaluated.output
    assert f"{report['metrics']['accuracy']:.4f}" in evaluated.output
    pytest.importorskip("matplotlib")
    reported = invoke("report", old_run)
    assert reported.exit_code == 0, reported.output
    assert (old_run / "report" / "index.html").is_file()


def test_an_old_refinement_run_is_read_with_the_options_of_its_family(tmp_path):
    run = tmp_path / "ave"
    run.mkdir()
    shutil.copy(FIXTURES / "config-ave-flat.json", run / "config.json")
    config = read_config(run)
    assert (config.model, config.setting) == ("ave", "wsel")
    assert (config.options.refine, config.options.step1_epochs) == ("a+lr", 1)
    assert not hasattr(config.options, "dim") and not hasattr(config.options, "replicate")
