"""``tg-dfer doctor``: one screen of what this machine has and lacks for each stage.

It only looks: no network (a missing weight file is reported with the address a run would fetch
it from), no GPU needed, nothing written; the exit status is 0 whatever it finds.

Cache sizes of the three datasets at the configured frames and views: faces.h5 at about 15 KB per
JPEG crop (224 px, quality 95; docs/datasets.md), features.h5 exactly N x V x F x D x 2 bytes
(float16). Clip counts (tg_dfer/datasets/protocols.py, from docs/datasets.md): DFEW 11,697 (the
single-labelled 5-fold protocol, the distribution's README), FERV39k 38,935 (All_scenes: the 31,088 train + 7,847 test clips its
lists are stated to hold), MAFW 9,172 (the 11-class single-expression set).
"""

from __future__ import annotations

import configparser
import importlib.metadata
import json
import platform
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import click

from pipeline.paths import DEMO_BACKBONE, DEMO_VIDEOS, uses_demo_backbone
from pipeline.settings.backbone import backbone_config
from pipeline.settings.clip import backbone_spec
from pipeline.settings.dataset import adapter, dataset_paths
from pipeline.settings.embed import embed_config
from pipeline.settings.faces import face_settings
from pipeline.settings.params import DEFAULT_PARAMS, load_params
from pipeline.settings.train import train_settings
from tg_dfer import cpu_profile
from tg_dfer.datasets.protocols import PROTOCOLS

DATASETS = {name: PROTOCOLS[adapter].clips for name, adapter in (("DFEW", "dfew"), ("FERV39k", "ferv39k"),
                                                                 ("MAFW", "mafw"))}
CROP_BYTES = 15_000  # one 224 px JPEG face crop at quality 95
# what the report calls a package -> its distribution on PyPI
PACKAGES = {"torch": "torch", "torchvision": "torchvision", "clip": "openai-clip", "av": "av",
            "ffmpeg-python": "ffmpeg-python", "h5py": "h5py", "dvc": "dvc", "opencv": "opencv-python",
            "face_alignment": "face-alignment"}
GB = 1e9


def package_versions() -> dict[str, str | None]:
    versions = {}
    for name, distribution in PACKAGES.items():
        try:
            versions[name] = importlib.metadata.version(distribution)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def ffmpeg_state() -> dict[str, Any]:
    from tg_dfer.video import VideoError, ffmpeg_binary

    try:
        binary = ffmpeg_binary()
        done = subprocess.run([binary, "-hide_banner", "-version"], capture_output=True, text=True, timeout=30)
        return {"binary": binary, "version": (done.stdout.splitlines() or [""])[0], "error": None}
    except (VideoError, OSError, subprocess.SubprocessError) as error:
        return {"binary": None, "version": None, "error": str(error)}


def cuda_state() -> dict[str, Any]:
    import torch

    state: dict[str, Any] = {"torch_cuda": torch.version.cuda, "available": torch.cuda.is_available(), "devices": []}
    if state["available"]:
        for index in range(torch.cuda.device_count()):
            properties = torch.cuda.get_device_properties(index)
            state["devices"].append({"name": properties.name, "memory_gb": round(properties.total_memory / GB, 1)})
    else:
        state["reason"] = ("this torch is built without CUDA" if torch.version.cuda is None
                           else "no CUDA device visible (driver, CUDA_VISIBLE_DEVICES)")
    return state


