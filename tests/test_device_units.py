"""The device agent's parts on their own: config, outbox, selection, sources, sd_notify, detector, health."""

from __future__ import annotations

import os
import socket
import sqlite3
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image, ImageFilter

from amgs.cli import main
from amgs.contract import validate
from amgs.device.config import ConfigError, SelectionSection, ViewSection, load_config
from amgs.device.detector import best_box
from amgs.device.health import ClockInfo, Health, boot_id, status_message
from amgs.device.outbox import Outbox
from amgs.device.selection import ViewSelector
from amgs.device.sources import (
    BadFrame,
    FolderReplay,
    Frame,
    RetryingSource,
    SourceError,
    SourceExhausted,
    time_from_name,
)
from amgs.sdnotify import Notifier

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "device.toml"


# --------------------------------------------------------------------------- config


def test_example_config_is_valid_and_check_prints_it(tmp_path):
    cfg = load_config(EXAMPLE)
    assert [v.name for v in cfg.views] == ["left", "right"] and cfg.views[0].source == "cam0"
    r = CliRunner().invoke(main, ["device", "check", "--config", str(EXAMPLE)])
    assert r.exit_code == 3 and "SYNTHETIC faces only" in r.output  # the shipped model is not for real cages
    allowed = tmp_path / "device.toml"
    allowed.write_text(EXAMPLE.read_text().replace("# allow_synthetic = false", "allow_synthetic = true"))
    r = CliRunner().invoke(main, ["device", "check", "--config", str(allowed)])
    assert r.exit_code == 0 and "view right: source cam0, cage C102" in r.output


@pytest.mark.parametrize(
    ("patch", "expected"),
    [
        (("[schedule]", "[schedule]\nburst_frame = 3"), "unknown key 'schedule.burst_frame'"),
        (("burst_frames = 5", "burst_frames = 0"), "schedule.burst_frames"),
        (('confirm = "collector"', 'confirm = "maybe"'), "'maybe'"),
        (('source = "cam0"\ncage_id = "C101"', 'source = "cam9"\ncage_id = "C101"'), "uses source 'cam9'"),
        (('id = "box-01"', 'id = "box 01"'), "device.id"),
        (("region = [0, 120, 900, 800]", "region = [0, 120, 0, 800]"), "views.0.region"),
        (("min_exposure = 35.0", "min_exposure = 250.0"), "must be below max_exposure"),
        (
            ("# password_file", "username = 'u'\npassword_file"),
            "password_file '/etc/amgs/mqtt-password' does not exist",
        ),
    ],
)
def test_wrong_config_names_the_key_and_value(tmp_path, patch, expected):
    text = EXAMPLE.read_text()
    assert patch[0] in text
    (tmp_path / "d.toml").write_text(text.replace(patch[0], patch[1], 1))
    with pytest.raises(ConfigError) as e:
        load_config(tmp_path / "d.toml")
    assert expected in str(e.value)
    r = CliRunner().invoke(main, ["device", "run", "--config", str(tmp_path / "d.toml")])
    assert r.exit_code == 2 and expected in r.output


def test_config_not_toml_and_missing(tmp_path):
    (tmp_path / "d.toml").write_text("[device\nid=")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(tmp_path / "d.toml")
    with pytest.raises(ConfigError, match="no such config file"):
        load_config(tmp_path / "none.toml")


def test_state_dir_from_systemd(monkeypatch, tmp_path):
    text = EXAMPLE.read_text()
    (tmp_path / "d.toml").write_text(text)
    monkeypatch.setenv("STATE_DIRECTORY", f"{tmp_path}/state:/other")
    assert load_config(tmp_path / "d.toml").state_path() == tmp_path / "state"


# --------------------------------------------------------------------------- outbox


