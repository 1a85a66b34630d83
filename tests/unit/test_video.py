import os
import shutil
import subprocess
import sys

import cv2
import numpy as np
import pytest

from tg_dfer.video import FrameFolderClip, VideoError, natural_key, open_video, scaled_size, write_video

from helpers import REPO
from helpers.hostile_media import ffmpeg
from helpers.media import frame_number, numbered_frames

# The containers and codecs researchers' corpora come in, each encoded here by the bundled ffmpeg
# from numbered frames: (file name, encoder arguments).
CORPUS_FORMATS = [
    ("mpeg4.avi", ["-c:v", "mpeg4"]),  # MPEG-4 Part 2 (FMP4), as older emotion corpora ship
    ("xvid.avi", ["-c:v", "libxvid", "-bf", "2"]),
    ("mjpeg.avi", ["-c:v", "mjpeg", "-pix_fmt", "yuvj420p"]),
    ("msmpeg4.avi", ["-c:v", "msmpeg4"]),
    ("h264.mov", ["-c:v", "libx264", "-pix_fmt", "yuv420p"]),
    ("prores.mov", ["-c:v", "prores"]),
    ("h264.mkv", ["-c:v", "libx264", "-pix_fmt", "yuv420p"]),
    ("hevc.mkv", ["-c:v", "libx265", "-pix_fmt", "yuv420p", "-x265-params", "log-level=error"]),
    ("vp8.webm", ["-c:v", "libvpx"]),
    ("vp9.webm", ["-c:v", "libvpx-vp9"]),
    ("flv1.flv", ["-c:v", "flv"]),
    ("h264.flv", ["-c:v", "libx264", "-pix_fmt", "yuv420p"]),
    ("mpeg2.ts", ["-c:v", "mpeg2video"]),
    ("h264.ts", ["-c:v", "libx264", "-pix_fmt", "yuv420p"]),
    ("mpeg1.mpg", ["-c:v", "mpeg1video"]),
    ("wmv2.wmv", ["-c:v", "wmv2"]),
    ("theora.ogv", ["-c:v", "libtheora"]),
    ("animated.gif", []),
    ("grey.mp4", ["-c:v", "libx264", "-pix_fmt", "gray"]),
    ("grey.mkv", ["-c:v", "ffv1", "-pix_fmt", "gray"]),
    ("10bit.mp4", ["-c:v", "libx264", "-pix_fmt", "yuv420p10le"]),
    ("10bit.webm", ["-c:v", "libvpx-vp9", "-pix_fmt", "yuv420p10le"]),
    ("10bit.mkv", ["-c:v", "libx265", "-pix_fmt", "yuv420p10le", "-x265-params", "log-level=error"]),
]
# Odd frame sizes, in the codecs that take them.
ODD_SIZE_FORMATS = [
    ("odd.avi", ["-c:v", "mpeg4"]),
    ("odd_mjpeg.avi", ["-c:v", "mjpeg", "-pix_fmt", "yuvj420p"]),
    ("odd.mkv", ["-c:v", "ffv1"]),
    ("odd.webm", ["-c:v", "libvpx-vp9"]),
    ("odd.mp4", ["-c:v", "libx264", "-pix_fmt", "yuv444p"]),
    ("odd.gif", []),
]


@pytest.fixture(scope="module")
def numbered_video(tmp_path_factory):
    path = tmp_path_factory.mktemp("video") / "numbered.mp4"
    write_video(path, numbered_frames(30), fps=25)
    return path


def test_probe_counts_frames_and_size(numbered_video):
    info = open_video(numbered_video).info
    assert (info.width, info.height, info.num_frames) == (64, 48, 30)
    assert info.fps == pytest.approx(25, abs=0.01)


def test_read_returns_exactly_the_requested_frames_in_request_order(numbered_video):
    clip = open_video(numbered_video)
    wanted = [29, 0, 7, 7, 15]
    frames = clip.read(wanted)
    assert frames.shape == (5, 48, 64, 3) and frames.dtype == np.uint8
    assert [frame_number(f, 30) for f in frames] == wanted


def test_read_downscales_to_max_side(numbered_video):
    frames = open_video(numbered_video).read([3], max_side=32)
    assert frames.shape == (1, 24, 32, 3)
    assert scaled_size(1920, 1080, 640) == (640, 360)
    assert scaled_size(100, 50, 640) == (100, 50)


