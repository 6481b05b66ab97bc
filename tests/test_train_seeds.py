"""`avel-fast train MODEL --seeds N`: one run directory per seed, summary.json = mean and sample std of the
seeds' test metrics, `avel-fast report` on it, and an interrupted sweep resumed with --resume."""
import json
import shutil
import statistics

import pytest
from typer.testing import CliRunner

import avel_fast.train.seeds as seeds_module
from avel_fast.cli.main import app
from avel_fast.metrics import SCALAR_METRICS
from avel_fast.train import FAMILIES, TrainingError, family_of, resolve_config, train_seeds
from avel_fast.train.run_dir import read_config
from avel_fast.train.sweep import read_summary, scalar_test_metrics, seed_dir

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_thread")]
RUN_FILES = {"config.json", "metrics.jsonl", "best.pt", "last.pt", "test_metrics.json", "test_predictions.h5"}


def invoke(*args):
    return CliRunner().invoke(app, [str(arg) for arg in args], env={"COLUMNS": "200"})


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    """`avel-fast train dpnet --preset smoke --seeds 2` (seeds 0 and 1), uninterrupted; returns (OUT, output)."""
    out = tmp_path_factory.mktemp("sweep") / "out"
    result = invoke("train", "dpnet", "--preset", "smoke", "--device", "cpu", "--seeds", 2, "--out", out)
    assert result.exit_code == 0, result.output
    return out, result.output


def per_seed_values(out, seeds):
    values = []
    for seed in seeds:
        config = read_config(seed_dir(out, seed))
        report = json.loads((seed_dir(out, seed) / "test_metrics.json").read_text())
        values.append(scalar_test_metrics(report, family_of(config.model).metric_variants(config)))
    return values


def test_summary_is_the_mean_and_sample_std_of_the_seeds_test_metrics(sweep):
    out, output = sweep
    assert {path.name for path in out.iterdir()} == {"seed-0", "seed-1", "summary.json"}
    for seed in (0, 1):
        assert {path.name for path in seed_dir(out, seed).iterdir()} == RUN_FILES
        assert json.loads((seed_dir(out, seed) / "config.json").read_text())["config"]["seed"] == seed
    raw = json.loads((out / "summary.json").read_text())
    summary = read_summary(out)
    runs = per_seed_values(out, [0, 1])
    assert raw["seeds"] == [0, 1] and set(raw) == {"seeds", "best_epochs", "metrics"}
    reports = [json.loads((seed_dir(out, seed) / "test_metrics.json").read_text()) for seed in (0, 1)]
    assert raw["best_epochs"] == [report["epoch"] for report in reports]
    assert set(summary["metrics"]) == set(SCALAR_METRICS)
    for name, entry in summary["metrics"].items():
        values = [run[name] for run in runs]
        assert entry["values"] == pytest.approx(values, nan_ok=True)
        if all(value == value for value in values):
            assert entry["mean"] == pytest.approx(statistics.mean(values))
            assert entry["std"] == pytest.approx(statistics.stdev(values))  # ddof = 1
    accuracy = summary["metrics"]["accuracy"]
    assert f"{accuracy['mean']:.4f} ± {accuracy['std']:.4f}" in output and "mean ± std" in output


def test_report_of_the_sweep(sweep):
    pytest.importorskip("matplotlib")
    out, _ = sweep
    result = invoke("report", out)
    assert result.exit_code == 0, result.output
    index = out / "report" / "index.html"
    assert index.is_file() and (out / "report" / "seed-1" / "index.html").is_file()
    assert "(equal to test_metrics.json)" in (out / "report" / "seed-0" / "index.html").read_text()
    shutil.rmtree(out / "report")  # the other tests compare directory listings


def _killed_after_one_epoch(monkeypatch):
    """Make the sweep's next training run stop after one epoch and the sweep die there (a killed job)."""
    real_train = seeds_module.train

    def train_then_die(config, run_dir, **options):
        real_train(config, run_dir, max_epochs_this_run=1, **options)
        raise KeyboardInterrupt

    monkeypatch.setattr(seeds_module, "train", train_then_die)