def _record(i: int) -> dict:
    return {
        "schema": "amgs.score/1",
        "msg_id": f"{i:032x}",
        "device_id": "d1",
        "site": "s1",
        "cage_id": "C1",
        "captured_at": "2026-01-01T00:00:00.000Z",
        "clock": {"synced": True, "boot_id": "b", "monotonic_s": 1.0},
        "model": {"name": "m", "version": "1", "sha256": "0" * 64},
        "p_pain": 0.2,
        "label": "no pain",
        "amgs": 0.2,
        "confidence": 0.8,
        "needs_review": False,
    }


def test_outbox_sequence_survives_reopen_and_confirmation(tmp_path):
    box = Outbox(tmp_path / "o.sqlite3")
    assert box.commit([_record(1), _record(2)], {"cam": "pos-2"}) == [1, 2]
    box.delete_upto(2)
    box.close()
    box = Outbox(tmp_path / "o.sqlite3")
    assert box.count() == 0 and box.last_seq() == 2 and box.cursor("cam") == "pos-2"
    assert box.commit([_record(3)]) == [3]  # never reuses a seq, even after everything was deleted
    assert box.pending()[0].seq == 3
    assert box.delete([3]) == 1


def test_outbox_refuses_invalid_records_atomically(tmp_path):
    box = Outbox(tmp_path / "o.sqlite3")
    bad = _record(2)
    bad["p_pain"] = 7
    with pytest.raises(ValueError, match="p_pain"):
        box.commit([_record(1), bad], {"cam": "x"})
    assert box.count() == 0 and box.last_seq() == 0 and box.cursor("cam") is None


def test_outbox_failed_commit_gives_the_numbers_back(tmp_path):
    """A commit that fails leaves the records without a ``seq`` (the agent retries them) and reuses none."""
    box = Outbox(tmp_path / "o.sqlite3")
    good, bad = _record(1), _record(2)
    bad["p_pain"] = 7
    with pytest.raises(ValueError):
        box.commit([good, bad])
    assert "seq" not in good and "seq" not in bad and not box.db.in_transaction
    assert box.commit([good]) == [1] and good["seq"] == 1


def test_outbox_is_wal_and_readable_by_a_second_connection(tmp_path):
    box = Outbox(tmp_path / "o.sqlite3")
    box.commit([_record(1)])
    other = sqlite3.connect(tmp_path / "o.sqlite3")
    assert other.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert other.execute("SELECT count(*) FROM outbox").fetchone()[0] == 1


# --------------------------------------------------------------------------- selection


def _face(synth_set: Path, i: int = 0) -> np.ndarray:
    return np.asarray(Image.open(sorted((synth_set / "pain").glob("*.jpg"))[i]).convert("RGB"))


def _frames(images: list[np.ndarray], start: datetime, step_s: float = 1.0) -> list[Frame]:
    return [Frame(img, start + timedelta(seconds=step_s * i), float(i)) for i, img in enumerate(images)]


def _selector(**kw) -> ViewSelector:
    cfg = SelectionSection(**{"min_sharpness": 10, "min_face_px": 32, **kw})
    return ViewSelector(ViewSection(name="v", source="s", cage_id="C1"), cfg, (299, 299))


def test_quality_gate_rejects_blurry_dark_bright_and_small(synth_set):
    face = _face(synth_set)
    blurry = np.asarray(Image.fromarray(face).filter(ImageFilter.GaussianBlur(8)))
    dark = (face * 0.05).astype(np.uint8)
    bright = np.full_like(face, 250)
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    out = _selector().select(_frames([blurry, dark, bright], t0))
    assert out.selection is None
    assert out.rejected == {"blurry": 1, "too_dark": 1, "too_bright": 1}
    small = _selector(min_face_px=500).select(_frames([face], t0))
    assert small.selection is None and small.rejected == {"face_too_small": 1}


def test_least_motion_frame_wins_and_motion_energy_reported(synth_set):
    a, b = _face(synth_set, 0), _face(synth_set, 1)
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    # b a a b: the middle frames hardly move relative to a neighbour.
    out = _selector().select(_frames([b, a, a.copy(), b], t0))
    assert out.selection is not None
    chosen = out.selection.chosen
    assert np.array_equal(chosen.frame.pixels, a) and chosen.motion == 0.0
    assert out.motion_energy > 0


