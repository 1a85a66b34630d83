"""Evaluation: predictions.h5 schema and round trip, metrics.json, plots, and the train/evaluate commands."""

from __future__ import annotations

import csv
import json

import h5py
import numpy as np
import pytest
import torch
import yaml
from click.testing import CliRunner

from tg_dfer.datasets.manifest import ManifestRow, write_manifest
from tg_dfer.evaluate import FrameSelection, evaluate_folds, select_frames, write_outputs
from tg_dfer.io.features_h5 import write_features
from tg_dfer.io.h5 import SchemaError
from tg_dfer.io.predictions_h5 import PREDICTIONS_SCHEMA, PredictionSet, read_predictions, write_predictions
from tg_dfer.io.text_h5 import write_text
from tg_dfer.metrics import uar, war
from tg_dfer.training.bank import FeatureBank
from tg_dfer.training.checkpoint import model_from_checkpoint, save_checkpoint
from tg_dfer.training.config import TrainConfig
from tg_dfer.training.loop import fit

from helpers.synthetic import planted_cache

PLANTED = dict(num_clips=48, num_classes=3, frames=8, dim=16, signal_frames=2, strength=0.6, num_folds=3,
               short_clips=0.3, seed=2)
MODEL = dict(num_frames=8, heads=2, learnable_context=False)
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def planted():
    return planted_cache(**PLANTED)


@pytest.fixture(scope="module")
def checkpoints(planted, tmp_path_factory):
    torch.set_num_threads(1)
    folder = tmp_path_factory.mktemp("models")
    out = {}
    for fold in (1, 2):
        result = fit(planted.features, planted.text, planted.test_fold, fold, MODEL,
                     TrainConfig(epochs=3, batch_size=16), progress=False)
        path = folder / f"fold{fold}.pt"
        save_checkpoint(path, result, class_names=planted.features.class_names, text=planted.text,
                        clip_model="planted", clip_sha256="0" * 64, random_weights=True, fold=fold,
                        cpu_profile={"name": "reference"})
        out[fold] = torch.load(path, weights_only=True)
    return out


def sample_predictions(n: int = 5, classes: int = 3, frames: int = 4) -> PredictionSet:
    rng = np.random.default_rng(0)
    logits = rng.standard_normal((n, classes))
    probs = (np.exp(logits) / np.exp(logits).sum(1, keepdims=True)).astype(np.float32)
    frame_index = np.tile(np.arange(frames, dtype=np.int32) * 3, (n, 1))
    frame_index[1, 2:] = -1
    influence = rng.standard_normal((n, frames)).astype(np.float32)
    influence[frame_index < 0] = np.nan
    return PredictionSet([f"c{i}" for i in range(n)], np.array([0, 1, 2, -1, 1]), np.array([1, 1, 2, 2, 2]),
                         probs, probs.argmax(1), frame_index, influence, ["x", "y", "z"], {"weights": "best"})


def test_predictions_round_trip_and_schema(tmp_path):
    preds = sample_predictions()
    path = tmp_path / "predictions.h5"
    write_predictions(path, preds)
    with h5py.File(path) as handle:
        assert handle.attrs["schema"] == PREDICTIONS_SCHEMA
        assert {name: handle[name].shape for name in handle} == {
            "clip_id": (5,), "label": (5,), "fold": (5,), "probs": (5, 3), "pred": (5,), "frame_index": (5, 4),
            "influence": (5, 4)}
        assert handle["label"].dtype == np.int64 and handle["probs"].dtype == np.float32
    again = read_predictions(path)
    assert again.clip_id == preds.clip_id and again.class_names == ["x", "y", "z"]
    for name in ("label", "fold", "probs", "pred", "frame_index"):
        assert np.array_equal(getattr(again, name), getattr(preds, name)), name
    assert np.array_equal(np.isnan(again.influence), np.isnan(preds.influence))
    assert np.allclose(again.influence[~np.isnan(again.influence)], preds.influence[~np.isnan(preds.influence)])
    assert again.attrs["weights"] == "best"


def test_predictions_schema_violations_are_refused(tmp_path):
    bad = sample_predictions()
    bad.influence[0, 0] = np.nan  # NaN on a real frame
    with pytest.raises(SchemaError, match="influence"):
        write_predictions(tmp_path / "a.h5", bad)
    bad = sample_predictions()
    bad.probs[0] *= 2
    with pytest.raises(SchemaError, match="sum to 1"):
        write_predictions(tmp_path / "b.h5", bad)
    path = tmp_path / "c.h5"
    write_predictions(path, sample_predictions())
    with h5py.File(path, "a") as handle:
        handle.attrs["schema"] = "tg-dfer/predictions/0"
    with pytest.raises(SchemaError, match="not supported"):
        read_predictions(path)
    with pytest.raises(SchemaError, match="no such file"):
        read_predictions(tmp_path / "missing.h5")


