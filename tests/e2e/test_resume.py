"""faces and embed under SIGKILL, resumed, and split into shards: the result is the same file."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

from pipeline.cli import main
from tg_dfer.io.features_h5 import FEATURES_SCHEMA, read_features, write_features
from tg_dfer.io.h5 import SchemaError
from tg_dfer.resume.journal import Journal
from tg_dfer.resume.shards import ShardSet

from helpers.hostile_media import face_frames, h264
from helpers.projects import cli, feature_cache, h5_contents, write_project

CLIPS = 7  # one of them broken: skipped by embed


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """A project whose faces and embed ran once each, uninterrupted."""
    root = tmp_path_factory.mktemp("clips")
    labels = {}
    for number in range(CLIPS - 1):
        h264(root / f"clip{number}.mp4", face_frames(12, seed=number))
        labels[f"clip{number}.mp4"] = "happy"
    (root / "broken.mp4").write_bytes(b"\0" * 100)
    labels["broken.mp4"] = "sad"
    project = write_project(tmp_path_factory.mktemp("reference"), root, labels)
    for stage in ("prepare", "faces", "embed"):
        done = cli(project, stage)
        assert done.returncode == 0, done.stderr
    return project


def fresh_copy(reference: Path, destination: Path, keep: tuple[str, ...]) -> Path:
    """The reference project with only the ``keep`` files of data/mine/."""
    destination.mkdir()
    shutil.copy(reference / "params.yaml", destination)
    (destination / "data/mine").mkdir(parents=True)
    for name in keep:
        shutil.copy2(reference / "data/mine" / name, destination / "data/mine" / name)
    return destination


STAGES = {"faces": ("faces.h5", ("manifest.csv", "classes.json")),
          "embed": ("features.h5", ("manifest.csv", "classes.json", "faces.h5"))}


# (stage, kill point, journal entries left): faces keeps one entry per clip (7); embed one per
# forward pass of 2 clips (the broken clip is skipped: 6 clips in 3 passes). Killed while writing
# the file, every entry is there; killed mid-run, the entries finished before the kill are.
KILLS = [("faces", "clip:3", 3), ("faces", "assemble:2", CLIPS), ("embed", "batch:2", 2), ("embed", "assemble:2", 3)]


@pytest.mark.parametrize(("stage", "kill_at", "entries"), KILLS)
def test_killed_run_resumes_to_the_same_file(reference, tmp_path, stage, kill_at, entries):
    output, keep = STAGES[stage]
    project = fresh_copy(reference, tmp_path / "project", keep)
    killed = cli(project, stage, env={"TG_DFER_KILL_AT": kill_at})
    assert killed.returncode == -9, killed.stderr  # SIGKILL
    folder = project / "data/mine"
    assert not (folder / output).exists()  # nothing half-written under the name a later stage reads
    assert len(list((folder / f"{output}.parts").glob("*.npz"))) == entries
    resumed = cli(project, stage)
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming" in resumed.stdout
    assert h5_contents(folder / output) == h5_contents(reference / "data/mine" / output)
    assert not (folder / f"{output}.parts").exists() and not (folder / f"{output}.partial").exists()


def test_faces_in_parallel_threads_writes_the_file_of_one_thread(reference, tmp_path):
    output, keep = STAGES["faces"]
    project = fresh_copy(reference, tmp_path / "project", keep)
    threaded = cli(project, "faces", env={"TG_DFER_FACES_WORKERS": "3"})
    assert threaded.returncode == 0, threaded.stderr
    assert h5_contents(project / "data/mine" / output) == h5_contents(reference / "data/mine" / output)


def test_a_journal_of_other_params_is_not_mixed_in(reference, tmp_path):
    project = fresh_copy(reference, tmp_path / "project", STAGES["faces"][1])
    assert cli(project, "faces", env={"TG_DFER_KILL_AT": "clip:3"}).returncode == -9
    params = (project / "params.yaml").read_text()
    (project / "params.yaml").write_text(params.replace("margin: 1.3", "margin: 1.5"))
    rerun = cli(project, "faces")
    assert rerun.returncode == 0 and "starting afresh" in rerun.stdout and "resuming" not in rerun.stdout
    (project / "params.yaml").write_text(params)
    assert cli(project, "faces").returncode == 0
    assert h5_contents(project / "data/mine/faces.h5") == h5_contents(reference / "data/mine/faces.h5")


@pytest.mark.parametrize("stage", ["faces", "embed"])
def test_shards_merge_into_the_file_of_one_run(reference, tmp_path, monkeypatch, stage):
    output, keep = STAGES[stage]
    project = fresh_copy(reference, tmp_path / "project", keep)
    monkeypatch.chdir(project)
    monkeypatch.setenv("TG_DFER_ALLOW_RANDOM_WEIGHTS", "1")
    runner = CliRunner()
    first = runner.invoke(main, [stage, "--shard", "0/3"], catch_exceptions=False)
    assert first.exit_code == 0, first.output
    # Under torchrun the shard comes from RANK and WORLD_SIZE.
    for rank in (1, 2):
        monkeypatch.setenv("RANK", str(rank))
        monkeypatch.setenv("WORLD_SIZE", "3")
        ranked = runner.invoke(main, [stage], catch_exceptions=False)
        assert ranked.exit_code == 0, ranked.output
    monkeypatch.delenv("RANK")
    monkeypatch.delenv("WORLD_SIZE")
    folder = project / "data/mine"
    stem = output.removesuffix(".h5")
    assert sorted(path.name for path in folder.glob(f"{stem}.shard-*")) == [
        f"{stem}.shard-{index}-of-3.h5" for index in range(3)]
    assert not (folder / output).exists()
    merged = runner.invoke(main, [stage, "--merge", "3"], catch_exceptions=False)
    assert merged.exit_code == 0, merged.output
    assert h5_contents(folder / output) == h5_contents(reference / "data/mine" / output)
    assert not list(folder.glob(f"{stem}.shard-*"))


def test_merge_names_a_missing_shard(reference, tmp_path, monkeypatch):
    project = fresh_copy(reference, tmp_path / "project", STAGES["faces"][1])
    monkeypatch.chdir(project)
    assert CliRunner().invoke(main, ["faces", "--shard", "1/2"]).exit_code == 0
    result = CliRunner().invoke(main, ["faces", "--merge", "2"])
    assert result.exit_code != 0 and "faces.shard-0-of-2.h5: no such file" in result.output
    bad = CliRunner().invoke(main, ["faces", "--shard", "2/2"])
    assert bad.exit_code != 0 and "need 0 <= i < n" in bad.output


# ------------------------------------------------------------------------- the journal and the shard set


def test_journal_round_trip_and_what_counts_as_done(tmp_path):
    journal = Journal(tmp_path / "run.parts", {"params": {"a": 1}})
    values = {"clip_id": "visage ü 表情", "status": "ok", "reason": "", "source_frames": 7,
              "box": np.arange(8, dtype=np.float32).reshape(2, 4), "crops": [b"\xff\xd8jpeg", b""]}
    journal.put(3, values)
    (tmp_path / "run.parts" / "000000004.npz.tmp").write_bytes(b"torn")  # a write cut short by a kill
    assert journal.done() == {3}
    back = journal.get(3)
    assert back["clip_id"] == values["clip_id"] and back["reason"] == "" and back["source_frames"] == 7
    assert back["crops"] == values["crops"] and np.array_equal(back["box"], values["box"])
    assert back["box"].dtype == np.float32
    assert Journal(tmp_path / "run.parts", {"params": {"a": 1}}).done() == {3}
    other = Journal(tmp_path / "run.parts", {"params": {"a": 2}})
    assert other.discarded and other.done() == set()


def shard_files(tmp_path, caches) -> list[Path]:
    paths = []
    for index, cache in enumerate(caches):
        path = tmp_path / f"features.shard-{index}-of-{len(caches)}.h5"
        write_features(path, cache)
        with h5py.File(path, "r+") as handle:
            handle.attrs["shard"] = f"{index}/{len(caches)}"
        paths.append(path)
    return paths


def test_shard_set_refuses_mixed_or_overlapping_shards(tmp_path):
    first, second = feature_cache(n=2, seed=0), feature_cache(n=2, seed=1)
    second.clip_id = ["clip_2", "clip_3"]
    (tmp_path / "good").mkdir()
    with ShardSet(shard_files(tmp_path / "good", [first, second]), FEATURES_SCHEMA) as shards:
        assert [row["clip_id"] for row in shards.rows(["clip_3", "clip_0", "clip_1", "clip_2"])] == [
            "clip_3", "clip_0", "clip_1", "clip_2"]
        with pytest.raises(SchemaError, match="1 missing"):
            list(shards.rows(["clip_0", "clip_1", "clip_2", "clip_3", "clip_9"]))
    (tmp_path / "overlap").mkdir()
    with pytest.raises(SchemaError, match="clip 'clip_0' is also in"):
        ShardSet(shard_files(tmp_path / "overlap", [first, feature_cache(n=2, seed=1)]), FEATURES_SCHEMA)
    (tmp_path / "mixed").mkdir()
    second.attrs = {**second.attrs, "checkpoint_sha256": "cd" * 32}
    with pytest.raises(SchemaError, match="attributes checkpoint_sha256 differ"):
        ShardSet(shard_files(tmp_path / "mixed", [first, second]), FEATURES_SCHEMA)


def test_a_clip_whose_crops_do_not_decode_is_listed_also_after_a_resume(reference, tmp_path):
    project = fresh_copy(reference, tmp_path / "project", STAGES["embed"][1])
    folder = project / "data/mine"
    with h5py.File(folder / "faces.h5", "a") as handle:  # one crop of the first good clip (in pass 1) spoiled
        row = [status.decode() for status in handle["status"][:]].index("ok")
        broken = handle["clip_id"][row].decode()
        handle["crops"][row, 1] = np.frombuffer(b"not an image", dtype=np.uint8)
    assert cli(project, "embed").returncode == 0
    skipped = json.loads((folder / "embed_skipped.json").read_text())
    assert skipped[broken] == "undecodable crop bytes" and "broken" in skipped  # and the clip faces failed
    assert broken not in read_features(folder / "features.h5").clip_id
    assert cli(project, "qc").returncode == 0
    with open(project / "metrics/mine/qc.csv", newline="", encoding="utf-8") as handle:
        assert {row["clip_id"]: row["embedded"] for row in csv.DictReader(handle)}[broken] == "no"
    # Killed after pass 2 and resumed, the run that saw the crop fail is gone: the clip is still listed.
    (folder / "features.h5").unlink()
    assert cli(project, "embed", env={"TG_DFER_KILL_AT": "batch:2"}).returncode == -9
    assert cli(project, "embed").returncode == 0
    assert "earlier, resumed run" in json.loads((folder / "embed_skipped.json").read_text())[broken]