def test_stillness_flags_then_excludes(synth_set):
    face = _face(synth_set)
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    flag = _selector(still_after_s=7)
    results = [flag.select(_frames([face, face], t0 + timedelta(seconds=4 * i))) for i in range(3)]
    assert [r.selection.asleep for r in results] == [False, False, True]
    exclude = _selector(still_after_s=7, asleep="exclude")
    results = [exclude.select(_frames([face, face], t0 + timedelta(seconds=4 * i))) for i in range(3)]
    assert results[2].selection is None and results[2].rejected == {"asleep": 2}
    # Movement wakes it up again.
    other = _face(synth_set, 1)
    woke = exclude.select(_frames([face, other], t0 + timedelta(seconds=13)))
    assert woke.selection is not None and not woke.selection.asleep


def test_region_outside_frame_is_rejected(synth_set):
    face = _face(synth_set)
    view = ViewSection(name="v", source="s", cage_id="C1", region=(5000, 5000, 100, 100))
    sel = ViewSelector(view, SelectionSection(), (299, 299))
    out = sel.select(_frames([face], datetime(2026, 1, 1, tzinfo=UTC)))
    assert out.selection is None and out.rejected == {"region_outside_frame": 1}


# --------------------------------------------------------------------------- sources


def test_time_from_name():
    assert time_from_name("cam_20260102_030405.jpg") == datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert time_from_name("2026-01-02T03-04-05.250.png") == datetime(2026, 1, 2, 3, 4, 5, 250000, tzinfo=UTC)
    assert time_from_name("IMG_0001.jpg") is None


def _folder_cfg(path: Path, **kw):
    from amgs.device.config import FolderSource

    return FolderSource(kind="folder", name="f", path=path, **kw)


def test_folder_replay_order_seek_skip_and_bad_frames(tmp_path, synth_set):
    face = sorted((synth_set / "pain").glob("*.jpg"))[0].read_bytes()
    for name in ("20260101_000010.jpg", "20260101_000000.jpg", "20260101_000020.jpg", "20260101_000030.jpg"):
        (tmp_path / name).write_bytes(face)
    (tmp_path / "20260101_000005.jpg").write_bytes(b"junk")
    (tmp_path / "notes.txt").write_text("ignored")
    src = FolderReplay(_folder_cfg(tmp_path))
    src.open()
    assert src.read().name == "20260101_000000.jpg"
    with pytest.raises(BadFrame) as e:
        src.read()
    assert "20260101_000005.jpg" in str(e.value) and e.value.position.endswith("|20260101_000005.jpg")
    skipped = src.read(not_before=datetime(2026, 1, 1, 0, 0, 15, tzinfo=UTC))
    assert skipped.name == "20260101_000020.jpg"
    resumed = FolderReplay(_folder_cfg(tmp_path))
    resumed.seek(skipped.position)
    resumed.open()
    assert resumed.read().name == "20260101_000030.jpg"
    with pytest.raises(SourceExhausted):
        resumed.read()


def test_folder_mtime_timestamps_and_realtime_pacing(tmp_path, synth_set):
    face = sorted((synth_set / "pain").glob("*.jpg"))[0].read_bytes()
    for i, name in enumerate(("b.jpg", "a.jpg")):
        (tmp_path / name).write_bytes(face)
        os.utime(tmp_path / name, (1_700_000_000 + 30 * i, 1_700_000_000 + 30 * i))
    slept: list[float] = []
    src = FolderReplay(
        _folder_cfg(tmp_path, timestamps="mtime", realtime=True, speed=10.0), sleep=slept.append
    )
    src.open()
    first, second = src.read(), src.read()
    assert (first.name, second.name) == ("b.jpg", "a.jpg")
    assert second.captured_at - first.captured_at == timedelta(seconds=30)
    assert len(slept) == 1 and 2.5 < slept[0] <= 3.0  # 30 s of capture time at 10x


