import numpy as np
import pytest

from tg_dfer.detectors import Detection, DetectorError, face_alignment_weights, make_detector
from tg_dfer.faces import CropPolicy, choose_track, crop_clip, crop_square, eye_angle, fill_and_smooth
from tg_dfer.io.images import decode_image, encode_image
from tg_dfer.video import open_video


def marker_image(height=200, width=300, centre=(120, 80)) -> np.ndarray:
    image = np.zeros((height, width, 3), dtype=np.uint8)
    x, y = centre
    image[y - 10:y + 10, x - 10:x + 10] = (255, 0, 0)  # red square at the face centre
    image[y - 10:y + 10, x + 30:x + 40] = (0, 255, 0)  # green bar to its right
    return image


def colour_centroid(image, channel):
    mask = (image[..., channel] > 128) & (image.sum(axis=-1) - image[..., channel] < 128)
    ys, xs = np.nonzero(mask)
    return xs.mean(), ys.mean()


def test_crop_puts_the_box_centre_in_the_middle_at_the_requested_scale():
    crop = crop_square(marker_image(), (120, 80), side=100, angle=0, size=50)
    assert crop.shape == (50, 50, 3)
    cx, cy = colour_centroid(crop, 0)
    assert abs(cx - 24.5) < 1 and abs(cy - 24.5) < 1
    gx, _ = colour_centroid(crop, 1)
    assert abs(gx - (24.5 + 35 * 0.5)) < 1.5  # 35 source pixels to the right at scale 1/2


def test_crop_rotation_levels_a_tilted_face():
    crop = crop_square(marker_image(), (120, 80), side=120, angle=90, size=120)
    cx, cy = colour_centroid(crop, 0)
    gx, gy = colour_centroid(crop, 1)
    # rotated by 90 degrees counter-clockwise: the bar that was to the right is now above.
    assert abs(gx - cx) < 2 and gy < cy - 25


def test_crop_outside_the_frame_is_black_not_stretched():
    crop = crop_square(marker_image(), (5, 5), side=100, angle=0, size=100)
    assert crop[:40, :40].max() == 0
    assert crop.shape == (100, 100, 3)


def test_eye_angle_from_68_point_landmarks():
    points = np.zeros((68, 2))
    points[36:42] = (100, 100)
    points[42:48] = (150, 150)
    assert eye_angle(points) == pytest.approx(45)


def detection(x, y, side, score=0.9):
    return Detection(np.array([x, y, x + side, y + side], dtype=float), score)


def test_track_keeps_the_main_face_and_ignores_a_passer_by():
    main = [[detection(100 + t, 50, 80)] for t in range(10)]
    main[3].append(detection(300, 300, 120))  # a bigger face in one frame only
    main[6] = []
    track = choose_track(main)
    assert track[6] is None
    assert all(d is not None and d.box[0] < 200 for i, d in enumerate(track) if i != 6)


def test_fill_and_smooth_interpolates_gaps_and_averages():
    values = np.array([[0.0], [np.nan], [4.0], [4.0], [np.nan]])
    assert np.allclose(fill_and_smooth(values, 1)[:, 0], [0, 2, 4, 4, 4])
    smoothed = fill_and_smooth(np.array([[0.0], [0.0], [9.0], [0.0], [0.0]]), 3)[:, 0]
    assert np.allclose(smoothed, [0, 3, 3, 3, 0])


def test_image_encoding_round_trip():
    image = (np.random.default_rng(0).random((32, 32, 3)) * 255).astype(np.uint8)
    assert np.array_equal(decode_image(encode_image(image, "png")), image)
    smooth = np.stack(np.broadcast_arrays(*np.mgrid[0:32, 0:32] * 7, 128), axis=-1).astype(np.uint8)
    assert np.abs(decode_image(encode_image(smooth, "jpeg", 95)).astype(int) - smooth).mean() < 3


def test_unknown_detector_is_refused():
    with pytest.raises(DetectorError, match="unknown face detector"):
        make_detector("mtcnn")


