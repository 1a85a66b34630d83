"""A real clip whose face the detector loses in a stretch of frames (benchmarks/face_fill.py's
degradations): every sampled frame still gets a face box, and its frame status says where it came
from: found again by matching (tracked) or, without matching, interpolated or held. Skips where
../shared/media is absent."""

import numpy as np
import pytest

from benchmarks.face_fill import PATTERNS, degraded_copy, encoded, face_track
from tg_dfer.detectors import make_detector
from tg_dfer.faces import CropPolicy, crop_clip
from tg_dfer.io.faces_h5 import FILLED
from tg_dfer.video import open_video

CLIP = "cremad/1001_DFA_ANG_XX.flv"


@pytest.fixture(scope="module")
def clip(media, tmp_path_factory):
    source = open_video(media / CLIP)
    frames = source.read(range(source.info.num_frames))
    folder = tmp_path_factory.mktemp("face-fill")
    clean = crop_clip("clean", open_video(encoded(folder / "clean.mp4", frames, source.info.fps)),
                      make_detector("opencv"), CropPolicy())
    assert clean.status == "ok", clean.reason
    return frames, source.info.fps, clean, folder


# Where the degraded stretch lies, the status its sampled frames get without matching.
@pytest.mark.parametrize("degradation, pattern, filled", [("dark", "middle", "interpolated"),
                                                          ("occluded", "ends", "held")])
def test_frames_of_a_degraded_stretch_get_a_box_from_the_detections_around_it(clip, degradation, pattern, filled):
    frames, fps, clean, folder = clip
    centre, side = face_track(clean, len(frames), CropPolicy().margin)
    copy = encoded(folder / f"{degradation}-{pattern}.mp4", degraded_copy(frames, centre, side, degradation, pattern),
                   fps)
    face_side = (clean.box[:, 2] - clean.box[:, 0]) / CropPolicy().margin
    for follow, statuses in ((False, (filled,)), (True, FILLED)):
        record = crop_clip(copy.stem, open_video(copy), make_detector("opencv"), CropPolicy(), follow=follow)
        degraded = PATTERNS[pattern](record.frame_index / len(frames))
        assert 0 < degraded.sum() < len(degraded)
        assert record.status == "partial"
        assert np.array_equal(record.frame_status == "detected", ~degraded), record.frame_status
        assert np.isin(record.frame_status[degraded], statuses).all(), record.frame_status
        assert np.array_equal(record.score > 0, ~degraded)
        # The actor barely moves: the filled boxes lie within a tenth of a face side of the clean copy's.
        offset = np.hypot(*((record.box[:, :2] + record.box[:, 2:]) / 2 - (clean.box[:, :2] + clean.box[:, 2:]) / 2).T)
        assert (offset[degraded] < 0.1 * face_side[degraded]).all(), offset / face_side
    if degradation == "dark":  # normalised cross-correlation is blind to the light: the dark face is matched
        assert (record.frame_status == "tracked").any(), record.frame_status