def test_out_of_range_index_is_a_video_error(numbered_video):
    with pytest.raises(VideoError, match="out of range"):
        open_video(numbered_video).read([30])


@pytest.mark.parametrize("content, reason", [
    (b"", "empty file"),
    (b"this is a text file, not a video\n" * 20, "not a readable video"),
    (bytes(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8)), "not a readable video"),
])
def test_broken_files_raise_video_error_naming_the_file(tmp_path, content, reason):
    path = tmp_path / "broken clip.mp4"
    path.write_bytes(content)
    with pytest.raises(VideoError, match=reason) as error:
        open_video(path)
    assert str(path) in str(error.value)


def test_missing_file_is_a_video_error(tmp_path):
    with pytest.raises(VideoError, match="no such file"):
        open_video(tmp_path / "nothing.mp4")


def test_frame_folder_in_natural_order_ignoring_other_files(tmp_path):
    import cv2

    frames = numbered_frames(12)
    for index, frame in enumerate(frames):
        cv2.imwrite(str(tmp_path / f"frame{index + 1}.png"), frame)
    (tmp_path / "notes.txt").write_text("not a frame")
    clip = open_video(tmp_path)
    assert isinstance(clip, FrameFolderClip)
    assert clip.info.num_frames == 12
    assert [frame_number(f, 12) for f in clip.read([0, 9, 10, 11])] == [0, 9, 10, 11]
    assert sorted(["f10", "f2", "f1"], key=natural_key) == ["f1", "f2", "f10"]


def test_empty_frame_folder_is_a_video_error(tmp_path):
    (tmp_path / "readme.txt").write_text("x")
    with pytest.raises(VideoError, match="no frame images"):
        open_video(tmp_path)