def crop_media(path, detector_name="opencv", frames=8):
    policy = CropPolicy(frames_per_clip=frames)
    return crop_clip(path.stem, open_video(path), make_detector(detector_name), policy)


def test_real_clips_with_faces_are_found_and_cropped(media):
    for path in sorted((media / "cremad").glob("*.flv"))[:2] + [media / "pyfeat" / "single_face.mp4"]:
        record = crop_media(path)
        assert record.status == "ok", (path, record.reason)
        assert (record.score > 0.5).all()
        crop = decode_image(record.crops[0])
        assert crop.shape == (224, 224, 3)
        # The face box lies inside the frame and covers a plausible share of it.
        clip = open_video(path)
        x0, y0, x1, y1 = record.box[0]
        assert 0.15 * clip.info.height < (y1 - y0) < 1.5 * clip.info.height


def test_no_face_clip_gets_a_fallback_crop_and_score_zero(media):
    record = crop_media(media / "pyfeat" / "no_face.mp4")
    assert record.status == "no_face" and "centre crop" in record.reason
    assert (record.score == 0).all() and len(record.crops) == 8


@pytest.mark.parametrize("name, face_first", [("face_noface.mov", True), ("noface_face.mov", False)])
def test_partial_face_clips_are_partial_with_faces_where_they_are(media, name, face_first):
    record = crop_media(media / "pyfeat" / name, frames=16)
    assert record.status == "partial"
    found = record.score > 0
    assert 3 <= found.sum() <= 13
    assert found[0] == face_first and found[-1] != face_first


def test_detector_none_keeps_the_whole_frame(media):
    record = crop_media(media / "pyfeat" / "single_face.mp4", "none", frames=4)
    assert record.status == "ok"
    clip = open_video(media / "pyfeat" / "single_face.mp4")
    x0, y0, x1, y1 = record.box[0]
    assert (x1 - x0) == pytest.approx(max(clip.info.width, clip.info.height), rel=0.01)


@pytest.fixture
def random_face_alignment_weights(tmp_path, monkeypatch):
    """Seeded random weights of the real S3FD and FAN networks, placed where face_alignment looks."""
    import torch
    from face_alignment.detection.sfd.net_s3fd import s3fd
    from face_alignment.models import FAN

    monkeypatch.setattr(torch.hub, "_hub_dir", str(tmp_path / "hub"))
    files = {model: file.path for model, file in face_alignment_weights().items()}
    files["s3fd"].parent.mkdir(parents=True)
    torch.manual_seed(0)
    torch.save(s3fd().state_dict(), files["s3fd"])
    torch.save(FAN(4).state_dict(), files["2DFAN-4"])
    return files


def test_face_alignment_without_weights_names_the_missing_files(tmp_path, monkeypatch):
    import torch

    monkeypatch.setattr(torch.hub, "_hub_dir", str(tmp_path / "hub"))
    with pytest.raises(DetectorError) as error:
        make_detector("face_alignment")
    assert "s3fd-619a316812.pth" in str(error.value) and "2DFAN4" in str(error.value)
    assert str(tmp_path / "hub" / "checkpoints") in str(error.value)


@pytest.mark.slow  # the full-size S3FD and 2DFAN4 networks, 15 s on 2 cores: kept out of the fast suite
def test_face_alignment_code_path_runs_with_random_weights(random_face_alignment_weights, media):
    detector = make_detector("face_alignment")
    clip = open_video(media / "pyfeat" / "single_face.mp4")
    frames = clip.read([0, 10], max_side=320)
    found = detector.detect(frames)
    assert len(found) == 2 and all(isinstance(d, Detection) for frame in found for d in frame)
    # Landmarks on a given box: 68 points, wherever random weights put them.
    points = detector.landmarks(frames[0], np.array([100.0, 50.0, 220.0, 170.0]))
    assert points.shape == (68, 2) and np.isfinite(points).all()
    record = crop_clip("single", clip, detector, CropPolicy(frames_per_clip=2, max_side=320))
    assert record.status in ("ok", "partial", "no_face") and len(record.crops) == 2
    assert record.landmarks.shape == (2, 68, 2)
