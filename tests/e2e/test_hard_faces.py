"""The opencv detector on hard footage: degraded copies of real clips (tests/degraded_media.py), the
turned-back crop of a tilted head, and boxes held over frames without a detection."""

import cv2
import numpy as np
import pytest

from tg_dfer.detectors import Detection, HaarSearch, drop_contained, make_detector
from tg_dfer.faces import CropPolicy, crop_clip
from tg_dfer.io.images import decode_image
from tg_dfer.video import open_video

from helpers.degraded_media import DEGRADATIONS, hit_rates, reference_faces, tilted, write_frames

CLIPS = ("cremad/1001_DFA_ANG_XX.flv", "pyfeat/single_face.mp4")
# Main's plain frontal cascade (commit 2fd2813) on these 16 frames, 8 per clip, as
# `python tests/degraded_media.py --frames 8 --clips <CLIPS>` measured it (detected / crop holds the
# face): dark 0 / 50 %, low_contrast 38 / 50 %, night_vision 50 / 50 %, small 100 / 100 %,
# small_wide 50 / 50 %, tilted 0 / 50 %, tilted_mirrored 0 / 50 % (the centre crop of
# single_face.mp4 happens to hold its face). The floors below are well above that where it was
# below 100 %; docs/robustness.md has all eight clips.
AFTER_AT_LEAST = {"dark": (0.9, 0.9), "low_contrast": (0.9, 0.9), "night_vision": (0.9, 0.9), "small": (0.9, 0.9),
                  "small_wide": (0.9, 0.9), "tilted": (0.9, 0.85), "tilted_mirrored": (0.9, 0.85)}


@pytest.fixture(scope="module")
def rates(media, tmp_path_factory):
    return hit_rates(media, tmp_path_factory.mktemp("degraded"), CLIPS, frames=8,
                     names=("clean", *AFTER_AT_LEAST))


@pytest.mark.parametrize("name", sorted(AFTER_AT_LEAST))
def test_faces_are_found_and_cropped_in_degraded_footage(rates, name):
    count = rates[name]
    detected, holds = count["detected"] / count["frames"], count["crop_holds_face"] / count["frames"]
    least_detected, least_holds = AFTER_AT_LEAST[name]
    assert count["frames"] == 16
    assert detected >= least_detected and holds >= least_holds, (name, count)


def test_clean_footage_is_still_found_and_cropped_in_every_frame(rates):
    assert rates["clean"]["detected"] == rates["clean"]["crop_holds_face"] == rates["clean"]["frames"] == 16


def test_the_crop_of_a_tilted_head_is_turned_upright(media, tmp_path):
    clip = open_video(media / "pyfeat" / "single_face.mp4")
    frames = clip.read([0, 20, 40, 60])
    face = float(np.median([box[2] - box[0] for box in reference_faces(frames)]))
    folder = write_frames(tmp_path / "tilted", [tilted(frame, face, 0)[0] for frame in frames])
    record = crop_clip("tilted", open_video(folder), make_detector("opencv"), CropPolicy(frames_per_clip=4))
    assert record.status == "ok"
    crops = [decode_image(crop) for crop in record.crops]
    # The plain frontal cascade, which finds no face in the tilted frames, finds one in every crop.
    assert not any(box is not None for box in reference_faces(open_video(folder).read(range(4))))
    assert all(box is not None for box in reference_faces(np.stack(crops)))
    # Without the turned passes the same frames give no face.
    plain = crop_clip("tilted", open_video(folder), make_detector("opencv", search=HaarSearch(tilt=0)),
                      CropPolicy(frames_per_clip=4))
    assert plain.status == "no_face"


class EveryThirdFrame:
    """A stand-in detector that finds a face moving right in frames 0, 3, 6, ... only."""

    name = "stub"

    def detect(self, frames):
        return [[Detection(np.array([10.0 + 10 * row, 20, 60 + 10 * row, 70]), 0.8)] if row % 3 == 0 else []
                for row in range(len(frames))]


def test_frames_without_a_detection_hold_the_neighbours_box_with_score_zero(tmp_path):
    folder = write_frames(tmp_path / "frames", [np.full((120, 160, 3), 90, np.uint8)] * 8)
    record = crop_clip("held", open_video(folder), EveryThirdFrame(), CropPolicy(frames_per_clip=8, smooth=1))
    assert record.status == "partial"
    assert np.array_equal(record.score > 0, [True, False, False, True, False, False, True, False])
    centres = (record.box[:, 0] + record.box[:, 2]) / 2
    # Between detections the box moves on with them; after the last one it stays where it was.
    assert np.allclose(centres, [35 + 10 * row for row in range(7)] + [95])


def test_a_part_of_a_face_inside_a_larger_box_is_dropped_and_a_second_face_kept():
    whole = Detection(np.array([100.0, 100, 200, 200]), 0.5, angle=30)
    part = Detection(np.array([150.0, 130, 210, 190]), 0.9)
    other = Detection(np.array([300.0, 100, 380, 180]), 0.7)
    assert drop_contained([part, whole, other]) == [whole, other]


def test_tilt_outside_a_quarter_turn_is_refused():
    with pytest.raises(ValueError, match="tilt"):
        HaarSearch(tilt=120)


def test_degradations_are_deterministic(media):
    frame = open_video(media / "cremad" / "1001_DFA_ANG_XX.flv").read([10])[0]
    for name, degrade in DEGRADATIONS.items():
        first, second = degrade(frame, 126.0, 3), degrade(frame, 126.0, 3)
        assert np.array_equal(first[0], second[0]) and np.array_equal(first[1], second[1]), name
    assert cv2.cvtColor(DEGRADATIONS["dark"](frame, 126.0, 0)[0], cv2.COLOR_RGB2GRAY).mean() < 30