class Settings:
    """What the report needs, read by the settings modules from the params file, or the library's
    defaults when it cannot be read."""

    def __init__(self, params_path: str):
        from tg_dfer.backbone import ARCHITECTURES, BackboneSpec
        from tg_dfer.embed.images import EmbedConfig
        from tg_dfer.faces import FaceSettings
        from tg_dfer.model import ModelConfig

        self.error = None
        self.backbone, self.faces, self.embed = BackboneSpec(), FaceSettings(), EmbedConfig()
        self.text_tower = ModelConfig().needs_text_encoder
        self.adapter, self.root = "demo", DEMO_VIDEOS
        self.embed_dim = None  # D of the features
        try:
            params = load_params(params_path)
            self.adapter, self.root = adapter(params, params_path), dataset_paths(params).root
            self.backbone = backbone_spec(params, params_path)
            self.faces = face_settings(params, params_path)
            self.embed = embed_config(params, params_path)
            self.text_tower = train_settings(params, params_path).model.needs_text_encoder
            if self.demo_backbone:
                self.embed_dim = backbone_config(params, params_path).embed_dim
        except click.ClickException as error:
            self.error = f"{error.message}; the library's defaults are assumed"
        if self.embed_dim is None:
            self.embed_dim = ARCHITECTURES.get(self.backbone.name, {}).get("embed_dim")

    @property
    def demo_backbone(self) -> bool:
        """clip.checkpoint names the demo's own CLIP, which the backbone stage makes."""
        return uses_demo_backbone(self.backbone.checkpoint)


def weight_states(settings: Settings) -> list[dict[str, Any]]:
    """Every weight file a stage may read, with its state and which stages need it now."""
    from tg_dfer.backbone import WeightsError, backbone_weight_file
    from tg_dfer.detectors import face_alignment_weights
    from tg_dfer.hashes import sha256_file
    from tg_dfer.weights import file_state

    states = []
    spec = settings.backbone
    name = f"CLIP weights for {spec.name}"
    backbone_users = ["embed", "text", "predict"] + (["train"] if settings.text_tower else [])
    if spec.checkpoint == "random":
        state = {"name": name, "needed_by": [],
                 "note": "not used now: clip.checkpoint is random (seeded random weights, demo and tests only)"}
    elif spec.checkpoint:  # a file named by the params is used as it is, never downloaded
        path = Path(spec.checkpoint)
        state = {"name": name, "path": str(path), "present": path.is_file(), "download": "never",
                 "sha256": sha256_file(path) if path.is_file() else None, "needed_by": backbone_users}
        if settings.demo_backbone:
            state.update(made_by="the backbone stage", note=f"the demo's own CLIP: `dvc repro` makes {DEMO_BACKBONE}")
    else:
        try:
            state = {**file_state(backbone_weight_file(spec.name)), "needed_by": backbone_users,
                     "download": spec.download}
        except WeightsError as error:
            state = {"name": name, "error": str(error), "needed_by": backbone_users}
    states.append(state)
    detection = settings.faces.detection
    detector_users = ["faces"] if detection.detector == "face_alignment" else []
    try:
        for file in face_alignment_weights().values():
            states.append({**file_state(file), "needed_by": detector_users, "download": detection.download})
    except ImportError as error:
        states.append({"name": "face_alignment weights", "error": f"face_alignment is not installed ({error})",
                       "needed_by": detector_users})
    return states


def dvc_cache_copies(folder: Path) -> bool:
    """Whether DVC keeps its own copy of each output (cache.type unset or preferring copy), doubling the space."""
    config = configparser.ConfigParser()
    config.read([folder / ".dvc" / "config", folder / ".dvc" / "config.local"])
    kinds = config.get("cache", "type", fallback="reflink,copy").replace(" ", "").split(",")
    return kinds[0] in ("reflink", "copy")  # reflink needs a file system that has it (btrfs, XFS); else a copy


def disk_state(settings: Settings, folder: Path) -> dict[str, Any]:
    free = shutil.disk_usage(folder).free
    embed_dim = settings.embed_dim
    faces_frames = settings.faces.policy.frames_per_clip
    frames, views = settings.embed.frames_per_clip, settings.embed.views
    copies = 2 if dvc_cache_copies(folder) else 1
    datasets = {}
    for name, clips in DATASETS.items():
        faces = clips * faces_frames * CROP_BYTES
        features = clips * views * frames * embed_dim * 2 if embed_dim else None
        total = faces + (features or 0)
        datasets[name] = {"clips": clips, "faces_h5_bytes": faces, "features_h5_bytes": features,
                          "needed_bytes": total * copies, "fits": total * copies <= free}
    return {"folder": str(folder.resolve()), "free_bytes": free, "faces_frames_per_clip": faces_frames,
            "frames_per_clip": frames, "views": views, "embed_dim": embed_dim, "image_format": settings.faces.policy.image_format,
            "dvc_cache_copies": copies == 2, "datasets": datasets}


