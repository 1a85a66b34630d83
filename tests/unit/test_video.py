import numpy as np
import pytest

from tg_dfer.video import FrameFolderClip, VideoError, natural_key, open_video, scaled_size, write_video

from helpers.media import frame_number, numbered_frames


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
