"""The face detector's shared parts: grid decoding, NMS, detection figures, manifests, video reading."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import numpy as np
import pytest

from amgs.detect import decode, iou_xyxy, nms, to_frame_boxes
from amgs.models.detector_metrics import average_precision, detection_figures, match
from amgs.models.detector_train import make_targets


def _grid_with(faces: list[tuple[float, float, float, float, float]], g: int = 40) -> np.ndarray:
    """A decoded-output grid holding faces (cx, cy, w, h as fractions, score), like the network's."""
    grid = np.zeros((g, g, 5), np.float32)
    for cx, cy, w, h, s in faces:
        ix, iy = int(cx * g), int(cy * g)
        grid[iy, ix] = (s, cx * g - ix, cy * g - iy, w, h)
        if ix + 1 < g:
            grid[iy, ix + 1, 0] = s * 0.6  # a neighbour on the slope of the peak: not a second face
    return grid


def test_decode_finds_each_peak_with_its_box():
    grid = _grid_with([(0.3, 0.4, 0.2, 0.3, 0.9), (0.75, 0.6, 0.1, 0.12, 0.5)])
    boxes, scores = decode(grid, 0.3)
    assert scores.tolist() == pytest.approx([0.9, 0.5])
    np.testing.assert_allclose(boxes[0], [0.2, 0.25, 0.4, 0.55], atol=1e-6)
    np.testing.assert_allclose(boxes[1], [0.7, 0.54, 0.8, 0.66], atol=1e-6)
    assert len(decode(grid, 0.6)[1]) == 1  # the threshold applies to peaks
    assert len(decode(np.zeros((40, 40, 5), np.float32), 0.1)[0]) == 0
    with pytest.raises(ValueError, match="HxWx5"):
        decode(np.zeros((40, 40, 4)), 0.5)


def test_nms_drops_overlapping_weaker_boxes_and_pixels_are_clipped():
    boxes = np.array([[0, 0, 0.5, 0.5], [0.02, 0.02, 0.5, 0.5], [0.6, 0.6, 0.9, 0.9]], np.float32)
    assert nms(boxes, np.array([0.8, 0.9, 0.5]), 0.4) == [1, 2]
    assert iou_xyxy(boxes[:1], boxes[:1])[0, 0] == pytest.approx(1.0)
    dets = to_frame_boxes(np.array([[0.0, 0.1, 0.5, 0.6]]), np.array([0.7]), (1280, 720), margin=0.1)
    assert dets[0].box == (0, 36, 704, 432) and dets[0].score == 0.7


def test_targets_put_the_peak_and_regression_at_the_centre_cell():
    heat, reg, mask = make_targets([np.array([[0.2, 0.25, 0.4, 0.55]], np.float32)], 40)
    iy, ix = 16, 12  # centre (0.3, 0.4) * 40
    assert heat[0, iy, ix, 0] == 1.0 and mask.sum() == 1 and mask[0, iy, ix, 0] == 1
    np.testing.assert_allclose(reg[0, iy, ix], [0.0, 0.0, 0.2, 0.3], atol=1e-5)
    assert 0 < heat[0, iy, ix + 2, 0] < 1  # the Gaussian around the centre
    # decoding the targets gives the box back: the encoding and the shared decode agree
    grid = np.concatenate([heat[0], reg[0]], axis=-1)
    boxes, _ = decode(grid, 0.99)
    np.testing.assert_allclose(boxes[0], [0.2, 0.25, 0.4, 0.55], atol=1e-5)


