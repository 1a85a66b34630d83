"""The paper's tables: the data file, the ablation grids, the report built from `dvc exp show --json`,
and the metrics comparison."""

from __future__ import annotations

import json
import re

import click
import pytest
import yaml
from click.testing import CliRunner

from pipeline.cli import main
from pipeline.settings.train import model_config, train_settings
from pipeline.tools.ablations import apply_overrides, build_tables, changed_overrides, override_arguments
from pipeline.tools.experiments import collect_runs, fill_table
from pipeline.tools.report import comparison_tables, render_markdown
from tg_dfer import paper
from tg_dfer.compare import band_check, compare_numbers
from tg_dfer.evaluate import EvaluateConfig

from helpers import REPO

PARAMS = yaml.safe_load((REPO / "params.yaml").read_text())
SHARED_TABLES = REPO.parent / "shared" / "paper" / "tables.json"
TABLES = build_tables("stride")


@pytest.mark.skipif(not SHARED_TABLES.is_file(), reason="../shared/paper/tables.json is not beside the repository")
def test_the_data_file_holds_every_row_of_the_shared_transcription():
    shared = json.loads(SHARED_TABLES.read_text())
    ours = paper.load_tables()
    table_keys = [key for key in shared if key.startswith("table")]
    assert table_keys and all(ours[key] == shared[key] for key in table_keys)
    assert ours["classes"] == shared["classes"] and ours["defaults"] == shared["defaults"]
    assert "2511.10958" in ours["source"]


def test_the_grids_are_the_paper_s_rows_in_its_order():
    model = "train.model."
    for number, table in TABLES.items():
        rows = paper.ablation(number)
        assert [setting.paper for setting in table.settings] == [row.published for row in rows]
        assert [setting.letter for setting in table.settings] == [row.letter for row in rows]
        for setting, row in zip(table.settings, rows):
            assert len(setting.cells) == len(table.columns)
            if setting.letter:
                assert setting.name.startswith(f"t{number}{setting.letter}-")
            values = setting.overrides
            if number == 3:
                assert (values[model + "fine_depth"], values[model + "coarse_depth"]) == (
                    row.setting["fine_depth"], row.setting["coarse_depth"])
            elif number == 4:  # the stride reading: X = no overlap, s = w
                assert values[model + "window"] == row.setting["window"]
                assert values[model + "stride"] == (row.setting["stride"] or row.setting["window"])
            elif number == 5:
                assert {key[len(model):]: value for key, value in values.items()} == row.setting
            else:
                assert values == {"evaluate.frames": row.setting["influence"], "evaluate.frames_k": row.setting["frames"]}
    assert [TABLES[3].settings[i].cells for i in (0, 4)] == [("X", "X"), ("1", "1")] and TABLES[3].settings[4].letter == "e"
    assert [s.cells for s in TABLES[4].settings][:2] == [("X", "2"), ("X", "4")]
    assert TABLES[5].settings[7].cells == ("[Learnable] Class", "Add") and TABLES[5].settings[0].cells[1] == "X"
    names = [setting.name for table in TABLES.values() for setting in table.settings]
    assert len(names) == len(set(names))


def test_table4_overlap_reading_takes_the_column_as_the_overlap():
    overlap = build_tables("overlap")[4]
    strides = [(s.overrides["train.model.stride"], s.overrides["train.model.window"]) for s in overlap.settings]
    assert strides == [(2, 2), (4, 4), (8, 8), (1, 2), (3, 4), (7, 8), (2, 4), (6, 8), (1, 4)]
    assert overlap.settings[4].name == "t4-overlap1-window4" and "overlap" in overlap.note
    with pytest.raises(ValueError, match="stride, overlap"):
        build_tables("both")


@pytest.mark.parametrize("reading", ["stride", "overlap"])
def test_every_row_is_a_valid_configuration(reading):
    for table in build_tables(reading).values():
        for setting in table.settings:
            params = apply_overrides(PARAMS, setting.overrides)
            try:
                # the checks the train stage runs, with ViT-B/32's embedding size and DFEW's 7 classes
                model_config(train_settings(params), 512, 7)
            except click.ClickException as error:
                pytest.fail(f"{setting.name}: {error.message}")
            EvaluateConfig(**params["evaluate"])


def test_the_baseline_rows_are_the_committed_params():
    baselines = {number: [s.name for s in table.settings if not changed_overrides(PARAMS, s)]
                 for number, table in TABLES.items()}
    assert baselines == {3: ["t3e-fine1-coarse1"], 4: ["t4-stride1-window4"], 5: ["t5h-class-learnable-add"], 6: []}


@pytest.mark.parametrize("number", [3, 4, 5, 6])
def test_dry_run_prints_the_paper_s_rows_minus_the_baseline_in_order(number):
    result = CliRunner().invoke(main, ["ablate", str(number), "--dry-run", "--params", str(REPO / "params.yaml")])
    assert result.exit_code == 0, result.output
    queued = [line for line in result.output.splitlines() if line.startswith("dvc exp run")]
    expected = [setting for setting in TABLES[number].settings if changed_overrides(PARAMS, setting)]
    assert len(queued) == len(expected) == len(TABLES[number].settings) - (number != 6)
    for line, setting in zip(queued, expected):
        assert line == "dvc exp run --queue -n " + " ".join([setting.name, *override_arguments(
            changed_overrides(PARAMS, setting))])


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