@pytest.mark.parametrize("killed", ["between seeds", "in the first epoch of the second seed", "during the second seed"])
def test_an_interrupted_sweep_resumes_to_the_same_summary(sweep, tmp_path, monkeypatch, killed):
    out, _ = sweep
    cut = tmp_path / "cut"
    cut.mkdir()
    shutil.copytree(seed_dir(out, 0), seed_dir(cut, 0))  # what the sweep left when it finished seed 0
    if killed == "in the first epoch of the second seed":  # a run leaves its config.json alone until then
        seed_dir(cut, 1).mkdir()
        shutil.copy(seed_dir(out, 1) / "config.json", seed_dir(cut, 1))
    if killed == "during the second seed":
        _killed_after_one_epoch(monkeypatch)
        with pytest.raises(KeyboardInterrupt):
            train_seeds(resolve_config("dpnet", preset="smoke", device="cpu"), cut, 2, resume=True)
        monkeypatch.undo()
        assert (seed_dir(cut, 1) / "last.pt").is_file() and not (seed_dir(cut, 1) / "test_metrics.json").exists()
    assert not (cut / "summary.json").exists()
    result = invoke("train", "dpnet", "--resume", "--seeds", 2, "--out", cut)
    assert result.exit_code == 0, result.output
    assert "seed 0 (1/2): finished, kept" in result.output
    assert ("seed 1 (2/2): resuming" in result.output) == (killed == "during the second seed")
    assert json.loads((cut / "summary.json").read_text()) == json.loads((out / "summary.json").read_text())


def test_resume_of_a_sweep_keeps_its_config(sweep, tmp_path):
    out, _ = sweep
    cut = tmp_path / "cut"
    shutil.copytree(out, cut)
    (cut / "summary.json").unlink()
    result = invoke("train", "dpnet", "--resume", "--seeds", 2, "--out", cut, "--lr", 0.5)
    assert result.exit_code == 1 and "--lr 0.5 differs" in result.output
    stored = json.loads((seed_dir(cut, 1) / "config.json").read_text())
    stored["config"]["options"]["dim"] += 1
    (seed_dir(cut, 1) / "config.json").write_text(json.dumps(stored))
    (seed_dir(cut, 1) / "test_metrics.json").unlink()
    result = invoke("train", "dpnet", "--resume", "--seeds", 2, "--out", cut)
    assert result.exit_code == 1 and "its config differs from the sweep's (dim)" in result.output
    assert not (cut / "summary.json").exists()


def test_refusals(sweep, tmp_path):
    out, _ = sweep
    result = invoke("train", "dpnet", "--preset", "smoke", "--seeds", 2, "--out", out)
    assert result.exit_code == 1 and "exists and is not empty (pass --resume" in result.output
    result = invoke("train", "dpnet", "--resume", "--seeds", 2, "--out", tmp_path)
    assert result.exit_code == 1 and "holds no seed-<k>/ run to continue" in result.output
    result = invoke("train", "dpnet", "--preset", "smoke", "--seeds", 0, "--out", tmp_path / "none")
    assert result.exit_code == 1 and "--seeds must be at least 1, got 0" in result.output
    assert not (tmp_path / "none").exists()
    with pytest.raises(TrainingError, match="no such sweep directory"):
        train_seeds(resolve_config("dpnet", preset="smoke", device="cpu"), tmp_path / "absent", 2, resume=True)


@pytest.mark.parametrize(
    ("model", "setting"), [(model, setting) for model, family in FAMILIES.items() for setting in family.settings]
)
def test_every_family_and_setting_sweeps(tmp_path, model, setting):
    out = tmp_path / "out"
    args = ("--preset", "smoke", "--device", "cpu", "--setting", setting, "--epochs", 1, "--seed", 5)
    result = invoke("train", model, *args, "--seeds", 2, "--out", out)
    assert result.exit_code == 0, result.output
    summary = read_summary(out)
    assert summary["seeds"] == [5, 6] and summary["best_epochs"] == [1, 1]
    variants = [""]
    variants += [f"{name}/" for name in FAMILIES[model].postprocessings]
    variants += ["broadcast/"] if setting == "wsel" else []
    reported = json.loads((out / "seed-5" / "test_metrics.json").read_text())["metrics"]
    names = [name for name in SCALAR_METRICS if name in reported]  # the pretext network reports its accuracy
    assert "accuracy" in names
    assert set(summary["metrics"]) == {f"{variant}{name}" for variant in variants for name in names}
    runs = per_seed_values(out, [5, 6])
    for name, entry in summary["metrics"].items():
        assert entry["values"] == pytest.approx([run[name] for run in runs], nan_ok=True)
