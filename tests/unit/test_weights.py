"""Weight files fetched on first use: a good file is fetched, verified and used; a corrupted or cut
short one, a missing one and an offline machine end in a clear error and leave nothing behind.

The server is on 127.0.0.1 (helpers/weights_server.py); a guard fails any connection elsewhere."""

from __future__ import annotations

import hashlib
import io
import socket

import click
import h5py
import numpy as np
import pytest
import torch
import yaml
from click.testing import CliRunner

from pipeline.cli import main
from pipeline.settings.clip import backbone_spec
from pipeline.settings.faces import faces_section
from tg_dfer.backbone import BackboneSpec, WeightsError, encode_texts, load_backbone
from tg_dfer.detectors import DetectorError, face_alignment_weights, make_detector
from tg_dfer.weights import ensure_file

from helpers import REPO
from helpers.media import tiny_clip
from helpers.projects import tiny_params
from helpers.weights_server import weights_server

pytestmark = pytest.mark.usefixtures("one_thread")
OFFICIAL = __import__("clip").clip._MODELS["ViT-B/32"]


@pytest.fixture(autouse=True)
def loopback_only(monkeypatch):
    """Any connection to another host than 127.0.0.1 fails the test; proxies are bypassed."""
    connect = socket.socket.connect

    def guarded(self, address):
        if self.family != socket.AF_UNIX and address[0] != "127.0.0.1":
            raise AssertionError(f"a test tried to reach {address}")
        return connect(self, address)

    monkeypatch.setattr(socket.socket, "connect", guarded)
    for name in ("no_proxy", "NO_PROXY"):
        monkeypatch.setenv(name, "*")


@pytest.fixture
def server():
    with weights_server() as files:
        yield files