def test_detection_figures_match_hand_computation():
    truth = [
        np.array([[0, 0, 0.2, 0.2], [0.5, 0.5, 0.7, 0.7]]),
        np.zeros((0, 4)),
        np.array([[0.1, 0.1, 0.3, 0.3]]),
    ]
    preds = [
        np.array([[0, 0, 0.2, 0.2], [0.5, 0.5, 0.62, 0.62]]),  # a hit; a box with IoU 0.36 (miss at 0.5)
        np.array([[0.4, 0.4, 0.6, 0.6]]),  # a false alarm on a face-free frame
        np.array([[0.1, 0.1, 0.3, 0.28]]),  # a hit at 0.5 (IoU 0.9), also at 0.75
    ]
    scores = [np.array([0.9, 0.6]), np.array([0.7]), np.array([0.8])]
    # ranked: 0.9 TP, 0.8 TP, 0.7 FP, 0.6 FP; 3 true faces
    c = match(preds, scores, truth, 0.5)
    np.testing.assert_allclose(c.precision, [1, 1, 2 / 3, 0.5])
    np.testing.assert_allclose(c.recall, [1 / 3, 2 / 3, 2 / 3, 2 / 3])
    assert average_precision(c) == pytest.approx(2 / 3)
    fig = detection_figures(preds, scores, truth, threshold=0.75)
    assert fig["precision"] == 1.0 and fig["recall"] == pytest.approx(0.6667, abs=1e-4)
    assert fig["miss_rate"] == pytest.approx(0.3333, abs=1e-4)
    assert fig["frames_without_face"] == 1 and fig["false_alarm_frames"] == 0
    assert detection_figures(preds, scores, truth, threshold=0.65)["false_alarm_frames"] == 1


def test_detector_manifest_is_refused_as_a_scorer_and_checked(tmp_path, model_path):
    from amgs.manifest import ManifestError, read_manifest

    data = json.loads(model_path.with_suffix(".manifest.json").read_text())
    data.update(kind="detector")
    (tmp_path / "m.manifest.json").write_text(json.dumps(data))
    with pytest.raises(ManifestError, match="detector manifest needs"):
        read_manifest(tmp_path / "m.manifest.json")
    assert read_manifest(model_path.with_suffix(".manifest.json")).kind == "scorer"


def test_durations_and_sample_times():
    from amgs.video import parse_duration, sample_times

    assert [parse_duration(t) for t in ("10s", "1s", "500ms", "2m", "3")] == [10, 1, 0.5, 120, 3]
    for bad in ("", "ten", "-1s", "0s"):
        with pytest.raises(ValueError):
            parse_duration(bad)
    assert sample_times(10, 2, 25) == [[2.5, 7.5], [12.5, 17.5], [21.25, 23.75]]


def test_mp4_creation_time_is_read_from_mvhd(tmp_path):
    import struct

    from amgs.video import mp4_creation_time

    secs = int((datetime(2026, 2, 3, 4, 5, 6, tzinfo=UTC) - datetime(1904, 1, 1, tzinfo=UTC)).total_seconds())
    mvhd = struct.pack(">I4sB3sII", 8 + 12, b"mvhd", 0, b"\0\0\0", secs, secs)
    moov = struct.pack(">I4s", 8 + len(mvhd), b"moov") + mvhd
    ftyp = struct.pack(">I4s4s", 12, b"ftyp", b"isom")
    (tmp_path / "a.mp4").write_bytes(ftyp + moov)
    assert mp4_creation_time(tmp_path / "a.mp4") == datetime(2026, 2, 3, 4, 5, 6, tzinfo=UTC)
    (tmp_path / "b.mp4").write_bytes(b"not a video")
    assert mp4_creation_time(tmp_path / "b.mp4") is None


def test_seeking_reads_the_same_frames_as_decoding_every_frame(tmp_path):
    """Windows far apart are reached by seeking; the sampled pixels must be the very same frames."""
    from amgs.synth.video import Segment, write_video
    from amgs.video import iter_windows, probe

    path = tmp_path / "v.avi"  # MJPG: every frame a keyframe, and OpenCV seeks it exactly
    write_video(path, [Segment(6, 0.2), Segment(6, 1.5, "still")], fps=10, size=(160, 96), face_frac=0.4)
    info = probe(path)
    assert info.n_frames == 120 and info.start is None
    seek = list(iter_windows(info, 4.0, samples=2, seek_after_s=0.5))
    walk = list(iter_windows(info, 4.0, samples=2, seek_after_s=None))
    assert [len(w.frames) for w in seek] == [2, 2, 2]
    for a, b in zip(seek, walk, strict=True):
        assert [f.name for f in a.frames] == [f.name for f in b.frames]
        for fa, fb in zip(a.frames, b.frames, strict=True):
            np.testing.assert_array_equal(fa.image, fb.image)
    assert seek[1].frames[0].name == "v.avi@5.00s"