def stage_needs(report: dict[str, Any], settings: Settings) -> dict[str, list[str]]:
    """What each stage lacks on this machine (empty: nothing)."""
    packages, lacks = report["packages"], {stage: [] for stage in
                                           ("demo", "prepare", "faces", "embed", "qc", "text", "train", "evaluate",
                                            "predict")}
    for stage, names in {"demo": ["opencv"], "faces": ["av", "ffmpeg-python", "opencv"],
                         "embed": ["torch", "clip", "h5py"], "text": ["torch", "clip", "h5py"],
                         "train": ["torch", "h5py"], "evaluate": ["torch", "h5py"], "qc": ["h5py"],
                         "predict": ["torch", "clip", "av", "opencv"]}.items():
        lacks[stage] += [f"package {name}" for name in names if packages[name] is None]
    if settings.faces.detection.detector == "face_alignment" and packages["face_alignment"] is None:
        lacks["faces"].append("package face_alignment (faces.detector is face_alignment)")
    if settings.adapter != "demo" and not settings.root.exists():  # the demo stage makes the demo's
        lacks["prepare"].append(f"the dataset at dataset.root {settings.root} (not found)")
    if report["ffmpeg"]["binary"] is None:
        for stage in ("demo", "faces", "predict"):
            lacks[stage].append("an ffmpeg executable")
    for weights in report["weights"]:
        missing = weights.get("error") or not weights.get("present")
        if missing and weights.get("download") != "auto" and not weights.get("made_by"):
            for stage in weights["needed_by"]:
                lacks[stage].append(f"{weights['name']} ({weights.get('path', weights.get('error'))})")
    return lacks


def profile_state() -> dict[str, Any]:
    """The CPU profile a torch command here would run under, and why it would not be the reference one."""
    previous = cpu_profile.activate()
    try:
        return {"requested": cpu_profile.requested(), "not_in_effect": cpu_profile.not_in_effect(),
                "record": cpu_profile.record("cpu")}
    finally:
        cpu_profile.restore(previous)


def collect(params_path: str) -> dict[str, Any]:
    settings = Settings(params_path)
    report = {"schema": "tg-dfer/doctor/2", "params": {"file": params_path, "error": settings.error},
              "python": {"version": platform.python_version(), "executable": sys.executable},
              "packages": package_versions(), "ffmpeg": ffmpeg_state(), "cuda": cuda_state(),
              "cpu_profile": profile_state(),
              "weights": weight_states(settings), "disk": disk_state(settings, Path("."))}
    report["stages"] = stage_needs(report, settings)
    return report


def _weights_line(state: dict[str, Any]) -> list[str]:
    users = ", ".join(state["needed_by"]) or "no stage with these params"
    if state.get("note"):
        users += f"; {state['note']}"
    if state.get("error"):
        return [f"  {state['name']}: {state['error']} (needed by {users})"]
    if "present" not in state:  # random weights: no file
        return [f"  {state['name']}: {state['note']}"]
    if state["present"]:
        published = state.get("is_published")
        verdict = ("" if published is None else ", the published file" if published
                   else f", NOT the published file ({state['published_sha256']})")
        lines = [f"  {state['name']}: {state['path']}, SHA-256 {state['sha256']}{verdict}"]
    elif state.get("made_by"):
        lines = [f"  {state['name']}: not made yet at {state['path']}; {state['made_by']} makes it"]
    elif "url" not in state:
        lines = [f"  {state['name']}: MISSING at {state['path']} (the file clip.checkpoint names)"]
    else:
        fetch = (f"fetched on first use from {state['url']} (download auto, if this machine reaches it)"
                 if state["download"] == "auto" else f"not downloaded (download never): copy it from {state['url']}")
        lines = [f"  {state['name']}: MISSING at {state['path']}; {fetch}"]
    return lines + [f"    needed by: {users}"]