def test_real_media_sampled_decode_equals_full_decode(media):
    # no_face.mp4 holds 98 packets but decodes to 95 frames: indices past the real end must still
    # give the last decoded frame rather than an error.
    for path in sorted(media.glob("*/*")):
        if path.suffix == ".jpg":
            continue
        clip = open_video(path)
        width, height = scaled_size(clip.info.width, clip.info.height, 64)
        decoded = clip._decode_all_keep(np.arange(clip.info.num_frames), width, height)
        assert len(np.unique(decoded.reshape(len(decoded), -1), axis=0)) > 1, path
        wanted = [0, clip.info.num_frames // 2, clip.info.num_frames - 1]
        assert np.array_equal(clip.read(wanted, max_side=64), decoded[wanted]), path


def assert_reads_every_frame(path, count: int, width: int, height: int) -> None:
    """The probe's size and frame count are right, and sampled frames equal a full decode."""
    clip = open_video(path)
    assert (clip.info.width, clip.info.height, clip.info.num_frames) == (width, height, count), path
    assert clip.info.fps == pytest.approx(25, abs=0.01), path
    decoded = clip._decode_all_keep(np.arange(count), width, height)
    assert len(decoded) == count, path
    wanted = [0, 3, count // 2, count - 1]
    sampled = clip.read(wanted)
    assert np.array_equal(sampled, decoded[wanted]), path
    assert [frame_number(frame, count) for frame in sampled] == wanted, path


@pytest.mark.parametrize("name, codec", CORPUS_FORMATS, ids=[name for name, _ in CORPUS_FORMATS])
def test_corpus_containers_and_codecs_read_every_frame(tmp_path, name, codec):
    ffmpeg(*codec, str(tmp_path / name), frames=numbered_frames(20, 48, 64))
    assert_reads_every_frame(tmp_path / name, 20, 64, 48)


@pytest.mark.parametrize("name, codec", ODD_SIZE_FORMATS, ids=[name for name, _ in ODD_SIZE_FORMATS])
def test_odd_frame_sizes_read_every_frame(tmp_path, name, codec):
    ffmpeg(*codec, str(tmp_path / name), frames=numbered_frames(12, 241, 321))
    assert_reads_every_frame(tmp_path / name, 12, 321, 241)
    assert open_video(tmp_path / name).read([5], max_side=64).shape == (1, 48, 64, 3)


def test_mpeg4_avi_of_the_issue_is_read(tmp_path):
    # A codec tag (FMP4 / 0x34504D46) in ffmpeg's log was once taken for the frame size.
    ffmpeg("-f", "lavfi", "-i", "testsrc=size=320x240:rate=25", "-t", "2", str(tmp_path / "x.avi"))
    clip = open_video(tmp_path / "x.avi")
    assert (clip.info.width, clip.info.height, clip.info.num_frames) == (320, 240, 50)
    decoded = clip._decode_all_keep(np.arange(50), 320, 240)
    assert len(decoded) == 50 and np.array_equal(clip.read([0, 24, 49]), decoded[[0, 24, 49]])


@pytest.mark.parametrize("make", ["mp4", "avi", "frames"])
def test_tiny_frames_are_refused_as_too_small(tmp_path, make):
    frames = numbered_frames(4, 2, 2)
    if make == "frames":
        path = tmp_path / "frames"
        path.mkdir()
        for index, frame in enumerate(frames):
            cv2.imwrite(str(path / f"{index}.png"), frame)
    else:
        path = tmp_path / f"tiny.{make}"
        ffmpeg(*(["-c:v", "libx264", "-pix_fmt", "yuv420p"] if make == "mp4" else ["-c:v", "mpeg4"]), str(path),
               frames=frames)
    with pytest.raises(VideoError, match="frames of 2x2 pixels are too small") as error:
        open_video(path)
    assert str(path) in str(error.value)


@pytest.mark.parametrize("suffix, depth", [(".png", "grey"), (".jpg", "colour"), (".png", "16-bit")])
def test_frame_folders_of_several_image_kinds(tmp_path, suffix, depth):
    frames = numbered_frames(9)
    for index, frame in enumerate(frames):
        image = {"grey": frame[..., 0], "colour": frame, "16-bit": frame[..., 0].astype(np.uint16) * 257}[depth]
        cv2.imwrite(str(tmp_path / f"img{index + 1:03d}{suffix}"), image)
    clip = open_video(tmp_path)
    assert (clip.info.width, clip.info.height, clip.info.num_frames) == (64, 48, 9)
    assert [frame_number(frame, 9) for frame in clip.read([0, 4, 8])] == [0, 4, 8]


def test_a_file_name_pattern_does_not_open_other_files(tmp_path):
    # img%03d.png would expand to img001.png, img002.png, ...: a sequence is read as a frame folder.
    for index, frame in enumerate(numbered_frames(5)):
        cv2.imwrite(str(tmp_path / f"img{index + 1:03d}.png"), frame)
    cv2.imwrite(str(tmp_path / "img%03d.png"), numbered_frames(5)[4])
    with pytest.raises(VideoError, match="file-name patterns are not read"):
        open_video(tmp_path / "img%03d.png")
    assert open_video(tmp_path).info.num_frames == 6


@pytest.mark.parametrize("name, text", [
    ("list.mp4", "ffconcat version 1.0\nfile good.mp4\n"),
    ("playlist.m3u8", "#EXTM3U\n#EXT-X-TARGETDURATION:1\n#EXTINF:1.0,\ngood.mp4\n#EXT-X-ENDLIST\n"),
])
def test_files_that_refer_to_other_files_are_not_read(tmp_path, name, text):
    write_video(tmp_path / "good.mp4", numbered_frames(10))
    (tmp_path / name).write_text(text)
    with pytest.raises(VideoError, match="not a readable video") as error:
        open_video(tmp_path / name)
    assert str(tmp_path / name) in str(error.value)


def test_an_audio_file_with_a_cover_picture_is_no_video(tmp_path):
    cv2.imwrite(str(tmp_path / "cover.png"), numbered_frames(1)[0])
    ffmpeg("-f", "lavfi", "-i", "sine=frequency=440:duration=0.5", "-i", str(tmp_path / "cover.png"), "-map", "0",
           "-map", "1", "-c:a", "aac", "-c:v", "png", "-disposition:v", "attached_pic", str(tmp_path / "song.m4a"))
    with pytest.raises(VideoError, match="no video stream, only audio, a cover picture"):
        open_video(tmp_path / "song.m4a")


def test_probing_is_bounded_by_the_decode_timeout(tmp_path):
    write_video(tmp_path / "long.mp4", numbered_frames(300, 48, 64))
    with pytest.raises(VideoError, match="probing took longer than the 1e-06 s decode timeout"):
        open_video(tmp_path / "long.mp4", timeout=1e-6)


def test_a_name_that_looks_like_a_url_is_a_local_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_video("http:x.mp4", numbered_frames(10))
    clip = open_video("http:x.mp4")
    assert clip.info.num_frames == 10
    assert [frame_number(frame, 10) for frame in clip.read([2, 7])] == [2, 7]
    assert [index for index, _ in clip.stream([1, 8])] == [1, 8]


def coded_frames(count: int) -> np.ndarray:
    """Flat frames whose red and green levels (16 apart, robust to H.264) spell their index in base 16."""
    frames = np.zeros((count, 48, 64, 3), np.uint8)
    frames[..., 0] = (np.arange(count) % 16 * 16 + 8)[:, None, None]
    frames[..., 1] = (np.arange(count) // 16 * 16 + 8)[:, None, None]
    return frames


def coded_index(frame: np.ndarray) -> int:
    red, green = frame[..., 0].mean(), frame[..., 1].mean()
    return int(round((green - 8) / 16)) * 16 + int(round((red - 8) / 16))


def test_stream_and_read_decode_more_frames_than_one_select_expression_takes(tmp_path):
    write_video(tmp_path / "long.mp4", coded_frames(240))
    clip = open_video(tmp_path / "long.mp4")
    wanted = np.arange(3, 240, 2)  # 119 frames: more than one select expression of ffmpeg takes
    streamed = list(clip.stream(np.concatenate([wanted, wanted[:5]]), max_side=32))
    assert [index for index, _ in streamed] == wanted.tolist()
    # Every frame is the one asked for: its grey level encodes its index.
    assert [coded_index(frame) for _, frame in streamed] == wanted.tolist()
    read = clip.read(wanted[::-1], max_side=32)  # above the select limit read() streams, in any order
    assert read.shape == (len(wanted), 24, 32, 3)
    assert [coded_index(frame) for frame in read] == wanted[::-1].tolist()


@pytest.mark.skipif(shutil.which("taskset") is None or (os.cpu_count() or 1) < 2, reason="needs taskset and 2 cores")
def test_an_encoded_clip_is_the_same_file_on_one_core_as_on_all(tmp_path):
    """x264 takes its thread count from the cores unless told, and its output follows the count."""
    frames = numbered_frames(60, 96, 128)
    np.save(tmp_path / "frames.npy", frames)
    write_video(tmp_path / "all.mp4", frames)
    code = ("import sys, numpy; from tg_dfer.video import write_video; "
            "write_video(sys.argv[2], numpy.load(sys.argv[1]))")
    subprocess.run(["taskset", "-c", "0", sys.executable, "-c", code, str(tmp_path / "frames.npy"),
                    str(tmp_path / "one.mp4")], check=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert (tmp_path / "one.mp4").read_bytes() == (tmp_path / "all.mp4").read_bytes()


def test_decoded_frames_and_encoded_clips_do_not_depend_on_the_cpu_s_simd(media, tmp_path, monkeypatch):
    """FFmpeg's scaler and x264 choose SIMD code by CPU. The same decode and encode through an ffmpeg
    told to use no SIMD at all (-cpuflags 0; x264's no-asm) give the same bytes as this CPU's own
    paths, so an AVX-512, an AVX2 and a plain x86 machine decode and render the same pixels."""
    from tg_dfer.video import ffmpeg_binary

    real = ffmpeg_binary()
    wrapper = tmp_path / "bin" / "ffmpeg"
    wrapper.parent.mkdir()
    wrapper.write_text(f"#!{sys.executable}\nimport os, sys\n"
                       "args = [arg.replace('cpu-independent=1', 'cpu-independent=1:no-asm=1') for arg in sys.argv[1:]]\n"
                       f"os.execv({real!r}, [{real!r}, '-cpuflags', '0', *args])\n")
    wrapper.chmod(0o755)

    def run(tag: str) -> tuple[bytes, bytes, bytes]:
        full = open_video(media / "cremad/1001_DFA_ANG_XX.flv").read(list(range(0, 40, 3)))
        scaled = open_video(media / "pyfeat/single_face.mp4").read([0, 10, 20], max_side=300)
        write_video(tmp_path / f"{tag}.mp4", full)
        return full.tobytes(), scaled.tobytes(), (tmp_path / f"{tag}.mp4").read_bytes()

    own = run("own")
    monkeypatch.setenv("PATH", f"{wrapper.parent}{os.pathsep}{os.environ['PATH']}")
    assert ffmpeg_binary() == str(wrapper)
    plain = run("plain")
    assert plain[0] == own[0] and plain[1] == own[1] and plain[2] == own[2]