def test_retrying_source_backs_off_and_reports(tmp_path):
    missing = tmp_path / "not-yet"
    rs = RetryingSource("f", FolderReplay(_folder_cfg(missing)), min_backoff_s=0.01, max_backoff_s=0.04)
    assert not rs.ready() and not rs.ok and "does not exist" in rs.error
    first_retry = rs.retry_at
    assert not rs.ready(now=first_retry + 1) and rs.failures == 2  # backoff doubles
    missing.mkdir()
    assert rs.ready(now=rs.retry_at + 1) and rs.ok and rs.failures == 0


def test_picamera2_absent_gives_a_clear_error():
    from amgs.device.config import PiCameraSource
    from amgs.device.sources import PiCamera

    try:
        import picamera2  # noqa: F401

        pytest.skip("picamera2 is installed here")
    except ImportError:
        pass
    with pytest.raises(SourceError, match="apt install python3-picamera2"):
        PiCamera(PiCameraSource(kind="picamera2", name="cam")).open()


def test_opencv_source_that_cannot_open_is_reported(tmp_path):
    from amgs.device.config import OpenCVSource
    from amgs.device.sources import OpenCVCapture

    with pytest.raises(SourceError, match="does not exist"):
        OpenCVCapture(OpenCVSource(kind="opencv", name="v", uri=str(tmp_path / "none.mp4"))).open()
    (tmp_path / "junk.mp4").write_bytes(b"not a video")
    with pytest.raises(SourceError, match="cannot open"):
        OpenCVCapture(OpenCVSource(kind="opencv", name="v", uri=str(tmp_path / "junk.mp4"))).open()


# --------------------------------------------------------------------------- sd_notify


def test_sd_notify_ready_watchdog_stopping(tmp_path, monkeypatch):
    path = str(tmp_path / "notify.sock")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    server.bind(path)
    server.settimeout(2)
    monkeypatch.setenv("NOTIFY_SOCKET", path)
    monkeypatch.setenv("WATCHDOG_USEC", "2000000")
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    n = Notifier()
    assert n.enabled and n.watchdog_interval_s == 1.0
    n.ready("scoring 2 view(s)")
    assert server.recv(256) == b"READY=1\nSTATUS=scoring 2 view(s)"
    n.watchdog()
    n.watchdog()  # within the interval: no second ping
    n.stopping()
    assert server.recv(256) == b"WATCHDOG=1"
    assert server.recv(256) == b"STOPPING=1"
    n.close()
    server.close()


def test_sd_notify_is_a_no_op_outside_systemd(monkeypatch):
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    n = Notifier()
    assert not n.enabled and n.notify("READY=1") is False


# --------------------------------------------------------------------------- detector, health


def test_detector_best_box_from_ssd_outputs():
    boxes = np.array([[0.1, 0.1, 0.5, 0.5], [0.2, 0.4, 0.8, 0.9], [0, 0, 1, 1]], dtype=np.float32)
    classes = np.array([0, 0, 1], dtype=np.float32)
    scores = np.array([0.6, 0.9, 0.99], dtype=np.float32)
    assert best_box(boxes, classes, scores, 3, (1000, 500), 0.5, class_id=0) == (400, 100, 500, 300)
    assert best_box(boxes, classes, scores, 3, (1000, 500), 0.5) == (0, 0, 1000, 500)
    assert best_box(boxes, classes, scores, 1, (1000, 500), 0.7) is None
    grown = best_box(boxes, classes, scores, 1, (1000, 500), 0.5, margin=0.1)
    assert grown == (60, 30, 480, 240)


