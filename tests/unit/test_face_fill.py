"""Frames without a detection: their frame status and box (tg_dfer.faces), and how faces.h5 keeps
them (schema tg-dfer/faces/2) and reads a tg-dfer/faces/1 file that did not."""

from pathlib import Path
from types import SimpleNamespace

import h5py
import numpy as np
import pytest

from pipeline.stages.faces import face_report
from tg_dfer.detectors import Detection
from tg_dfer.faces import CropPolicy, crop_clip
from tg_dfer.io.faces_h5 import FaceRecord, FacesFile, FacesWriter, face_row
from tg_dfer.video import Clip, ClipInfo


class Frames(Clip):
    """A clip held in memory."""

    def __init__(self, frames: np.ndarray):
        self.path = Path("in-memory")
        self.frames = frames
        self.info = ClipInfo(width=frames.shape[2], height=frames.shape[1], num_frames=len(frames), fps=25.0)

    def read(self, indices, max_side=None):
        return self.frames[np.asarray(indices)]


class FoundIn:
    """A stand-in detector that finds a 50 px face centred at x = ``centres[row]``, y = 45, in those
    rows only."""

    name = "stub"

    def __init__(self, centres: dict[int, float]):
        self.centres = centres

    def detect(self, frames):
        return [[Detection(np.array([self.centres[row] - 25, 20.0, self.centres[row] + 25, 70.0]), 0.8)]
                if row in self.centres else [] for row in range(len(frames))]


def crop(centres: dict[int, float], frames: int = 8) -> FaceRecord:
    clip = Frames(np.full((frames, 120, 160, 3), 90, np.uint8))
    return crop_clip("clip", clip, FoundIn(centres), CropPolicy(frames_per_clip=frames, smooth=1))


def test_missed_frames_are_interpolated_between_detections_and_held_at_the_ends():
    record = crop({1: 60.0, 2: 70.0, 5: 100.0, 6: 110.0})
    assert record.frame_status.tolist() == ["held", "detected", "detected", "interpolated", "interpolated",
                                            "detected", "detected", "held"]
    assert record.score.tolist() == pytest.approx([0, 0.8, 0.8, 0, 0, 0.8, 0.8, 0])
    centres = (record.box[:, 0] + record.box[:, 2]) / 2
    # A third and two thirds of the way from 70 to 100; the ends keep the nearest detection's.
    assert centres == pytest.approx([60, 60, 70, 80, 90, 100, 110, 110])
    assert np.allclose(record.box[:, 2] - record.box[:, 0], 50 * 1.3)  # the side of the detections, with margin
    assert record.status == "partial"
    assert record.reason == ("face found in 4 of 8 sampled frames; the others' boxes from the detections around "
                             "them (0 tracked, 2 interpolated, 2 held)")


def test_a_face_the_detector_misses_is_followed_by_matching_where_it_is_to_be_seen():
    face = np.random.default_rng(0).integers(0, 256, (40, 40, 3), dtype=np.uint8)  # a textured 40 px "face"
    where = [40, 50, 75, 95, 80, 60, None, 70]  # its centre x per frame (y 60); gone from frame 6
    frames = np.full((8, 120, 160, 3), 90, np.uint8)
    for row, x in enumerate(where):
        if x is not None:
            frames[row, 40:80, x - 20:x + 20] = face
    record = crop_clip("clip", Frames(frames), FoundIn({1: 50.0, 4: 80.0, 7: 70.0}),
                       CropPolicy(frames_per_clip=8, smooth=1))
    assert record.frame_status.tolist() == ["tracked", "detected", "tracked", "tracked", "detected", "tracked",
                                            "interpolated", "detected"]
    centres = (record.box[:, 0] + record.box[:, 2]) / 2
    # Found where it is, off the line between detections; frame 6 is interpolated between the
    # tracked box before it and the detection after it.
    assert centres == pytest.approx([40, 50, 75, 95, 80, 60, 65, 70])
    assert (record.score[record.frame_status != "detected"] == 0).all()
    untracked = crop_clip("clip", Frames(frames), FoundIn({1: 50.0, 4: 80.0, 7: 70.0}),
                          CropPolicy(frames_per_clip=8, smooth=1), follow=False)
    assert untracked.frame_status.tolist() == ["held", "detected", "interpolated", "interpolated", "detected",
                                               "interpolated", "interpolated", "detected"]