def render(report: dict[str, Any]) -> str:
    lines = [f"tg-dfer doctor ({report['params']['file']})"]
    if report["params"]["error"]:
        lines.append(f"  params: {report['params']['error']}")
    lines.append(f"Python {report['python']['version']} ({report['python']['executable']})")
    lines.append("packages: " + ", ".join(f"{name} {version or 'MISSING'}" for name, version in report["packages"].items()))
    ffmpeg = report["ffmpeg"]
    lines.append(f"ffmpeg: {ffmpeg['binary']} ({ffmpeg['version']})" if ffmpeg["binary"] else f"ffmpeg: MISSING ({ffmpeg['error']})")
    cuda = report["cuda"]
    if cuda["available"]:
        lines.append(f"CUDA {cuda['torch_cuda']}: " + ", ".join(f"{d['name']} ({d['memory_gb']} GB)" for d in cuda["devices"]))
    else:
        lines.append(f"CUDA: none ({cuda['reason']}): every stage runs on the CPU (embed slowly)")
    profile = report["cpu_profile"]
    if profile["record"]["name"] == "reference":
        lines.append("CPU profile: reference (AVX2 kernels, MKL COMPATIBLE, 2 threads): the committed bytes on any AVX2 CPU")
    else:
        why = "; ".join(profile["not_in_effect"]) if profile["requested"] == "reference" else "TG_DFER_CPU_PROFILE=native"
        lines.append(f"CPU profile: {profile['record']['name']} ({why}): CPU results depend on this machine; "
                     "check-metrics holds them to the seed band")
    lines.append("weights:")
    for state in report["weights"]:
        lines += _weights_line(state)
    disk = report["disk"]
    note = " (x2: DVC keeps a copy in .dvc/cache)" if disk["dvc_cache_copies"] else ""
    lines.append(f"disk: {disk['free_bytes'] / GB:.1f} GB free at {disk['folder']}; caches at "
                 f"{disk['faces_frames_per_clip']} face frames, {disk['frames_per_clip']} frames x {disk['views']} "
                 f"views, D {disk['embed_dim'] or '?'}{note}:")
    for name, sizes in disk["datasets"].items():
        features = f"{sizes['features_h5_bytes'] / GB:.2f} GB" if sizes["features_h5_bytes"] is not None else "?"
        lines.append(f"  {name:<8} {sizes['clips']:>6,} clips: faces.h5 ~{sizes['faces_h5_bytes'] / GB:.1f} GB, "
                     f"features.h5 {features}; needs {sizes['needed_bytes'] / GB:.1f} GB: "
                     + ("fits" if sizes["fits"] else "DOES NOT FIT"))
    if disk["image_format"] != "jpeg":
        lines.append(f"  (faces.image_format is {disk['image_format']}: crops are larger than the JPEG estimate)")
    lines.append("stages:")
    for stage, lacks in report["stages"].items():
        lines.append(f"  {stage:<9} " + ("ok" if not lacks else "lacks " + "; ".join(lacks)))
    return "\n".join(lines)


@click.command("doctor")
@click.option("--params", "params_path", default=DEFAULT_PARAMS, show_default=True, help="Parameter file.")
@click.option("--json", "as_json", is_flag=True, help="The report as JSON on standard output.")
def doctor(params_path: str, as_json: bool) -> None:
    """Say what this machine has and lacks for each stage: Python and package versions, ffmpeg,
    CUDA and the GPU, each weight file (present, its SHA-256 and whether it is the published one,
    where it goes, whether it would be downloaded), and free disk against the caches of DFEW,
    FERV39k and MAFW at the configured faces.frames_per_clip, embed.frames_per_clip and
    embed.views. Offline, without a GPU, and writes nothing; exits 0.
    """
    report = collect(params_path)
    click.echo(json.dumps(report, indent=1) if as_json else render(report))
