"""The lab's own model, end to end at tiny settings, over the real Mosquitto and the real collector:

lab folder (animals in file names, AU scores only) -> `amgs model train` -> held-out report -> `amgs model
quantize` -> `amgs server model add` -> a model corrupted on its way to the device is refused and the device
keeps scoring with the old one -> the good file is fetched and the device switches between bursts -> scores
carry the new model -> a candidate scores in shadow, stored apart -> promotion -> every seq number arrives
once, and each score was made by the model it names (re-scored here).
"""

from __future__ import annotations

import json
import shutil
import threading

import pytest
from click.testing import CliRunner
from device_helpers import make_replay, write_config
from lab_helpers import make_lab_folder, variant_of
from server_support import get_json, get_text, wait_for

from amgs.cli import main

pytestmark = pytest.mark.slow

server = pytest.importorskip("amgs.server.service")


def _cli(*args: str) -> str:
    r = CliRunner().invoke(main, list(args))
    assert r.exit_code == 0, r.output
    return r.output


@pytest.fixture(scope="module")
def lab_model(tmp_path_factory):
    """A lab folder -> trained (1 tiny epoch) -> held-out report -> int8 model at 75 px."""
    root = tmp_path_factory.mktemp("lab")
    lab = make_lab_folder(root / "lab", 32, size=80, n_animals=8)
    run = root / "run"
    out = _cli(
        "model", "train", str(lab), "-o", str(run), "--weights", "none", "--size", "75", "--epochs", "1",
        "--batch-size", "8", "--steps-per-epoch", "1", "--bn-recalibration-batches", "1",
        "--animal-from-name", r"^(CTC\d+)_", "--pain-cutoff", "0.8", "--test-fraction", "0.25", "--quiet",
    )  # fmt: skip
    assert "split by animal" in out and (run / "test" / "report.md").exists()
    tflite = root / "lab.tflite"
    _cli(
        "model", "quantize", str(run / "model.keras"), "--calibration", str(lab), "-o", str(tflite),
        "--name", "lab-mgs", "--version", "1.0.0", "--training-data", "pytest lab folder (synthetic faces)",
        "--synthetic", "--size", "75", "--calibration-count", "8", "--no-edgetpu",
    )  # fmt: skip
    # the int8 model on exactly the test part the run kept
    report = root / "int8-heldout"
    _cli(
        "model", "evaluate", str(tflite), str(lab), "--images", str(run / "test_images.txt"), "-o", str(report),
        "--float-model", str(run / "model.keras"), "--dataset-name", "lab held-out animals",
    )  # fmt: skip
    n_test = len((run / "test_images.txt").read_text().split())
    assert json.loads((report / "figures.json").read_text())["tp"] is not None
    assert f"images: {n_test} scored" in (report / "report.md").read_text()
    return tflite, run


def test_roll_out_refuse_corrupt_shadow_promote_with_a_variant(tmp_path, broker, synth_set, model_path):
    """The roll-out path alone (no training): a variant of the shipped model plays the lab's model."""
    new = variant_of(model_path, tmp_path / "variant", "1.0.0")
    (tmp_path / "eval").mkdir()
    (tmp_path / "eval" / "figures.json").write_text(
        json.dumps({"accuracy": 0.9, "tp": 5, "fp": 1, "tn": 4, "fn": 0})
    )
    rollout_flow(tmp_path, broker, synth_set, model_path, new, tmp_path / "eval", n=200)


@pytest.mark.timeout(1800)  # training + int8 conversion on a shared 2-core machine take most of it
def test_train_add_roll_out_refuse_corrupt_shadow_promote(lab_model, tmp_path, broker, synth_set, model_path):
    from amgs.manifest import read_manifest

    tflite, run = lab_model
    assert (
        read_manifest(tflite.with_suffix(".manifest.json")).pain_cutoff == 0.8
    )  # the AU cut-off of the labels
    rollout_flow(tmp_path, broker, synth_set, model_path, tflite, run / "test", n=300)


