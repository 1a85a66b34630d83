"""The demo pipeline runs with networking blocked: every Python process of it gets a socket guard
(a sitecustomize module on PYTHONPATH) that makes any connection or name lookup raise. The same
run checks that a second run gives the same metrics and that the CLIP weights' hash follows
the data and is checked."""

from __future__ import annotations

import json
import subprocess
import sys

import h5py
import torch
import yaml

from helpers import REPO
from helpers.projects import cli, tiny_params

GUARD = '''
import socket

class NetworkBlocked(OSError):
    pass

def _refuse(*args, **kwargs):
    raise NetworkBlocked("network access attempted while blocked by the test guard")

_connect = socket.socket.connect

def _connect_local(self, address):
    if self.family == socket.AF_UNIX:
        return _connect(self, address)
    _refuse()

socket.socket.connect = _connect_local
socket.socket.connect_ex = _connect_local
socket.create_connection = _refuse
socket.getaddrinfo = _refuse
socket.gethostbyname = _refuse
'''


def test_demo_pipeline_runs_with_networking_blocked(tmp_path):
    guard = tmp_path / "guard"
    guard.mkdir()
    (guard / "sitecustomize.py").write_text(GUARD)
    project = tmp_path / "project"
    project.mkdir()
    params = tiny_params(**{"demo.clips_per_class": 2, "demo.frame_size": 128, "embed.views": 1,
                            "train.folds": [1], "train.optim.epochs": 1, "train.optim.milestones": []})
    (project / "params.yaml").write_text(yaml.safe_dump(params))
    env = {"PYTHONPATH": f"{guard}:{REPO}"}

    probe = subprocess.run([sys.executable, "-c", "import socket; socket.create_connection(('127.0.0.1', 9))"],
                           env=env, capture_output=True, text=True)
    assert probe.returncode != 0 and "blocked by the test guard" in probe.stderr  # the guard is active

    for args in (["demo", "--out", "data/demo/videos"], ["prepare"], ["faces"], ["embed"], ["qc"], ["text"],
                 ["train", "--fold", "1"], ["evaluate"]):
        done = cli(project, *args, env=env)
        assert done.returncode == 0, (args, done.stdout, done.stderr)
        assert "blocked by the test guard" not in done.stderr
    metrics = (project / "metrics/demo/metrics.json").read_text()
    assert json.loads(metrics)["clips"] > 0

    # The same params on the same machine give the same metrics.
    for args in (["train", "--fold", "1"], ["evaluate"]):
        assert cli(project, *args, env=env).returncode == 0
    assert (project / "metrics/demo/metrics.json").read_text() == metrics

    # The CLIP weights' SHA-256 is in every file made downstream of them, and checked on load.
    with h5py.File(project / "data/demo/features.h5") as handle:
        sha = handle.attrs["checkpoint_sha256"]
    assert len(sha) == 64
    for path in ("data/text/dfew.h5", "metrics/demo/predictions.h5"):
        with h5py.File(project / path) as handle:
            assert handle.attrs["checkpoint_sha256"] == sha, path
    assert torch.load(project / "models/demo/fold1/model.pt", weights_only=True)["clip"]["sha256"] == sha
    with h5py.File(project / "data/text/dfew.h5", "r+") as handle:
        handle.attrs["checkpoint_sha256"] = "f" * 64
    refused = cli(project, "train", "--fold", "1", env=env)
    assert refused.returncode != 0 and "was made with CLIP weights" in refused.stderr
    with h5py.File(project / "data/demo/features.h5", "r+") as handle:
        handle.attrs["checkpoint_sha256"] = "f" * 64
    refused = cli(project, "evaluate", env=env)
    assert refused.returncode != 0 and "the model of fold 1 was made with CLIP weights" in refused.stderr
