"""Ablation grids, the report built from `dvc exp show --json`, and the metrics comparison."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from pipeline.cli import main
from tg_dfer.ablations import (TABLES, apply_overrides, changed_overrides, collect_runs, fill_table,
                               override_arguments, plot_table, render_markdown)
from tg_dfer.compare import compare_numbers

REPO = Path(__file__).resolve().parents[1]
PARAMS = yaml.safe_load((REPO / "params.yaml").read_text())


def test_every_override_names_an_existing_param_and_names_are_unique():
    names = [setting.name for table in TABLES.values() for setting in table.settings]
    assert len(names) == len(set(names))
    for table in TABLES.values():
        for setting in table.settings:
            changed = apply_overrides(PARAMS, setting.overrides)
            assert changed != PARAMS or not changed_overrides(PARAMS, setting)
            assert len(setting.cells) == len(table.columns)
    assert len(TABLES[3].settings) == 12  # text prompt x context x visual prompt


def test_the_ablation_docs_list_every_experiment():
    docs = (REPO / "docs" / "ablations.md").read_text()
    for table in TABLES.values():
        assert f"### Table {table.number}: {table.title}" in docs
        for setting in table.settings:
            assert f"`{setting.name}`" in docs, setting.name


def test_overrides_refuse_unknown_keys_and_spell_values_for_dvc():
    with pytest.raises(KeyError, match="train.model.windw"):
        apply_overrides(PARAMS, {"train.model.windw": 2})
    assert override_arguments({"train.model.learnable_context": False, "evaluate.frames_k": 2}) == [
        "-S", "train.model.learnable_context=false", "-S", "evaluate.frames_k=2"]
    default = TABLES[4].setting("t4-fine1-coarse1")
    assert changed_overrides(PARAMS, default) == {}  # the committed params are this setting


def record(name, rev, params, uar, timestamp, random_weights=True):
    metrics = {f"metrics/{params['dataset']['name']}/metrics.json": {
        "data": {"uar": uar, "war": uar + 1, "uar_std": 1.5, "war_std": 0.5, "random_clip_weights": random_weights}}}
    return {"rev": rev, "name": name, "data": {"rev": rev, "timestamp": timestamp,
                                               "params": {"params.yaml": {"data": params}}, "metrics": metrics},
            "error": None, "experiments": None}


def exp_show(experiments):
    """The shape of `dvc exp show --json` (DVC 3): workspace, then the commit with its experiments."""
    baseline = record("main", "a" * 40, PARAMS, 30.0, "2026-11-01T10:00:00")
    baseline["experiments"] = [{"revs": [record(name, str(i) * 40, apply_overrides(PARAMS, overrides), uar,
                                                f"2026-11-01T11:0{i}:00")],
                                "executor": None, "name": name}
                               for i, (name, overrides, uar) in enumerate(experiments)]
    workspace = record(None, "workspace", PARAMS, 99.0, None)
    workspace["rev"] = "workspace"
    return [workspace, baseline]


def test_report_fills_each_setting_from_the_run_with_exactly_its_params(tmp_path):
    table6 = TABLES[6]
    shown = exp_show([
        ("t6-highest1", table6.setting("t6-highest1").overrides, 20.0),
        ("t6-lowest1", table6.setting("t6-lowest1").overrides, 10.0),
        # also changes the window: it belongs to no Table 6 setting
        ("stray", {"evaluate.frames": "highest", "evaluate.frames_k": 2, "train.model.window": 2}, 77.0),
    ])
    [(baseline, experiments)] = collect_runs(shown)
    assert baseline.name == "main" and [run.name for run in experiments] == ["t6-highest1", "t6-lowest1", "stray"]
    rows = {row.setting.name: row for row in fill_table(table6, baseline, experiments)}
    assert rows["t6-all"].run.is_baseline and rows["t6-all"].metrics["uar"] == 30.0
    assert rows["t6-highest1"].metrics["uar"] == 20.0 and rows["t6-lowest1"].metrics["uar"] == 10.0
    assert rows["t6-highest2"].run is None  # "stray" has another window
    text = render_markdown([table6], {6: list(rows.values())}, baseline, {6: "table6.png"})
    lines = text.splitlines()
    assert "| frames | k | UAR | WAR | paper UAR | paper WAR | experiment |" in lines
    assert "| highest | 1 | 20.00 ± 1.50 | 21.00 ± 0.50 | n/a | n/a | `t6-highest1` |" in lines
    assert "| highest | 2 | not run | not run | n/a | n/a | — |" in lines
    assert "Random CLIP weights" in text and "![Table 6](table6.png)" in text
    assert plot_table(table6, list(rows.values()), str(tmp_path / "t6.png"))
    assert (tmp_path / "t6.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not plot_table(TABLES[3], fill_table(TABLES[3], baseline, experiments), str(tmp_path / "t3.png"))


def test_report_command_reads_saved_exp_show_json(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    saved = tmp_path / "exp.json"
    saved.write_text(json.dumps(exp_show([("t5-window2-stride1", {"train.model.window": 2}, 25.0)])))
    result = CliRunner().invoke(main, ["report", "--exp-json", str(saved), "--table", "5"])
    assert result.exit_code == 0, result.output
    report = (tmp_path / "report" / "demo" / "ablations.md").read_text()
    assert "## Table 5" in report and "| 2 | 1 | 25.00 ± 1.50" in report and "| 4 | 1 | 30.00 ± 1.50" in report
    assert (tmp_path / "report" / "demo" / "table5.png").is_file()
    assert "2 of 8 settings have results" in result.output
    saved.write_text("{not json")
    result = CliRunner().invoke(main, ["report", "--exp-json", str(saved)])
    assert result.exit_code != 0 and "exp.json: not valid JSON" in result.output


def test_compare_numbers_flags_what_moved_beyond_the_tolerance():
    reference = {"uar": 40.0, "war": 50.0, "folds": {"1": {"uar": 40.0}}, "weights": "best", "extra": 1}
    same = json.loads(json.dumps(reference))
    rows, problems = compare_numbers(reference, same, 0.0)
    assert problems == [] and ("uar", 40.0, 40.0, 0.0) in rows
    moved = dict(reference, war=50.4, folds={"1": {"uar": 41.0}}, weights="last")
    del moved["extra"]
    moved["new"] = 2
    _, problems = compare_numbers(reference, moved, 0.5)
    assert problems == ["extra: missing from the reproduced file", "folds.1.uar: 40.0 -> 41.0 (+1.0000)",
                        "new: not in the reference", "weights: 'best' -> 'last'"]
    _, problems = compare_numbers({"uar": 1.0}, {"uar": float("nan")}, 5.0)
    assert problems and problems[0].startswith("uar")


def test_check_metrics_command_against_a_reference_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    reference, current = tmp_path / "ref", tmp_path / "now"
    reference.mkdir()
    current.mkdir()
    (reference / "metrics.json").write_text(json.dumps({"uar": 40.0, "war": 50.0}))
    (current / "metrics.json").write_text(json.dumps({"uar": 40.3, "war": 50.0}))
    result = CliRunner().invoke(main, ["check-metrics", str(current / "metrics.json"), "--reference", str(reference)])
    assert result.exit_code == 0, result.output
    assert "uar" in result.output and "40.0000" in result.output and "40.3000" in result.output
    result = CliRunner().invoke(main, ["check-metrics", str(current / "metrics.json"), "--reference", str(reference),
                                       "--tolerance", "0.1"])
    assert result.exit_code == 1 and "DIFFERS: uar: 40.0 -> 40.3" in result.output
    result = CliRunner().invoke(main, ["check-metrics", str(tmp_path / "absent.json"), "--reference", str(reference)])
    assert result.exit_code != 0 and "absent.json: not found" in result.output


def test_parallel_queue_workers_share_the_cores(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr("os.cpu_count", lambda: 8)
    dry_run = ["ablate", "6", "--dry-run", "--params", str(REPO / "params.yaml")]
    result = CliRunner().invoke(main, [*dry_run, "-j", "4"])
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[-1] == "OMP_NUM_THREADS=2 dvc queue start -j 4"
    assert CliRunner().invoke(main, [*dry_run, "-j", "1"]).output.splitlines()[-1] == "dvc queue start -j 1"
    monkeypatch.setenv("OMP_NUM_THREADS", "3")  # the user's choice stands
    assert CliRunner().invoke(main, [*dry_run, "-j", "4"]).output.splitlines()[-1] == "dvc queue start -j 4"