def test_a_clip_without_a_detection_is_centred_and_one_with_all_is_detected():
    assert crop({}).frame_status.tolist() == ["centre"] * 8
    assert crop({row: 80.0 for row in range(8)}).frame_status.tolist() == ["detected"] * 8


def write(path, records, frames=8):
    with FacesWriter(path, frames, {}) as writer:
        for record in records:
            writer.append(record)
    return path


def test_frame_status_and_distance_to_a_detection_round_trip(tmp_path):
    partial = crop({1: 60.0, 2: 70.0, 5: 100.0})
    unrecorded = FaceRecord("by hand", "partial", "", 8, np.arange(8), np.zeros((8, 4)),
                            np.array([0, 0.9, 0, 0, 0, 0, 0, 0.7]), crops=[b"x"] * 8)
    path = write(tmp_path / "faces.h5", [partial, FaceRecord("bad", "failed", "bad.mp4: empty file"), unrecorded])
    with FacesFile(path) as faces:
        assert faces.attrs["schema"] == "tg-dfer/faces/2"
        assert faces.frame_status.tolist() == [
            ["held", "detected", "detected", "interpolated", "interpolated", "detected", "held", "held"],
            ["none"] * 8,
            ["unknown", "detected", "unknown", "unknown", "unknown", "unknown", "unknown", "detected"]]
        assert faces.frames_to_detection.tolist() == [[1, 0, 0, 1, 1, 0, 1, 2], [-1] * 8, [1, 0, 1, 2, 3, 2, 1, 0]]
        # Any HDF5 reader sees the names: an enum type of int8 codes.
        assert h5py.check_enum_dtype(faces.handle["frame_status"].dtype) == {
            "none": 0, "detected": 1, "tracked": 2, "interpolated": 3, "held": 4, "centre": 5, "unknown": 6}
        copied = tmp_path / "merged.h5"
        with FacesWriter(copied, 8, {}) as writer:  # what --merge does with the rows of shard files
            writer.append_row(faces.row(0))
    with FacesFile(copied) as merged:
        assert merged.frame_status[0].tolist() == faces.frame_status[0].tolist()


def test_an_unknown_frame_status_is_refused():
    record = crop({1: 60.0})
    record.frame_status = np.array(["guessed"] * 8)
    with pytest.raises(ValueError, match="unknown frame status"):
        face_row(record, 8)


def test_a_version_1_file_reads_detected_where_it_has_a_score(tmp_path):
    path = write(tmp_path / "faces.h5", [crop({1: 60.0, 5: 100.0}), FaceRecord("bad", "failed", "no file")])
    with h5py.File(path, "r+") as handle:  # as tg-dfer/faces/1 wrote it: no per-frame datasets
        del handle["frame_status"], handle["frames_to_detection"]
        handle.attrs["schema"] = "tg-dfer/faces/1"
    with FacesFile(path) as faces:
        assert faces.frame_status.tolist() == [["unknown", "detected", "unknown", "unknown", "unknown", "detected",
                                                "unknown", "unknown"], ["none"] * 8]
        assert faces.frames_to_detection.tolist() == [[1, 0, 1, 2, 1, 0, 1, 2], [-1] * 8]


def test_the_faces_summary_counts_frames_by_status(tmp_path):
    path = write(tmp_path / "faces.h5", [crop({1: 60.0, 2: 70.0, 5: 100.0, 6: 110.0}), crop({}),
                                         FaceRecord("bad", "failed", "no file")])
    manifest = SimpleNamespace(rows=[SimpleNamespace(clip_id="clip", path="clip.mp4")])
    report = face_report(path, manifest)
    assert report["frame_status"] == {"detected": 4, "tracked": 0, "interpolated": 2, "held": 2, "centre": 8,
                                      "unknown": 0}
    assert report["face_frame_rate"] == 0.25 and report["face_box_rate"] == 0.5
