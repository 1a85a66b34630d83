"""Probing and decoding of clips: video files through PyAV and ffmpeg-python, or folders of frame images.

A clip is opened once with :func:`open_video`; ``info.num_frames`` then tells how many frames there
are, and :meth:`Clip.read` decodes only the requested frame indices. For video files that is one
ffmpeg pass with a ``select`` filter, so a 16-frame sample of a long clip never materialises the
other frames in Python.

Probing reads structured metadata through PyAV (FFmpeg's libraries in-process): the stream, its
frame rate, and the size and rotation of its first decoded frame; frames are counted by demuxing
the stream's packets, which reads them without decoding, since container frame counts can be
absent or wrong. Decoding runs the ffmpeg executable: the system one when it is on PATH, otherwise
the binary shipped by ``imageio-ffmpeg``.
"""

from __future__ import annotations

import errno
import re
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import av
import cv2
import ffmpeg
import numpy as np

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
# Suffixes taken as videos when a folder is searched for clips (a file named explicitly is tried whatever it is).
VIDEO_SUFFIXES = (".mp4", ".m4v", ".mov", ".avi", ".divx", ".mkv", ".webm", ".flv", ".f4v", ".mpg", ".mpeg", ".vob",
                  ".wmv", ".asf", ".3gp", ".3g2", ".ts", ".mts", ".m2ts", ".ogv", ".gif", ".mxf", ".dv", ".y4m", ".rm",
                  ".rmvb")

# The demuxers a clip may be read with (FFmpeg's names; "mov" is mp4/mov/3gp, "matroska" mkv/webm):
# containers and elementary streams that hold their own pictures, and still images. Left out on
# purpose are formats that make FFmpeg open other files: playlists and lists of files (hls, dash,
# concat, imf) and image2, whose file-name patterns (img%03d.png) expand to other files.
VIDEO_FORMATS = ("mov", "avi", "matroska", "flv", "mpegts", "mpeg", "mpegvideo", "asf", "ogg", "gif", "apng", "mxf",
                 "dv", "nut", "rm", "ivf", "m4v", "h264", "hevc", "mjpeg", "yuv4mpegpipe", "png_pipe", "jpeg_pipe",
                 "bmp_pipe", "webp_pipe", "tiff_pipe")
# Every open of a video file, by PyAV and by the ffmpeg process, uses these together with a "file:"
# prefix on the name: a name such as "http:x.mp4" stays a local file, nothing inside a file can
# reach beyond local files, and formats that refer to other files are refused.
INPUT_OPTIONS = {"protocol_whitelist": "file", "format_whitelist": ",".join(VIDEO_FORMATS)}
# Decoders whose frame-threaded decoding in the bundled ffmpeg is not repeatable: the same Theora
# file decoded twice gave different frames in 1 run of 12 (frames 4-11 off by up to 155 levels).
SINGLE_THREAD_CODECS = ("theora",)

# Frames smaller than this on a side are refused: the smallest face either detector finds is
# 16 pixels (S3FD's smallest anchor; the Haar cascade's window is 24).
MIN_FRAME_SIDE = 16
# FFmpeg's colour conversion and scaling (swscale) pick SIMD code by CPU, and that code rounds
# differently from the C code (measured here: an rgb24 decode of a demo clip gave other bytes with
# -cpuflags 0). These flags make every path compute the C code's exact result: decoded frames and
# encoded clips are then the same bytes on any x86 CPU.
BITEXACT = "accurate_rnd+bitexact+full_chroma_int"


# ffmpeg's expression parser refuses a select expression of more terms ("Cannot allocate memory").
SELECT_LIMIT = 100


class VideoError(Exception):
    """A clip that cannot be probed or decoded. The message names the file and the reason."""


def ffmpeg_binary() -> str:
    """Path of the ffmpeg executable: the system one when present, else imageio-ffmpeg's."""
    system = shutil.which("ffmpeg")
    if system:
        return system
    try:
        import imageio_ffmpeg
    except ImportError as error:  # pragma: no cover - it is a declared dependency
        raise VideoError("no ffmpeg on PATH and imageio-ffmpeg is not installed") from error
    return imageio_ffmpeg.get_ffmpeg_exe()


@dataclass(frozen=True)
class ClipInfo:
    """What decoding needs to know about a clip. Sizes are after rotation metadata is applied."""

    width: int
    height: int
    num_frames: int
    fps: float
    rotation: int = 0
    codec: str = ""  # the decoder's name (video files)


