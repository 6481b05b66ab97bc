"""bench/speedup_table.py: ratios within a group against its baseline, from one results file."""
import importlib.util
import json
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "bench" / "speedup_table.py"


@pytest.fixture(scope="module")
def table():
    spec = importlib.util.spec_from_file_location("speedup_table", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def result(group, impl, median):
    return {"group": group, "name": f"test[{impl}]", "extra_info": {"impl": impl}, "stats": {"median": median}}


def test_ratios_against_the_group_baseline(table):
    results = {"benchmarks": [
        result("op/fwd", "reference", 3.0), result("op/fwd", "fast", 1.5), result("op/fwd", "compile", 2.0),
        result("op/fwd", "fast+compile", 0.5),
        result("smb", "python", 1.0), result("smb", "cpp", 0.01), result("odd", "fast", 1.0),
    ]}
    table_rows = table.speedup_rows(results)
    rows = {(group, impl): ratio for group, impl, _, _, ratio, _ in table_rows}
    over_compiled = {(group, impl): ratio for group, impl, _, _, _, ratio in table_rows}
    assert rows[("op/fwd", "fast")] == pytest.approx(2.0)
    assert rows[("op/fwd", "compile")] == pytest.approx(1.5)
    assert rows[("op/fwd", "reference")] == pytest.approx(1.0)
    assert rows[("smb", "cpp")] == pytest.approx(100.0)
    assert rows[("odd", "fast")] is None
    assert rows[("op/fwd", "fast+compile")] == pytest.approx(6.0)
    assert over_compiled[("op/fwd", "fast+compile")] == pytest.approx(4.0)
    assert over_compiled[("op/fwd", "fast")] == pytest.approx(2.0 / 1.5)
    assert over_compiled[("op/fwd", "compile")] is None and over_compiled[("op/fwd", "reference")] is None
    assert over_compiled[("odd", "fast")] is None


def test_prints_table_and_rejects_bad_file(table, tmp_path, capsys):
    path = tmp_path / "r.json"
    path.write_text(json.dumps({"benchmarks": [
        result("g", "reference", 2e-3), result("g", "fast", 1e-3), result("g", "compile", 1.5e-3),
        result("g", "fast+compile", 5e-4),
    ]}))
    assert table.main([str(path)]) == 0
    out = capsys.readouterr().out
    assert "2.00x vs reference, 1.50x vs compile" in out
    assert "fast+compile" in out and "4.00x vs reference, 3.00x vs compile" in out
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    assert table.main([str(bad)]) == 1
    assert "bad.json" in capsys.readouterr().err