def test_status_message_follows_the_contract(tmp_path):
    h = Health()
    h.count("seen", 3)
    h.reject({"blurry": 2})
    h.captured(datetime(2026, 1, 1, tzinfo=UTC))
    clock = ClockInfo()
    msg = status_message(
        device_id="d1",
        site="s1",
        state="online",
        health=h,
        delivery_stats={"queue_depth": 4, "unconfirmed": 1},
        last_seq=9,
        model={"name": "m", "version": "1", "sha256": "a" * 64},
        clock=clock.record(12.5),
        views=[{"view": "v", "cage_id": "C1", "animal_id": None, "source_ok": False, "error": "unplugged"}],
        storage_warning=None,
        state_dir=tmp_path,
    )
    validate(msg, "amgs.status/1")
    assert msg["state"] == "degraded" and "source failing for view(s) v" in msg["reason"]
    assert msg["rejected"] == {"blurry": 2} and msg["queue_depth"] == 4
    assert msg["clock"]["boot_id"] == boot_id() and isinstance(msg["clock"]["synced"], bool)


def test_health_counters_are_thread_safe():
    h = Health()
    threads = [threading.Thread(target=lambda: [h.count("seen") for _ in range(1000)]) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert h.snapshot()["frames"]["seen"] == 4000


def test_outbox_renumbers_after_a_collector_that_is_ahead(tmp_path):
    box = Outbox(tmp_path / "o.sqlite3")
    box.commit([_record(1), _record(2)])
    assert box.renumber_after(100) == 2
    assert [(p.seq, p.msg_id) for p in box.pending()] == [(101, f"{1:032x}"), (102, f"{2:032x}")]
    assert all(validate(__import__("json").loads(p.payload))["seq"] == p.seq for p in box.pending())
    assert box.commit([_record(3)]) == [103]


class _FakeDetector:
    """Stands in for the TFLite detector's box search only (its parsing is tested above)."""

    def __init__(self) -> None:
        self.seen: list[tuple[int, ...]] = []

    def best_box(self, pixels: np.ndarray):
        self.seen.append(pixels.shape)
        return (10, 20, 100, 120)


def test_detector_searches_inside_the_view_region(synth_set):
    face = np.zeros((720, 1280, 3), np.uint8)
    face[100:260, 500:660] = _face(synth_set)
    det = _FakeDetector()
    view = ViewSection(name="v", source="s", cage_id="C1", region=(400, 50, 600, 500))
    sel = ViewSelector(
        view, SelectionSection(min_sharpness=0, min_exposure=0, min_face_px=32), (299, 299), det
    )
    out = sel.select(_frames([face], datetime(2026, 1, 1, tzinfo=UTC)))
    assert det.seen == [(500, 600, 3)]
    assert out.selection is not None and out.selection.chosen.box == (410, 70, 100, 120)


@pytest.mark.slow
def test_tflite_ssd_detector_end_to_end(tmp_path):
    """A tiny real TFLite model with the SSD post-processed signature, built here with TensorFlow."""
    tf = pytest.importorskip("tensorflow")
    from amgs.device.config import DetectorSection
    from amgs.device.detector import Detector

    class Tiny(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([1, 32, 32, 3], tf.float32)])
        def serve(self, x):
            bright = tf.reduce_mean(x)  # -1 (black) .. 1 (white)
            boxes = tf.constant([[[0.25, 0.1, 0.75, 0.6], [0.0, 0.0, 0.5, 0.5]]])
            return {
                "detection_boxes": boxes,
                "detection_classes": tf.constant([[0.0, 1.0]]),
                "detection_scores": tf.reshape(tf.stack([(bright + 1) / 2, tf.constant(0.4)]), [1, 2]),
                "num_detections": tf.constant([2.0]),
            }

    module = Tiny()
    conv = tf.lite.TFLiteConverter.from_concrete_functions([module.serve.get_concrete_function()], module)
    (tmp_path / "det.tflite").write_bytes(conv.convert())
    det = Detector(DetectorSection(path=tmp_path / "det.tflite", min_score=0.5, class_id=0, margin=0))
    white = np.full((100, 200, 3), 255, np.uint8)
    assert det.best_box(white) == (20, 25, 100, 50)
    assert det.best_box(np.zeros_like(white)) is None  # score 0 for black, the other box is class 1
    (tmp_path / "junk.tflite").write_bytes(b"junk")
    with pytest.raises(Exception, match="cannot be loaded"):
        Detector(DetectorSection(path=tmp_path / "junk.tflite"))