def natural_key(name: str) -> list:
    """Sort key that orders ``frame2`` before ``frame10``."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", name)]


class Clip:
    """A decodable clip. Subclasses implement :meth:`read`."""

    path: Path
    info: ClipInfo

    def read(self, indices: Sequence[int], max_side: int | None = None) -> np.ndarray:
        """Frames at ``indices`` (any order, repeats allowed) as a (K, H, W, 3) uint8 RGB array.

        ``max_side`` downscales frames whose longer side exceeds it, keeping the aspect ratio.
        """
        raise NotImplementedError

    def stream(self, indices: Sequence[int], max_side: int | None = None) -> Iterator[tuple[int, np.ndarray]]:
        """(index, frame) for each distinct index of ``indices`` in increasing order, decoded lazily.

        For many frames of a long clip (sliding windows): only the frames not yet consumed are held.
        """
        for index in np.unique(_check_indices(self.path, indices, self.info.num_frames)):
            yield int(index), self.read([index], max_side)[0]


def scaled_size(width: int, height: int, max_side: int | None) -> tuple[int, int]:
    """(width, height) shrunk so the longer side is at most ``max_side``; even, for ffmpeg."""
    if not max_side or max(width, height) <= max_side:
        return width, height
    factor = max_side / max(width, height)
    return max(2, int(round(width * factor / 2)) * 2), max(2, int(round(height * factor / 2)) * 2)


def _check_indices(path: Path, indices: Sequence[int], num_frames: int) -> np.ndarray:
    wanted = np.asarray(indices, dtype=np.int64)
    if wanted.size == 0:
        raise VideoError(f"{path}: no frame indices requested")
    if wanted.min() < 0 or wanted.max() >= num_frames:
        raise VideoError(f"{path}: frame index out of range 0..{num_frames - 1}")
    return wanted


class VideoClip(Clip):
    """A video file, probed with PyAV and decoded with ffmpeg."""

    def __init__(self, path: Path, timeout: float | None = None):
        self.path = path
        self.timeout = timeout
        self.binary = ffmpeg_binary()
        self.stream_index, self.info = self._probe()

    def _run(self, stream, what: str) -> tuple[bytes, str]:
        args = stream.compile(cmd=self.binary)
        try:
            done = subprocess.run(args, capture_output=True, timeout=self.timeout, check=False)
        except subprocess.TimeoutExpired as error:
            raise self._too_long(what) from error
        return done.stdout, done.stderr.decode("utf-8", errors="replace")

    def _too_long(self, what: str) -> VideoError:
        return VideoError(f"{self.path}: {what} took longer than the {self.timeout:g} s decode timeout")

    def _video(self):
        """The probed video stream as an ffmpeg-python input node."""
        threads = {"threads": 1} if self.info.codec in SINGLE_THREAD_CODECS else {}
        return ffmpeg.input(f"file:{self.path}", **INPUT_OPTIONS, **threads)[str(self.stream_index)]

    def _probe(self) -> tuple[int, ClipInfo]:
        """The index of the video stream to decode and what decoding needs to know about it."""
        if not self.path.exists():
            raise VideoError(f"{self.path}: no such file")
        if not self.path.is_file():
            raise VideoError(f"{self.path}: not a regular file")
        if self.path.stat().st_size == 0:
            raise VideoError(f"{self.path}: empty file (0 bytes)")
        started = time.monotonic()
        try:
            # The timeout interrupts reading and stream analysis inside the open; the count below
            # checks the time itself between packets.
            container = av.open(f"file:{self.path}", container_options=dict(INPUT_OPTIONS), timeout=self.timeout,
                                metadata_errors="replace")
        except av.error.ExitError as error:
            raise self._too_long("probing") from error
        except av.FFmpegError as error:
            raise VideoError(f"{self.path}: not a readable video ({_open_failure(error)})") from error
        with container:
            return self._probe_stream(container, started)

    def _probe_stream(self, container, started: float) -> tuple[int, ClipInfo]:
        pictures = av.stream.Disposition.attached_pic
        videos = [stream for stream in container.streams.video if not stream.disposition & pictures]
        if not videos:
            others = list(dict.fromkeys(stream.type for stream in container.streams if stream.type != "video"))
            if container.streams.video:
                others.append("a cover picture")
            reason = f"no video stream, only {', '.join(others)}" if others else "no streams"
            raise VideoError(f"{self.path}: not a readable video ({reason})")
        stream = videos[0]
        if stream.codec_context is None:
            raise VideoError(f"{self.path}: no decoder for its video codec")
        stream.codec_context.thread_count = 1  # one frame is wanted: frame threads would only delay it
        packets, first, decode_error = 0, None, ""
        try:
            for packet in container.demux(stream):
                if self.timeout is not None and time.monotonic() - started > self.timeout:
                    raise self._too_long("probing")
                if packet.size:
                    packets += 1
                if first is None:  # the empty packet at the end drains the decoder
                    try:
                        frames = packet.decode()
                    except av.FFmpegError as error:
                        decode_error = error.strerror
                        continue
                    first = frames[0] if frames else None
        except av.error.ExitError as error:
            raise self._too_long("probing") from error
        except av.FFmpegError:
            pass  # a damaged tail: the packets before it are counted, and read() copes with a short stream
        if packets == 0:
            raise VideoError(f"{self.path}: video stream holds no frames")
        if first is None:
            reason = decode_error or "decoder produced no frames"
            raise VideoError(f"{self.path}: video stream has no decodable frames ({stream.codec_context.name}: {reason})")
        rotation = int(round(first.rotation)) % 360
        width, height = (first.height, first.width) if rotation in (90, 270) else (first.width, first.height)
        fps = float(stream.average_rate or stream.guessed_rate or 0)
        return stream.index, ClipInfo(width=width, height=height, num_frames=packets, fps=fps, rotation=rotation,
                                      codec=stream.codec_context.name)

    def read(self, indices: Sequence[int], max_side: int | None = None) -> np.ndarray:
        wanted = _check_indices(self.path, indices, self.info.num_frames)
        unique = np.unique(wanted)
        width, height = scaled_size(self.info.width, self.info.height, max_side)
        if len(unique) > SELECT_LIMIT:
            frames = np.stack([frame for _, frame in self.stream(unique, max_side)])
        else:
            frames = self._decode_selected(unique, width, height)
        if len(frames) != len(unique):
            frames = self._decode_all_keep(unique, width, height)
        position = {int(index): row for row, index in enumerate(unique)}
        return frames[[position[int(index)] for index in wanted]]

    def stream(self, indices: Sequence[int], max_side: int | None = None) -> Iterator[tuple[int, np.ndarray]]:
        # One sequential decoding pass read from the pipe frame by frame: a select expression
        # takes at most SELECT_LIMIT frames, and one pass per chunk would decode a long video
        # many times.
        wanted = np.unique(_check_indices(self.path, indices, self.info.num_frames))
        width, height = scaled_size(self.info.width, self.info.height, max_side)
        video = self._rgb(self._video(), width, height)
        args = (video.output("pipe:", format="rawvideo", pix_fmt="rgb24", fps_mode="passthrough")
                .global_args("-hide_banner", "-nostdin", "-loglevel", "error").compile(cmd=self.binary))
        frame_bytes = width * height * 3
        with tempfile.TemporaryFile() as log:
            process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=log)
            try:
                last, position, number = None, 0, 0
                while position < len(wanted):
                    raw = process.stdout.read(frame_bytes)
                    if len(raw) < frame_bytes:
                        break
                    last = np.frombuffer(raw, dtype=np.uint8).reshape(height, width, 3)
                    if number == wanted[position]:
                        yield number, last
                        position += 1
                    number += 1
                if position < len(wanted):
                    if last is None:
                        process.wait()
                        log.seek(0)
                        reason = _last_error_line(log.read().decode("utf-8", errors="replace"))
                        raise VideoError(f"{self.path}: decoding failed ({reason or 'decoder produced no frames'})")
                    # As read(): indices past the real end of a stream get its last decoded frame.
                    for index in wanted[position:]:
                        yield int(index), last
            finally:
                process.kill()
                process.stdout.close()
                process.wait()

    def _rgb(self, video, width: int, height: int):
        """``video`` as rgb24 frames of ``width`` x ``height``, converted by a scale filter of its own with
        the bit-exact flags: the conversion FFmpeg would insert by itself ignores -sws_flags inside a
        filter graph (measured: a select graph gave other bytes with -cpuflags 0)."""
        scaling = "area" if (width, height) != (self.info.width, self.info.height) else "bicubic"
        return video.filter("scale", width, height, flags=f"{scaling}+{BITEXACT}").filter("format", "rgb24")

    def _decode(self, video, width: int, height: int, what: str) -> np.ndarray:
        output = self._rgb(video, width, height).output("pipe:", format="rawvideo", pix_fmt="rgb24",
                                                        fps_mode="passthrough")
        raw, log = self._run(output.global_args("-hide_banner", "-nostdin", "-loglevel", "error"), what)
        frame_bytes = width * height * 3
        if len(raw) < frame_bytes:
            reason = _last_error_line(log) or "decoder produced no frames"
            raise VideoError(f"{self.path}: {what} failed ({reason})")
        count = len(raw) // frame_bytes
        return np.frombuffer(raw[: count * frame_bytes], dtype=np.uint8).reshape(count, height, width, 3)

    def _decode_selected(self, unique: np.ndarray, width: int, height: int) -> np.ndarray:
        # ffmpeg-python escapes the commas itself.
        expression = "+".join(f"eq(n,{int(index)})" for index in unique)
        video = self._video().filter("select", expression)
        return self._decode(video, width, height, "decoding sampled frames")

    def _decode_all_keep(self, unique: np.ndarray, width: int, height: int) -> np.ndarray:
        # Packet counts can disagree with decoded frames (broken or VFR streams): decode all and
        # keep what exists; indices past the real end fall back to the last decoded frame.
        every = self._decode(self._video(), width, height, "decoding")
        return every[np.minimum(unique, len(every) - 1)]


class FrameFolderClip(Clip):
    """A folder of frame images, in natural sort order of their file names."""

    def __init__(self, path: Path):
        self.path = path
        self.files = sorted(
            (entry for entry in path.iterdir() if entry.suffix.lower() in IMAGE_SUFFIXES and entry.is_file()),
            key=lambda entry: natural_key(entry.name),
        )
        if not self.files:
            raise VideoError(f"{path}: folder holds no frame images ({', '.join(IMAGE_SUFFIXES)})")
        first = self._load(self.files[0])
        self.info = ClipInfo(width=first.shape[1], height=first.shape[0], num_frames=len(self.files), fps=0.0)

    def _load(self, file: Path) -> np.ndarray:
        image = cv2.imread(str(file), cv2.IMREAD_COLOR)
        if image is None:
            raise VideoError(f"{file}: unreadable image")
        return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)

    def read(self, indices: Sequence[int], max_side: int | None = None) -> np.ndarray:
        wanted = _check_indices(self.path, indices, self.info.num_frames)
        width, height = scaled_size(self.info.width, self.info.height, max_side)
        frames = {}
        for index in np.unique(wanted):
            image = self._load(self.files[int(index)])
            if image.shape[:2] != (height, width):
                image = cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)
            frames[int(index)] = image
        return np.stack([frames[int(index)] for index in wanted])


def open_video(path: str | Path, timeout: float | None = None) -> Clip:
    """Open a video file or a folder of frames; raises :class:`VideoError` with the reason."""
    path = Path(path)
    clip = FrameFolderClip(path) if path.is_dir() else VideoClip(path, timeout=timeout)
    if min(clip.info.width, clip.info.height) < MIN_FRAME_SIDE:
        raise VideoError(f"{path}: frames of {clip.info.width}x{clip.info.height} pixels are too small to hold a face "
                         f"(under {MIN_FRAME_SIDE} pixels on a side)")
    return clip


# x264's output depends on its thread count, which it otherwise takes from the cores (1.5 per core): a
# fixed count gives the same file on any machine. 3 is what 2 cores chose.
ENCODER_THREADS = 3
# ... and on the CPU's SIMD unless told to be CPU-independent (measured: its AVX2 and plain-C paths gave
# other bytes; with cpu-independent=1 every asm level here gives the same file).
X264_PARAMS = "cpu-independent=1"


def write_video(path: str | Path, frames: np.ndarray, fps: float = 25.0, crf: int = 20,
                container: str | None = None) -> None:
    """Encode (T, H, W, 3) uint8 RGB frames as H.264 with the real ffmpeg, in ``container`` (default:
    the one the file name's suffix says, an mp4 for the project's own clips)."""
    frames = np.ascontiguousarray(frames, dtype=np.uint8)
    count, height, width, _ = frames.shape
    stream = (
        ffmpeg.input("pipe:", format="rawvideo", pix_fmt="rgb24", s=f"{width}x{height}", framerate=fps)
        .output(f"file:{path}", vcodec="libx264", pix_fmt="yuv420p", crf=crf, preset="veryfast", r=fps,
                threads=ENCODER_THREADS, sws_flags=f"bicubic+{BITEXACT}", **{"x264-params": X264_PARAMS},
                **({"format": container} if container else {}))
        .global_args("-hide_banner", "-nostdin", "-loglevel", "error", "-y")
    )
    done = subprocess.run(stream.compile(cmd=ffmpeg_binary()), input=frames.tobytes(), capture_output=True, check=False)
    if done.returncode != 0:
        raise VideoError(f"{path}: encoding failed ({_last_error_line(done.stderr.decode(errors='replace'))})")


def _open_failure(error: av.FFmpegError) -> str:
    if error.errno == errno.EINVAL:  # what the format whitelist answers
        return f"{error.strerror}; playlists, lists of other files and file-name patterns are not read"
    return error.strerror


def _last_error_line(log: str) -> str:
    lines = [line.strip() for line in log.splitlines() if line.strip()]
    for line in reversed(lines):
        if not line.startswith(("frame=", "video:", "[out#")):
            return line[:200]
    return ""