@pytest.fixture
def clip_cache(tmp_path, monkeypatch):
    """A fresh home: the clip package's cache folder (not created) under tmp_path."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    return tmp_path / "home" / ".cache" / "clip"


@pytest.fixture
def offline(monkeypatch):
    """Name lookups fail, as on a machine without a network."""
    def no_lookup(*args, **kwargs):
        raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")

    monkeypatch.setattr(socket, "getaddrinfo", no_lookup)


def tiny_clip_file() -> tuple[bytes, str]:
    buffer = io.BytesIO()
    torch.save(tiny_clip(seed=3).state_dict(), buffer)
    body = buffer.getvalue()
    return body, hashlib.sha256(body).hexdigest()


def left_in(folder) -> list[str]:
    return sorted(path.name for path in folder.iterdir()) if folder.exists() else []


TEXTS = ["an expression of happiness.", "an expression of anger."]


def test_a_missing_cache_file_is_fetched_verified_and_used(server, clip_cache):
    body, sha = tiny_clip_file()
    url = server.add(f"/{sha}/ViT-B-32.pt", body)
    loaded = load_backbone(BackboneSpec("ViT-B/32", None, download="auto"), url=url)
    path = clip_cache / "ViT-B-32.pt"
    assert left_in(clip_cache) == ["ViT-B-32.pt"] and path.read_bytes() == body  # no .partial left
    assert loaded.sha256 == sha and loaded.source == str(path) and not loaded.random_weights
    # The weights in use are the served ones: the same text embeddings as the model that was saved.
    with torch.no_grad():
        reference = torch.nn.functional.normalize(tiny_clip(seed=3).encode_text(
            __import__("clip").tokenize(TEXTS)).float(), dim=-1).numpy()
    assert np.allclose(encode_texts(loaded, TEXTS), reference, atol=1e-5)
    # Once in place the file is used as it is: no second request.
    assert load_backbone(BackboneSpec("ViT-B/32", None, download="auto"), url=url).sha256 == sha
    assert server.requests == [f"/{sha}/ViT-B-32.pt"]


def test_a_corrupted_download_is_refused_and_deleted(server, clip_cache):
    body, sha = tiny_clip_file()
    corrupted = body[:1000] + bytes([body[1000] ^ 0xFF]) + body[1001:]
    url = server.add(f"/{sha}/ViT-B-32.pt", corrupted)
    with pytest.raises(WeightsError) as error:
        load_backbone(BackboneSpec("ViT-B/32", None, download="auto"), url=url)
    message = str(error.value)
    assert url in message and sha in message and hashlib.sha256(corrupted).hexdigest() in message
    assert "deleted" in message and left_in(clip_cache) == []


def test_a_download_cut_short_is_refused_and_leaves_nothing(server, clip_cache):
    body, sha = tiny_clip_file()
    url = server.add(f"/{sha}/ViT-B-32.pt", body[: len(body) // 2], announced=len(body))
    with pytest.raises(WeightsError) as error:
        load_backbone(BackboneSpec("ViT-B/32", None, download="auto"), url=url)
    message = str(error.value)
    assert url in message and f"stopped after {len(body) // 2} of {len(body)} bytes" in message
    assert left_in(clip_cache) == []


def test_never_fetches_and_says_where_the_file_goes(server, clip_cache):
    body, sha = tiny_clip_file()
    url = server.add(f"/{sha}/ViT-B-32.pt", body)
    with pytest.raises(WeightsError) as error:
        load_backbone(BackboneSpec("ViT-B/32", None, download="never"), url=url)
    message = str(error.value)
    assert str(clip_cache / "ViT-B-32.pt") in message and url in message and "download is 'never'" in message
    assert server.requests == [] and left_in(clip_cache) == []


def test_offline_auto_ends_in_the_error_naming_file_address_and_cause(offline, clip_cache):
    with pytest.raises(WeightsError) as error:
        load_backbone(BackboneSpec("ViT-B/32", None, download="auto"))
    message = str(error.value)
    assert str(clip_cache / "ViT-B-32.pt") in message and OFFICIAL in message
    assert "Temporary failure in name resolution" in message and left_in(clip_cache) == []


def test_a_missing_address_is_an_http_error_and_a_given_path_is_never_fetched(server, clip_cache, tmp_path):
    url = server.add("/" + "0" * 64 + "/ViT-B-32.pt", b"never asked for")
    with pytest.raises(WeightsError, match="HTTP 404"):
        load_backbone(BackboneSpec("ViT-B/32", None, download="auto"), url=url.replace("0" * 64, "1" * 64))
    with pytest.raises(WeightsError, match="nowhere.pt"):
        load_backbone(BackboneSpec("ViT-B/32", tmp_path / "nowhere.pt", download="auto"), url=url)
    assert server.requests == ["/" + "1" * 64 + "/ViT-B-32.pt"] and left_in(clip_cache) == []
    with pytest.raises(WeightsError, match="no SHA-256 in the address"):
        load_backbone(BackboneSpec("ViT-B/32", None, download="auto"), url=server.base + "/models/ViT-B-32.pt")


@pytest.fixture
def hub(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "_hub_dir", str(tmp_path / "hub"))
    return tmp_path / "hub" / "checkpoints"


def serve_face_alignment(server, monkeypatch, bodies: dict[str, bytes], names: dict[str, bytes] | None = None):
    """Point face_alignment's own address table at the server; each file named with the hash prefix of
    ``names[model]`` (default: of its own body), as the published names carry theirs."""
    from face_alignment import api
    from face_alignment.detection.sfd import sfd_detector

    names = names or bodies
    prefix = {model: hashlib.sha256(body).hexdigest()[:10] for model, body in names.items()}
    monkeypatch.setitem(sfd_detector.models_urls, "s3fd",
                        server.add(f"/s3fd-{prefix['s3fd']}.pth", bodies["s3fd"]))
    monkeypatch.setitem(api.models_urls, "2DFAN-4",
                        server.add(f"/2DFAN4-{prefix['2DFAN-4']}.pth.tar", bodies["2DFAN-4"]))


def test_face_alignment_files_are_fetched_and_checked_against_the_prefix_in_their_names(server, hub, monkeypatch):
    bodies = {"s3fd": b"detector weights" * 1000, "2DFAN-4": b"landmark weights" * 1000}
    serve_face_alignment(server, monkeypatch, bodies)
    files = face_alignment_weights()
    for model, file in files.items():
        assert ensure_file(file, "auto") == file.path and file.path.read_bytes() == bodies[model]
        assert file.path.parent == hub and file.is_published(hashlib.sha256(bodies[model]).hexdigest())
    assert left_in(hub) == sorted(file.path.name for file in files.values())


def test_a_face_alignment_file_whose_hash_is_not_its_name_s_is_refused(server, hub, monkeypatch):
    bodies = {"s3fd": b"detector weights" * 1000, "2DFAN-4": b"landmark weights" * 1000}
    serve_face_alignment(server, monkeypatch, bodies, names={"s3fd": b"other bytes", "2DFAN-4": bodies["2DFAN-4"]})
    file = face_alignment_weights()["s3fd"]
    with pytest.raises(WeightsError) as error:
        ensure_file(file, "auto")
    assert file.url in str(error.value) and hashlib.sha256(b"other bytes").hexdigest()[:10] in str(error.value)
    assert left_in(hub) == []


def test_face_alignment_offline_names_both_files_and_their_addresses(offline, hub):
    with pytest.raises(DetectorError) as error:
        make_detector("face_alignment", download="auto")
    message = str(error.value)
    for file in face_alignment_weights().values():
        assert str(file.path) in message and file.url in message
    assert "Temporary failure in name resolution" in message and left_in(hub) == []


def test_the_text_stage_fetches_the_cache_file_on_first_use(server, clip_cache, tmp_path, monkeypatch):
    """A fresh `clip.checkpoint: ''` run with download auto: fetched, verified, used and recorded."""
    body, sha = tiny_clip_file()
    monkeypatch.setitem(__import__("clip").clip._MODELS, "ViT-B/32", server.add(f"/{sha}/ViT-B-32.pt", body))
    params = tiny_params(**{"clip.checkpoint": "", "clip.download": "auto", "clip.device": "cpu"})
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, ["text"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    with h5py.File(tmp_path / "data/text/dfew.h5") as handle:
        assert handle.attrs["checkpoint_sha256"] == sha and not handle.attrs["random_weights"]
        assert handle.attrs["clip_source"] == str(clip_cache / "ViT-B-32.pt")
    assert left_in(clip_cache) == ["ViT-B-32.pt"]


def test_download_settings_are_checked_as_params():
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    assert params["clip"]["download"] == "auto" and params["faces"]["download"] == "auto"
    with pytest.raises(click.ClickException, match="params: clip.download must be one of auto, never"):
        backbone_spec({**params, "clip": {**params["clip"], "download": "sometimes"}})
    with pytest.raises(click.ClickException, match="params: faces.download must be one of auto, never"):
        faces_section({**params["faces"], "download": "sometimes"})
    assert faces_section({**params["faces"], "download": "never"}).detection.download == "never"
