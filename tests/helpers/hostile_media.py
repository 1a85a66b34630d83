"""Hostile inputs for the robustness tests, each built on the spot with the bundled ffmpeg.

``build_hostile_set(root)`` writes every case under ``root`` and returns them as :class:`Case` s:
the path relative to ``root`` and the face statuses the pipeline may give it. Clips that hold a
face are rendered by the demo renderer at a small size, so the whole set stays a few hundred kB.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from tg_dfer.demo.clips import DemoConfig, render_clip
from tg_dfer.video import ffmpeg_binary

FACE_SIZE = 128
NOT_FAILED = ("ok", "partial", "no_face")
WITH_FACE = ("ok", "partial")


@dataclass(frozen=True)
class Case:
    path: str  # relative to the dataset root
    statuses: tuple[str, ...]  # the face statuses the pipeline may record
    reason: str = ""  # a piece of the recorded reason, when the status is not ok


def face_frames(count: int, seed: int = 0) -> np.ndarray:
    """(count, 128, 128, 3) uint8 frames of a rendered demo face."""
    config = DemoConfig(frame_size=FACE_SIZE, min_frames=max(12, count), max_frames=max(12, count))
    frames, _, _ = render_clip(3, np.random.default_rng(seed), config)
    return frames[:count]


def ffmpeg(*args: str, frames: np.ndarray | None = None) -> None:
    """Run the bundled ffmpeg; ``frames`` (T, H, W, 3) RGB are fed as raw video on stdin."""
    command = [ffmpeg_binary(), "-hide_banner", "-nostdin", "-loglevel", "error", "-y"]
    if frames is not None:
        _, height, width, _ = frames.shape
        command += ["-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{width}x{height}", "-framerate", "25", "-i", "-"]
    data = None if frames is None else np.ascontiguousarray(frames).tobytes()
    done = subprocess.run(command + list(args), input=data, capture_output=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"ffmpeg {' '.join(args)}: {done.stderr.decode(errors='replace')}")


def h264(path: Path, frames: np.ndarray, *extra: str) -> None:
    ffmpeg("-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", *extra, str(path), frames=frames)


def build_hostile_set(root: Path) -> list[Case]:
    root.mkdir(parents=True, exist_ok=True)
    face = face_frames(12)
    cases = []

    def add(path: str, statuses: tuple[str, ...], reason: str = "") -> Path:
        cases.append(Case(path, statuses, reason))
        return root / path

    h264(add("good.mp4", WITH_FACE), face)
    h264(add("good again.mp4", WITH_FACE), face_frames(12, seed=1))
    add("zero.mp4", ("failed",), "0 bytes").write_bytes(b"")
    add("text.mp4", ("failed",), "not a readable video").write_text("this is a text file, not a video\n" * 40)
    noise_bytes = np.random.default_rng(0).integers(0, 256, 20000, dtype=np.uint8).tobytes()
    add("random.mp4", ("failed",), "not a readable video").write_bytes(noise_bytes)
    # Without +faststart the index (moov) is at the end: cutting the file loses it.
    whole = root / "whole.tmp.mp4"
    h264(whole, face)
    data = whole.read_bytes()
    add("truncated_index.mp4", ("failed",), "not a readable video").write_bytes(data[: len(data) * 2 // 3])
    whole.unlink()
    # With the index first, a cut file still holds its first frames: they are used.
    h264(whole, face, "-movflags", "+faststart")
    data = whole.read_bytes()
    add("truncated_frames.mp4", NOT_FAILED).write_bytes(data[: len(data) * 2 // 3])
    whole.unlink()
    h264(add("one_frame.mp4", WITH_FACE), face[:1])
    h264(add("five_frames.mp4", WITH_FACE), face[:5])
    h264(add("tiny_2x2.mp4", ("failed",), "too small"), np.full((4, 2, 2, 3), 128, np.uint8))
    uhd = np.zeros((2, 2160, 3840, 3), np.uint8)
    uhd[:, :, 840:3000] = np.stack([cv2.resize(frame, (2160, 2160)) for frame in face[:2]])
    h264(add("uhd_4k.mp4", WITH_FACE), uhd)
    ffmpeg("-c:v", "ffv1", "-pix_fmt", "gray", str(add("grey.mkv", WITH_FACE)), frames=face)
    ffmpeg("-f", "lavfi", "-i", "sine=frequency=440:duration=0.5", "-c:a", "aac",
           str(add("audio_only.mp4", ("failed",), "no video stream")))
    # Stored lying on its side (160 x 128 upright, 128 x 160 stored); the rotation metadata turns
    # it upright, as phones do.
    upright = np.pad(face, ((0, 0), (16, 16), (0, 0), (0, 0)))
    sideways = root / "sideways.tmp.mp4"
    h264(sideways, np.ascontiguousarray(np.rot90(upright, k=-1, axes=(1, 2))))
    ffmpeg("-display_rotation:v:0", "90", "-i", str(sideways), "-c", "copy", str(add("rotated.mp4", WITH_FACE)))
    sideways.unlink()
    # Irregular frame times: 40 ms for six frames, then 130 ms.
    h264(add("variable_rate.mp4", WITH_FACE), face, "-vf", "setpts='if(lt(N,6),N*0.04,0.24+(N-6)*0.13)/TB'",
         "-fps_mode", "passthrough")
    ffmpeg(str(add("animated.gif", NOT_FAILED)), frames=face)
    ffmpeg("-c:v", "flv1", str(add("clip.flv", WITH_FACE)), frames=face)
    ffmpeg("-c:v", "mpeg4", str(add("mpeg4.avi", WITH_FACE)), frames=face)  # MPEG-4 Part 2, codec tag FMP4
    # A list of other files (FFmpeg's concat format) under a video's name: its content is not followed.
    add("file_list.mp4", ("failed",), "lists of other files").write_text("ffconcat version 1.0\nfile good.mp4\n")
    h264(add("spaced name ü ñ 表情 é.mp4", WITH_FACE), face)
    noise = np.random.default_rng(1).integers(0, 256, (8, 64, 64, 3), dtype=np.uint8)
    h264(add("no_face.mp4", ("no_face",), "no face"), noise)
    half = face.copy()
    half[6:] = 90
    h264(add("face_in_half.mp4", ("partial",), "face found in"), half)
    folder = add("frames", WITH_FACE)
    folder.mkdir()
    for index, frame in enumerate(face[:8]):
        cv2.imwrite(str(folder / f"frame{index + 1}.png"), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    (folder / "notes.txt").write_text("not a frame\n")
    (folder / ".DS_Store").write_bytes(b"\0\1\2")
    broken = add("frames_broken_image", ("failed",), "unreadable image")
    broken.mkdir()
    for index, frame in enumerate(face[:4]):
        cv2.imwrite(str(broken / f"{index:03d}.jpg"), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    (broken / "001.jpg").write_text("a text file named like a frame\n")
    add("empty_folder", ("failed",), "no frame images").mkdir()
    image = add("still_image.mp4", NOT_FAILED)
    cv2.imwrite(str(root / "still.png"), cv2.cvtColor(face[0], cv2.COLOR_RGB2BGR))
    image.write_bytes((root / "still.png").read_bytes())
    (root / "still.png").unlink()
    return cases