def record(name, rev, params, uar, timestamp, random_weights=True, per_class=None):
    metrics = {f"metrics/{params['dataset']['name']}/metrics.json": {
        "data": {"uar": uar, "war": uar + 1, "uar_std": 1.5, "war_std": 0.5, "random_clip_weights": random_weights,
                 "per_class": per_class or {}}}}
    return {"rev": rev, "name": name, "data": {"rev": rev, "timestamp": timestamp,
                                               "params": {"params.yaml": {"data": params}}, "metrics": metrics},
            "error": None, "experiments": None}


def exp_show(experiments, params=PARAMS, per_class=None):
    """The shape of `dvc exp show --json` (DVC 3): workspace, then the commit with its experiments."""
    baseline = record("main", "a" * 40, params, 30.0, "2026-11-01T10:00:00", per_class=per_class)
    baseline["experiments"] = [{"revs": [record(name, str(i) * 40, apply_overrides(params, overrides), uar,
                                                f"2026-11-01T11:0{i}:00")],
                                "executor": None, "name": name}
                               for i, (name, overrides, uar) in enumerate(experiments)]
    workspace = record(None, "workspace", params, 99.0, None)
    workspace["rev"] = "workspace"
    return [workspace, baseline]


def table_line(text: str, *cells: str) -> str:
    """The Markdown row of ``text`` that starts with ``cells``."""
    start = "| " + " | ".join(cells) + " |"
    return next(line for line in text.splitlines() if line.startswith(start))


def test_report_fills_each_row_from_the_run_with_exactly_its_params_beside_the_paper():
    table6, table3 = TABLES[6], TABLES[3]
    shown = exp_show([
        ("t6-highest1", table6.setting("t6-highest1").overrides, 20.0),
        ("t6-lowest1", table6.setting("t6-lowest1").overrides, 10.0),
        # also changes the window: it belongs to no Table 6 row
        ("stray", {"evaluate.frames": "highest", "evaluate.frames_k": 2, "train.model.window": 2}, 77.0),
        ("t3a-fine0-coarse0", table3.setting("t3a-fine0-coarse0").overrides, 12.5),
    ])
    [(baseline, experiments)] = collect_runs(shown)
    assert baseline.name == "main" and [run.name for run in experiments][:3] == ["t6-highest1", "t6-lowest1", "stray"]
    rows6 = fill_table(table6, baseline, experiments)
    rows3 = fill_table(table3, baseline, experiments)
    assert [row.run.name if row.run else None for row in rows6] == ["t6-highest1", None, None, "t6-lowest1", None, None]
    assert rows3[4].run.is_baseline and rows3[0].metrics["uar"] == 12.5
    text = render_markdown([table3, table6], {3: rows3, 6: rows6}, baseline, {6: "table6.png"},
                           comparison_tables(baseline))
    assert table_line(text, "setting", "fine-grained", "coarse-grained") == (
        "| setting | fine-grained | coarse-grained | UAR | WAR | paper UAR | paper WAR | Δ UAR | Δ WAR | experiment |")
    assert table_line(text, "a", "X", "X") == (
        "| a | X | X | 12.50 ± 1.50 | 13.50 ± 0.50 | 57.66 | 69.14 | -45.16 | -55.64 | `t3a-fine0-coarse0` |")
    assert table_line(text, "e", "1", "1").endswith("| 60.17 | 71.62 | -30.17 | -40.62 | `main` (baseline) |")
    assert table_line(text, "l", "7", "7") == "| l | 7 | 7 | not run | not run | 59.29 | 70.92 |  |  | not run |"
    assert table_line(text, "Highest", "1") == (
        "| Highest | 1 | 20.00 ± 1.50 | 21.00 ± 0.50 | 59.97 | 71.12 | -39.97 | -50.12 | `t6-highest1` |")
    assert "All frames (the baseline `main`): UAR 30.00 ± 1.50" in text and "![Table 6](table6.png)" in text
    # the demo lays out Tables 1 and 2 and says plainly that its numbers are not comparable
    assert "## Table 1" in text and "## Table 2" in text and "not comparable" in text
    assert table_line(text, "DFER-CLIP", "91.12") and table_line(text, "M3DFEL", "89.59")


def test_a_dfew_baseline_gets_table1_with_its_per_class_recall():
    params = apply_overrides(PARAMS, {"dataset.adapter": "dfew", "dataset.name": "dfew"})
    recall = {name: 50.0 + i for i, name in enumerate(paper.class_names())}
    [(baseline, experiments)] = collect_runs(exp_show([], params, recall))
    assert comparison_tables(baseline) == [1]
    text = render_markdown([], {}, baseline, {}, comparison_tables(baseline))
    assert "## Table 2" not in text and "not comparable" not in text
    ours = table_line(text, "ours (`main`, dfew)")
    assert ours == "| ours (`main`, dfew) | 50.00 | 51.00 | 52.00 | 53.00 | 54.00 | 55.00 | 56.00 | 30.00 ± 1.50 | 31.00 ± 0.50 |"
    assert table_line(text, "ours − TG-DFER").startswith("| ours − TG-DFER | -40.92 | -23.92 |")
    assert re.search(r"\| TG-DFER \(paper\) \| 90\.92 .* \| 60\.17 \| 71\.62 \|", text)


