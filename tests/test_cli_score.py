import csv
import io
import shutil

import pytest
from click.testing import CliRunner

from amgs.cli import main


def test_score_folder_survives_corrupt_files(synth_set, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(synth_set / "pain", data / "pain")
    (data / "pain" / "broken.jpg").write_bytes(b"\xff\xd8\xff garbage")
    good = next((data / "pain").glob("synth_*.jpg")).read_bytes()
    (data / "pain" / "truncated.jpg").write_bytes(good[:500])
    (data / "notes.txt").write_text("not an image, ignored by suffix")
    result = CliRunner().invoke(main, ["score", str(data), "--no-progress"])
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert len(rows) == 12
    assert {"path", "p_pain", "label", "amgs", "confidence", "needs_review", "model_sha256"} <= set(rows[0])
    assert "skipped 2 unreadable" in result.stderr
    assert "broken.jpg" in result.stderr and "truncated.jpg" in result.stderr
    assert "SYNTHETIC" in result.stderr


def test_score_jsonl_and_missing_model(synth_set, tmp_path):
    out = tmp_path / "o.jsonl"
    r = CliRunner().invoke(
        main, ["score", str(synth_set / "no pain"), "--format", "jsonl", "-o", str(out), "--no-progress"]
    )
    assert r.exit_code == 0 and len(out.read_text().splitlines()) == 12
    (tmp_path / "m.tflite").write_bytes(b"x")
    r = CliRunner().invoke(main, ["score", str(synth_set), "--model", str(tmp_path / "m.tflite")])
    assert r.exit_code != 0 and "no manifest" in r.output


def test_video_without_a_detector_says_what_to_pass_instead(tmp_path):
    from amgs.models import DEFAULT_DETECTOR

    if DEFAULT_DETECTOR.is_file():
        pytest.skip("a detector is shipped: nothing to say")
    video = tmp_path / "cage1_20260301_080000.mp4"
    video.write_bytes(b"")  # never opened: the detector is looked for first
    r = CliRunner().invoke(main, ["score", str(video), "--no-progress"])
    assert r.exit_code == 1 and "--region x,y,w,h" in r.output and "--detector FILE" in r.output, r.output