def test_test_picked_keeps_the_epoch_of_best_test_war_as_dfer_clip(planted, checkpoints):
    # Epoch 2 has the best test UAR, epochs 1 and 3 share the best test WAR: the first of them counts.
    history = [{"epoch": 1, "test_uar": 40.0, "test_war": 60.0}, {"epoch": 2, "test_uar": 55.0, "test_war": 50.0},
               {"epoch": 3, "test_uar": 45.0, "test_war": 60.0}]
    edited = {fold: {**checkpoint, "history": history} for fold, checkpoint in checkpoints.items()}
    _, metrics = evaluate_folds(edited, planted.features, planted.test_fold)
    assert metrics["test_picked"]["folds"]["1"] == {"uar": 40.0, "war": 60.0, "epoch": 1}
    assert metrics["test_picked"]["uar"] == 40.0 and "WAR" in metrics["test_picked"]["note"]


def test_select_frames_keeps_the_top_or_bottom_k():
    influence = np.array([[0.1, 0.9, 0.5, np.nan], [3.0, np.nan, np.nan, np.nan]])
    assert select_frames(influence, 2).tolist() == [[False, True, True, False], [True, False, False, False]]
    assert select_frames(influence, 2, highest=False).tolist() == [[True, False, True, False],
                                                                    [True, False, False, False]]


def test_evaluate_folds_metrics_and_predictions(planted, checkpoints):
    preds, metrics = evaluate_folds(checkpoints, planted.features, planted.test_fold)
    test_rows = np.flatnonzero(np.isin(planted.test_fold, [1, 2]))
    assert sorted(preds.clip_id) == sorted(planted.features.clip_id[row] for row in test_rows)
    for fold in (1, 2):
        mine = preds.fold == fold
        rows = [planted.features.clip_id.index(clip) for clip, keep in zip(preds.clip_id, mine) if keep]
        assert set(planted.test_fold[rows]) == {fold}  # each clip predicted by its own fold's model
        report = metrics["folds"][str(fold)]
        assert report["uar"] == pytest.approx(uar(preds.label[mine], preds.pred[mine], 3), abs=1e-3)
        assert report["war"] == pytest.approx(war(preds.label[mine], preds.pred[mine]), abs=1e-3)
    assert metrics["uar"] == pytest.approx(np.mean([metrics["folds"][f]["uar"] for f in ("1", "2")]), abs=1e-3)
    assert metrics["war_std"] == pytest.approx(np.std([metrics["folds"][f]["war"] for f in ("1", "2")], ddof=1),
                                               abs=1e-3)
    assert set(metrics["per_class"]) == set(planted.features.class_names)
    assert metrics["random_clip_weights"] is True and "RANDOM" in metrics["warning"]
    assert set(metrics["last_epoch"]["folds"]) == {"1", "2"} and "note" in metrics["test_picked"]
    # frames: padding is -1 in frame_index and NaN in influence; T = the model's num_frames
    assert preds.frame_index.shape == (len(preds), 8)
    short = planted.features.num_frames[[planted.features.clip_id.index(c) for c in preds.clip_id]] < 8
    assert short.any() and (preds.frame_index[short] == -1).any()
    assert np.array_equal(np.isnan(preds.influence), preds.frame_index < 0)
    assert np.allclose(preds.probs.sum(1), 1, atol=1e-5)


@pytest.mark.parametrize("mode", ["highest", "lowest"])
def test_table6_inference_sees_only_the_k_selected_frames(planted, checkpoints, mode):
    everything, _ = evaluate_folds(checkpoints, planted.features, planted.test_fold)
    chosen, metrics = evaluate_folds(checkpoints, planted.features, planted.test_fold,
                                     frames=FrameSelection(mode, 2))
    assert chosen.clip_id == everything.clip_id
    valid = (everything.frame_index >= 0).sum(1)
    assert ((chosen.frame_index >= 0).sum(1) == np.minimum(valid, 2)).all()
    expected = select_frames(everything.influence, 2, highest=mode == "highest")
    assert np.array_equal(chosen.frame_index >= 0, expected)
    assert np.array_equal(chosen.frame_index[expected], everything.frame_index[expected])
    assert not np.allclose(chosen.probs, everything.probs)
    assert metrics["frame_selection"] == {"mode": mode, "k": 2}
    assert "test_picked" not in metrics  # the training history scored all frames
    # The probabilities are those of a forward pass that sees exactly the 2 frames ranked here.
    bank = FeatureBank(planted.features)
    for fold in (1, 2):
        model = model_from_checkpoint(checkpoints[fold])
        mine = np.flatnonzero(chosen.fold == fold)
        rows = np.array([planted.features.clip_id.index(chosen.clip_id[i]) for i in mine])
        x, mask, _ = bank.batch(rows, 8)
        keep = torch.zeros_like(mask)
        for row, influence in enumerate(everything.influence[mine]):
            ranked = sorted(np.flatnonzero(~np.isnan(influence)), key=lambda t: influence[t],
                            reverse=mode == "highest")
            keep[row, ranked[:2]] = True
        with torch.no_grad():
            direct = model(x, mask & keep).probs.numpy()
        assert np.allclose(direct, chosen.probs[mine], atol=1e-5)