def rollout_flow(tmp_path, broker, synth_set, model_path, tflite, evaluation, n):
    from amgs.manifest import read_manifest
    from amgs.server.config import parse_config

    manifest = read_manifest(tflite.with_suffix(".manifest.json"))
    lab_sha = manifest.sha256
    shipped_sha = read_manifest(model_path.with_suffix(".manifest.json")).sha256

    config = parse_config(
        {
            "storage": {"state_dir": str(tmp_path / "collector")},
            "http": {"port": 0, "bind": "127.0.0.1"},
            "ingest": {"batch_wait_ms": 5},
            "mqtt": {"port": broker.port, "client_id": "collector-models"},
        }
    )
    db = str(config.storage.db_path)
    out = _cli("server", "model", "add", str(tflite), "--evaluation", str(evaluation), "--db", db)
    assert "lab-mgs 1.0.0" in out and "SYNTHETIC" in out and "evaluation" in out
    _cli("server", "model", "add", str(model_path), "--db", db)
    # a model whose manifest does not match its file is refused
    bad = tmp_path / "bad.tflite"
    shutil.copy(tflite, bad)
    shutil.copy(tflite.with_suffix(".manifest.json"), bad.with_suffix(".manifest.json"))
    with open(bad, "r+b") as f:
        f.seek(-8, 2)
        f.write(b"\0" * 8)
    r = CliRunner().invoke(main, ["server", "model", "add", str(bad), "--db", db])
    assert r.exit_code == 1 and "changed or replaced" in r.output

    # the collector's copy is corrupted: what the device downloads is not what was registered
    stored = config.storage.state_dir / "models" / f"{lab_sha}.tflite"
    good = stored.read_bytes()
    stored.write_bytes(good[:-16] + b"\x55" * 16)
    # assigned while the device has never connected: it gets the (retained) assignment when it does
    _cli("server", "model", "assign", "dev1", "--active", "lab-mgs:1.0.0", "--db", db)

    collector = server.Collector(config, jobs=server.builtin_jobs(config)).start()
    try:
        wait_for(collector.mqtt.connected.is_set, 30, "collector connected")
        base = f"http://127.0.0.1:{collector.http_port}"
        conn = collector.db.local()

        frames = tmp_path / "frames"
        faces = sorted((synth_set / "pain").glob("*.jpg")) + sorted((synth_set / "no pain").glob("*.jpg"))
        make_replay(frames, [faces[i % len(faces)] for i in range(n)], step_s=1.0)
        cfg_path = write_config(
            tmp_path / "d.toml",
            port=broker.port,
            state=tmp_path / "device",
            frames=frames,
            model_update={"collector_url": base, "retry_s": 0.5, "timeout_s": 10},
            status={"interval_s": 1},
            agent={"exit_when_done": True, "done_timeout_s": 60},
        )
        cfg_path.write_text(
            cfg_path.read_text().replace('kind = "folder"', 'kind = "folder"\nrealtime = true\nspeed = 2.0')
        )
        from amgs.device.agent import Agent
        from amgs.device.config import load_config

        agent = Agent(load_config(cfg_path))
        thread = threading.Thread(target=agent.run, daemon=True)
        thread.start()

        def models_json():
            row = conn.execute("SELECT models_json FROM devices WHERE device_id = 'dev1'").fetchone()
            return json.loads(row[0]) if row and row[0] else {}

        def count(sql, *args):
            return conn.execute(sql, args).fetchone()[0]

        # 1. refused in transit; the device keeps scoring with the shipped model
        wait_for(
            lambda: (models_json().get("update") or {}).get("state") == "failed",
            60,
            "the corrupt model refused",
        )
        assert "corrupted in transit" in models_json()["update"]["error"]
        before = count("SELECT count(*) FROM scores")
        wait_for(lambda: count("SELECT count(*) FROM scores") > before + 2, 60, "scores after the refusal")
        assert count("SELECT count(*) FROM scores WHERE model_sha256 = ?", lab_sha) == 0

        # 2. the file is repaired: the device's retry fetches it and switches between bursts
        stored.write_bytes(good)
        wait_for(
            lambda: count("SELECT count(*) FROM scores WHERE model_sha256 = ?", lab_sha) >= 3,
            90,
            "lab scores",
        )
        row = conn.execute(
            "SELECT model_name, model_version FROM scores WHERE model_sha256 = ? LIMIT 1", [lab_sha]
        ).fetchone()
        assert tuple(row) == ("lab-mgs", "1.0.0")
        wait_for(
            lambda: (models_json().get("previous") or {}).get("sha256") == shipped_sha,
            30,
            "previous reported",
        )

        # 3. shadow: the shipped model as the candidate; its scores are stored apart
        _cli("server", "model", "assign", "dev1", "--candidate", shipped_sha[:12], "--db", db)
        wait_for(lambda: count("SELECT count(*) FROM shadow_scores") >= 3, 90, "shadow scores")
        assert (
            count(
                "SELECT count(*) FROM shadow_scores WHERE active_sha256 != ? OR candidate_sha256 != ?",
                lab_sha,
                shipped_sha,
            )
            == 0
        )
        agreement = get_json(f"{base}/api/models/agreement")
        g = agreement[0]
        # compared: the faces both models could score; a face either one's in-domain check refused is counted
        assert g["cage_id"] == "C1" and g["n"] + g["unscorable_active"] + g["unscorable_candidate"] >= 3, g
        assert g["inference_ms_active"] > 0 and g["inference_ms_candidate"] > 0
        page = get_text(f"{base}/models")
        assert "Active vs candidate" in page and "lab-mgs 1.0.0" in page and "<td>C1</td>" in page
        listed = {m["sha256"]: m for m in get_json(f"{base}/api/models")}
        assert listed[lab_sha]["evaluations"][0]["figures"]["accuracy"] is not None
        assert listed[shipped_sha]["synthetic"] and listed[shipped_sha]["candidate_on"] == ["dev1"]

        # 4. promotion: the candidate becomes active, the lab model is kept as previous
        _cli("server", "model", "promote", "dev1", "--db", db)
        n_lab = count("SELECT count(*) FROM scores WHERE model_sha256 = ?", lab_sha)
        wait_for(
            lambda: count("SELECT count(*) FROM scores WHERE model_sha256 = ? AND seq > (SELECT max(seq) FROM scores "
            "WHERE model_sha256 = ?)", shipped_sha, lab_sha) >= 2,
            90,
            "scores of the promoted model",
        )  # fmt: skip
        assert n_lab >= 3
        thread.join(240)
        assert not thread.is_alive()
        wait_for(lambda: count("SELECT count(*) FROM scores") == n, 60, "every frame stored")
    finally:
        collector.stop()

    # every seq once, no gap; the model changes only at switches (shipped -> lab -> shipped)
    rows = conn.execute("SELECT seq, model_sha256, p_pain, msg_id FROM scores ORDER BY seq").fetchall()
    assert [r[0] for r in rows] == list(range(1, n + 1))
    segments = [rows[0][1]]
    for r in rows[1:]:
        if r[1] != segments[-1]:
            segments.append(r[1])
    assert segments == [shipped_sha, lab_sha, shipped_sha]
    # no shadow row is in scores, and every shadow row belongs to a stored score of the same frame
    assert count("SELECT count(*) FROM shadow_scores WHERE msg_id NOT IN (SELECT msg_id FROM scores)") == 0
    # each score was made by the model it names: re-score frame seq-1 with that model
    from amgs.preprocess import load_pixels, to_model_input
    from amgs.runtime import Model
    from amgs.scoring import Scorer

    scorers = {lab_sha: Scorer(Model(tflite)), shipped_sha: Scorer(Model(model_path))}
    names = sorted(p.name for p in frames.iterdir())
    worst = 0.0
    for seq, sha, p_pain, _ in rows[:: max(1, n // 40)]:
        s = scorers[sha]
        spec = s.manifest.input
        x = to_model_input(load_pixels(frames / names[seq - 1], (spec.width, spec.height)).pixels, spec)
        worst = max(worst, abs(s.score_input(x).p_pain - p_pain))
    assert worst < 0.05, f"a score does not match the model it names (|dP| up to {worst:.3f})"