def test_report_command_reads_saved_exp_show_json(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    saved = tmp_path / "exp.json"
    row = TABLES[4].setting("t4-stride1-window2")
    saved.write_text(json.dumps(exp_show([(row.name, row.overrides, 25.0)])))
    result = CliRunner().invoke(main, ["report", "--exp-json", str(saved), "--table", "4"])
    assert result.exit_code == 0, result.output
    report = (tmp_path / "report" / "demo" / "ablations.md").read_text()
    assert "## Table 4" in report and "| 1 | 2 | 25.00 ± 1.50" in report and "| 1 | 4 | 30.00 ± 1.50" in report
    assert "Stride column read as s of Eq. 3" in report
    assert (tmp_path / "report" / "demo" / "table4.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "2 of 9 ablation rows have results" in result.output
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


def test_band_check_holds_results_to_the_seed_spread_and_settings_to_equality():
    seeds = {"mean": {"uar": 90.0, "war": 91.0, "apex_auroc": 0.95}, "std": {"uar": 2.0, "war": 2.0, "apex_auroc": 0.01}}
    reference = {"uar": 92.0, "war": 92.0, "folds": {"1": {"uar": 95.0}}, "apex_auroc": {"mean": 0.96, "clips": 240},
                 "weights": "best", "clips": 280, "cpu_profile": {"name": "reference"}}
    other_machine = dict(reference, uar=85.0, folds={"1": {"uar": 70.0}}, apex_auroc={"mean": 0.93, "clips": 240},
                         cpu_profile={"name": "gpu", "device": "cuda"})
    rows, problems = band_check(seeds, reference, other_machine, 3.0)
    assert problems == [] and ("uar", "points", 90.0, 2.0, 84.0, 96.0, 85.0) in rows
    assert ("apex_auroc", "AUROC", 0.95, 0.01, 0.92, 0.98, 0.93) in [tuple(round(v, 6) if isinstance(v, float) else v
                                                                          for v in row) for row in rows]
    # AUROC is held on its own 0..1 scale: 0.05 below the mean is 5 of its standard deviations.
    _, problems = band_check(seeds, reference, dict(other_machine, apex_auroc={"mean": 0.90, "clips": 240}), 3.0)
    assert problems == ["apex_auroc.mean: 0.9 outside the seeds' band 0.9200..0.9800 (AUROC)"]
    _, problems = band_check(seeds, reference, dict(other_machine, weights="last", clips=279), 3.0)
    assert problems == ["clips: 280 -> 279", "weights: 'best' -> 'last'"]


def test_check_metrics_command_against_a_reference_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    reference, current = tmp_path / "ref", tmp_path / "now"
    reference.mkdir()
    current.mkdir()
    profile = {"name": "reference", "threads": 2}
    (reference / "metrics.json").write_text(json.dumps({"uar": 40.0, "war": 50.0, "cpu_profile": profile}))
    (current / "metrics.json").write_text(json.dumps({"uar": 40.0, "war": 50.0, "cpu_profile": profile}))
    check = ["check-metrics", str(current / "metrics.json"), "--reference", str(reference)]
    result = CliRunner().invoke(main, check)
    assert result.exit_code == 0 and "exact" in result.output, result.output
    assert "uar" in result.output and "40.0000" in result.output
    # Under the reference profile on both sides, any difference fails, however small.
    (current / "metrics.json").write_text(json.dumps({"uar": 40.01, "war": 50.0, "cpu_profile": profile}))
    result = CliRunner().invoke(main, check)
    assert result.exit_code == 1 and "DIFFERS: uar: 40.0 -> 40.01" in result.output
    # Off the profile: the band of the seed study, in each metric's unit; no study, a clear error.
    native = {"name": "native", "why": "TG_DFER_CPU_PROFILE=native"}
    (current / "metrics.json").write_text(json.dumps({"uar": 43.0, "war": 50.0, "cpu_profile": native}))
    result = CliRunner().invoke(main, check)
    assert result.exit_code == 1 and "seeds.json: not found" in result.output
    (reference / "seeds.json").write_text(json.dumps({"seeds": {"0": {}, "1": {}}, "mean": {"uar": 41.0, "war": 50.0},
                                                      "std": {"uar": 1.0, "war": 0.5}}))
    result = CliRunner().invoke(main, check)
    assert result.exit_code == 0 and "band of 3 std over 2 seeds" in result.output, result.output
    assert "TG_DFER_CPU_PROFILE=native" in result.output and "38.0000..44.0000" in result.output
    result = CliRunner().invoke(main, [*check, "--band-width", "1.5"])
    assert result.exit_code == 1 and "uar: 43.0 outside the seeds' band 39.5000..42.5000 (points)" in result.output
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