def test_frame_selection_rejects_unknown_modes_and_k_below_one():
    with pytest.raises(ValueError, match="all, highest or lowest"):
        FrameSelection("middle", 2)
    with pytest.raises(ValueError, match=">= 1"):
        FrameSelection("highest", 0)


def test_write_outputs_files(tmp_path, planted, checkpoints):
    preds, metrics = evaluate_folds(checkpoints, planted.features, planted.test_fold)
    written = write_outputs(tmp_path, preds, metrics, {fold: c["history"] for fold, c in checkpoints.items()})
    assert {path.relative_to(tmp_path).as_posix() for path in written} == {
        "metrics.json", "predictions.h5", "confusion.json", "plots/confusion/all.csv", "plots/confusion/fold1.csv",
        "plots/confusion/fold2.csv", "plots/curves/fold1.csv", "plots/curves/fold2.csv"}
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert {"uar", "war", "uar_std", "war_std", "per_class", "folds", "random_clip_weights"} <= set(saved)
    assert saved["clip_sha256"] == planted.features.attrs["checkpoint_sha256"] != ""
    assert "confusion" not in saved  # matrices go to confusion.json and the plot files
    confusion = json.loads((tmp_path / "confusion.json").read_text())
    assert np.asarray(confusion["all"]).sum() == int((preds.label >= 0).sum())
    with open(tmp_path / "plots/confusion/all.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == int((preds.label >= 0).sum()) and set(rows[0]) == {"actual", "predicted"}
    with open(tmp_path / "plots/curves/fold1.csv") as handle:
        curve = list(csv.DictReader(handle))
    assert [int(row["epoch"]) for row in curve] == [1, 2, 3] and curve[0]["val_uar"] != ""
    assert read_predictions(tmp_path / "predictions.h5").clip_id == preds.clip_id


# ------------------------------------------------------------------------------ the commands


def make_project(root, planted, **changes):
    """A working directory with the files the train and evaluate stages read, and a params.yaml."""
    cache = planted.features
    write_features(root / "data" / "toy" / "features.h5", cache)
    write_text(root / "data" / "text" / "toyprompts.h5", planted.text)
    rows = [ManifestRow(clip, f"{clip}.mp4", int(label), int(fold))
            for clip, label, fold in zip(cache.clip_id, cache.label, planted.test_fold)]
    write_manifest(root / "data" / "toy", rows, cache.class_names)
    train = {"folds": [1, 2], "device": "cpu",
             "model": {"num_frames": 8, "fine_depth": 1, "coarse_depth": 1, "window": 4, "stride": 1, "heads": 2,
                       "mlp_ratio": 4.0, "dropout": 0.1, "text_prompt": "class", "learnable_context": False,
                       "context_length": 8, "class_specific_context": False, "visual_prompt": "add",
                       "mil_pooling": "attention", "topk_fraction": 0.25, "tau": 0.01, "coarse_text_gain": 4.0,
                       "init": "identity"},
             "optim": {"epochs": 2, "batch_size": 16, "lr": 0.01, "prompt_lr": 0.001, "prompt_lr_scope": "context",
                       "momentum": 0.9,
                       "weight_decay": 0.0001, "milestones": [30, 40], "gamma": 0.1, "val_fraction": 0.1,
                       "select_metric": "uar", "seed": 0, "track_test": True, "eval_batch_size": 64,
                       "mixed_precision": True, "activation_checkpointing": False, "mean_pooling_epochs": 0,
                       "feature_storage": "file"}}
    evaluate = {"weights": "best", "batch_size": 64, "device": "cpu", "frames": "all", "frames_k": 4}
    for key, value in changes.items():
        part, _, name = key.rpartition(".")
        (evaluate if part == "evaluate" else train[part] if part else train)[name] = value
    params = {"dataset": {"name": "toy", "adapter": "csv", "root": "videos", "labels": ""},
              "clip": {"model": "ViT-B/32", "checkpoint": "random", "seed": 0, "device": "cpu", "download": "never"},
              "text": {"prompt_set": "toyprompts"}, "train": train,
              "evaluate": evaluate}
    (root / "params.yaml").write_text(yaml.safe_dump(params))


def run(*args):
    from pipeline.cli import main

    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def test_train_and_evaluate_commands(tmp_path, monkeypatch, planted):
    monkeypatch.chdir(tmp_path)
    make_project(tmp_path, planted)
    for fold in (1, 2):
        result = run("train", "--fold", str(fold), "--no-progress")
        assert result.exit_code == 0, result.output
        folder = tmp_path / "models" / "toy" / f"fold{fold}"
        assert {p.name for p in folder.iterdir()} == {"model.pt", "history.json", "split.json"}
        split = json.loads((folder / "split.json").read_text())
        assert not set(split["test"]) & set(split["train"] + split["val"])
        checkpoint = torch.load(folder / "model.pt", weights_only=True)
        assert checkpoint["clip"]["sha256"] == "0" * 64 and checkpoint["model_config"]["mil_pooling"] == "attention"
    result = run("evaluate")
    assert result.exit_code == 0, result.output
    assert "UAR" in result.output and "RANDOM" in result.output
    metrics = json.loads((tmp_path / "metrics" / "toy" / "metrics.json").read_text())
    assert set(metrics["folds"]) == {"1", "2"} and metrics["dataset"] == "toy"
    assert read_predictions(tmp_path / "metrics" / "toy" / "predictions.h5").fold.tolist().count(1) == int(
        (planted.test_fold == 1).sum())


@pytest.mark.parametrize("checkpointing", [False, True])
def test_train_gives_freed_memory_back_only_in_the_memory_lean_mode(tmp_path, monkeypatch, planted, checkpointing):
    # Fixing glibc's mmap threshold lasts for the process and costs plain training its speed.
    calls = []
    monkeypatch.setattr("pipeline.stages.train.release_freed_memory", lambda: calls.append("fixed") or True)
    monkeypatch.chdir(tmp_path)
    make_project(tmp_path, planted, **{"optim.activation_checkpointing": checkpointing})
    result = run("train", "--fold", "1", "--no-progress")
    assert result.exit_code == 0, result.output
    assert calls == (["fixed"] if checkpointing else [])


@pytest.mark.parametrize("change, message", [
    ({"model.window": 0}, "train.model.window must be an integer >= 1"),
    ({"model.window": 9}, "train.model: window (9) must not exceed num_frames (8)"),
    ({"model.mil_pooling": "median"}, "train.model.mil_pooling must be one of"),
    ({"model.learnable_contxt": True}, "train.model.learnable_contxt is not a known setting"),
    ({"optim.lr": "fast"}, "train.optim.lr must be"),
    ({"optim.val_fraction": 1.5}, "train.optim.val_fraction must lie in [0, 1)"),
    ({"folds": []}, "train.folds must be a non-empty list"),
    ({"evaluate.frames": "middle"}, "evaluate.frames must be one of all, highest, lowest"),
    ({"evaluate.frames_k": 0}, "evaluate.frames_k must be >= 1"),
])
def test_bad_params_are_named_before_any_work(tmp_path, monkeypatch, planted, change, message):
    monkeypatch.chdir(tmp_path)
    make_project(tmp_path, planted, **change)
    result = run(*(["evaluate"] if "evaluate." in next(iter(change)) else ["train", "--fold", "1", "--no-progress"]))
    assert result.exit_code != 0 and message in result.output, result.output
    assert not (tmp_path / "models").exists()


def test_bad_inputs_name_the_file(tmp_path, monkeypatch, planted):
    monkeypatch.chdir(tmp_path)
    make_project(tmp_path, planted)
    result = run("train", "--fold", "7", "--no-progress")
    assert result.exit_code != 0 and "--fold 7 is not in train.folds" in result.output
    (tmp_path / "data" / "toy" / "features.h5").write_bytes(b"garbage")
    result = run("train", "--fold", "1", "--no-progress")
    assert result.exit_code != 0 and "features.h5" in result.output and "Traceback" not in result.output
    result = run("evaluate")
    assert result.exit_code != 0 and "features.h5" in result.output


def test_evaluate_without_models_says_which_command_to_run(tmp_path, monkeypatch, planted):
    monkeypatch.chdir(tmp_path)
    make_project(tmp_path, planted)
    result = run("evaluate")
    assert result.exit_code != 0 and "fold1" in result.output and "tg-dfer train --fold 1" in result.output


def test_learnable_context_refuses_features_of_other_clip_weights(tmp_path, monkeypatch, planted):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TG_DFER_ALLOW_RANDOM_WEIGHTS", "1")
    make_project(tmp_path, planted, **{"model.learnable_context": True})
    result = run("train", "--fold", "1", "--no-progress")
    assert result.exit_code != 0
    assert "features.h5 was made with CLIP weights" in result.output and "learnable_context = false" in result.output
