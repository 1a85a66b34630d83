"""`tg-dfer doctor`: offline, without CUDA, it reports what is there and what is missing, and exits 0."""

from __future__ import annotations

import hashlib
import json
import socket

import pytest
import torch
import yaml
from click.testing import CliRunner

from pipeline.cli import main

from helpers import REPO
from helpers.projects import tiny_params

STAGES = ["demo", "prepare", "faces", "embed", "qc", "text", "train", "evaluate", "predict"]


@pytest.fixture
def machine(tmp_path, monkeypatch):
    """A project folder on a machine without network and without CUDA, with empty weight caches."""
    def refuse(*args, **kwargs):
        raise AssertionError("doctor tried to use the network")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setattr(torch.hub, "_hub_dir", str(tmp_path / "hub"))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def write_params(folder, **changes):
    (folder / "params.yaml").write_text(yaml.safe_dump(tiny_params(**changes)))


def doctor(*args: str):
    result = CliRunner().invoke(main, ["doctor", *args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result


def test_doctor_says_what_is_missing_and_where_it_would_come_from(machine):
    write_params(machine, **{"clip.checkpoint": "", "clip.download": "never", "faces.detector": "face_alignment",
                             "faces.download": "auto"})
    report = json.loads(doctor("--json").stdout)
    assert report["schema"] == "tg-dfer/doctor/2" and report["params"]["error"] is None
    assert report["packages"]["torch"].split("+")[0] == torch.__version__.split("+")[0]  # a local tag (+cu130) aside
    assert not report["cuda"]["available"] and report["cuda"]["reason"] and report["cuda"]["devices"] == []
    assert report["ffmpeg"]["binary"] and report["ffmpeg"]["version"].startswith("ffmpeg version")
    # the test process imported the stage layer before torch, as tg-dfer does: the reference profile holds
    assert report["cpu_profile"] == {"requested": "reference", "not_in_effect": [], "record": {
        "name": "reference", "aten_cpu_capability": "avx2", "onednn_max_cpu_isa": "AVX2", "mkl_cbwr": "COMPATIBLE",
        "npy_disable_cpu_features": "X86_V4 AVX512_ICL AVX512_SPR AVX512F AVX512CD AVX512_SKX AVX512_CLX AVX512_CNL", "threads": 2}}
    clip, s3fd, fan = report["weights"]
    assert clip["path"] == str(machine / "home/.cache/clip/ViT-B-32.pt") and not clip["present"]
    assert clip["url"] == __import__("clip").clip._MODELS["ViT-B/32"] and clip["published_sha256"] in clip["url"]
    assert clip["download"] == "never" and set(clip["needed_by"]) == {"embed", "text", "train", "predict"}
    assert s3fd["path"].startswith(str(machine / "hub/checkpoints")) and s3fd["needed_by"] == ["faces"]
    assert s3fd["published_sha256"] == "619a316812" and fan["download"] == "auto"
    stages = report["stages"]
    assert list(stages) == STAGES
    for stage in ("embed", "text", "train"):  # download never: nothing brings the file
        assert any("CLIP weights for ViT-B/32" in lack for lack in stages[stage]), stage
    assert stages["faces"] == [] and stages["qc"] == [] and stages["evaluate"] == []  # face_alignment: fetched

    text = doctor().stdout
    assert "CUDA: none" in text and "MISSING at " + clip["path"] in text and "not downloaded (download never)" in text
    assert f"fetched on first use from {s3fd['url']}" in text
    assert all(f"  {stage:<9} " in text for stage in STAGES)


def test_doctor_hashes_a_weight_file_that_is_there(machine):
    write_params(machine, **{"clip.checkpoint": "", "clip.download": "auto"})
    cache = machine / "home/.cache/clip"
    cache.mkdir(parents=True)
    (cache / "ViT-B-32.pt").write_bytes(b"not OpenAI's file")
    report = json.loads(doctor("--json").stdout)
    clip = report["weights"][0]
    assert clip["present"] and clip["sha256"] == hashlib.sha256(b"not OpenAI's file").hexdigest()
    assert clip["is_published"] is False and report["stages"]["embed"] == []
    assert "NOT the published file" in doctor().stdout


def test_doctor_sizes_the_dataset_caches_at_the_configured_frames_and_views(machine):
    # docs/datasets.md: DFEW at 48 frames and 4 views, "features.h5: 11,697 x 4 x 48 x 512 float16 = 2.3 GB",
    # and "about 15 KB each: about 8 GB" of face crops.
    write_params(machine, **{"faces.frames_per_clip": 48, "embed.frames_per_clip": 48, "embed.views": 4})
    disk = json.loads(doctor("--json").stdout)["disk"]
    dfew = disk["datasets"]["DFEW"]
    assert dfew["clips"] == 11_697 and round(dfew["features_h5_bytes"] / 1e9, 1) == 2.3
    assert 8e9 <= dfew["faces_h5_bytes"] < 9e9
    assert disk["datasets"]["FERV39k"]["clips"] == 31_088 + 7_847 and disk["datasets"]["MAFW"]["clips"] == 9_172
    assert dfew["needed_bytes"] == 2 * (dfew["faces_h5_bytes"] + dfew["features_h5_bytes"])  # DVC's cache copy
    assert disk["free_bytes"] > 0 and dfew["fits"] == (dfew["needed_bytes"] <= disk["free_bytes"])


def test_doctor_without_a_params_file_assumes_the_defaults(machine):
    result = doctor()
    assert "params.yaml: parameter file not found" in result.stdout and "the library's defaults are assumed" in result.stdout
    assert "stages:" in result.stdout


def test_doctor_names_the_gpus_where_cuda_is(machine, monkeypatch):
    """The CUDA branch, on this CPU machine through torch.cuda's answers (the numbers of an H200)."""
    class Properties:
        name, total_memory = "NVIDIA H200", 150_000_000_000

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda index: Properties())
    write_params(machine)
    cuda = json.loads(doctor("--json").stdout)["cuda"]
    assert cuda["available"] and cuda["devices"] == [{"name": "NVIDIA H200", "memory_gb": 150.0}] * 2
    assert "NVIDIA H200 (150.0 GB), NVIDIA H200 (150.0 GB)" in doctor().stdout


def test_doctor_tells_the_truth_on_the_demo_s_own_params(machine):
    """The committed params: the demo's own CLIP (clip.model demo) is the file the backbone stage makes,
    so no stage lacks it, and its 64-d features size the caches."""
    (machine / "params.yaml").write_text((REPO / "params.yaml").read_text())
    report = json.loads(doctor("--json").stdout)
    assert report["params"]["error"] is None
    backbone = report["weights"][0]
    assert backbone["name"] == "CLIP weights for demo" and backbone["path"] == "data/backbone/clip.pt"
    assert backbone["made_by"] == "the backbone stage" and not backbone["present"]
    assert set(backbone["needed_by"]) == {"embed", "text", "train", "predict"}
    assert all(stage == [] for name, stage in report["stages"].items() if name != "predict"), report["stages"]
    demo = yaml.safe_load((REPO / "params.yaml").read_text())["backbone"]
    disk = report["disk"]
    assert disk["embed_dim"] == demo["embed_dim"] == 64
    dfew = disk["datasets"]["DFEW"]
    assert dfew["features_h5_bytes"] == 11_697 * disk["views"] * disk["frames_per_clip"] * 64 * 2
    text = doctor().stdout
    assert "unknown CLIP model" not in text and "features.h5 ?" not in text
    assert "not made yet at data/backbone/clip.pt; the backbone stage makes it" in text


def test_doctor_on_a_real_dataset_names_its_missing_root_and_weights(machine):
    write_params(machine, **{"dataset.adapter": "dfew", "dataset.name": "dfew", "dataset.root": "data/DFEW",
                             "clip.checkpoint": "", "clip.download": "never"})
    report = json.loads(doctor("--json").stdout)
    assert report["params"]["error"] is None and report["disk"]["embed_dim"] == 512
    assert report["stages"]["prepare"] == ["the dataset at dataset.root data/DFEW (not found)"]
    assert any("CLIP weights for ViT-B/32" in lack for lack in report["stages"]["embed"])
