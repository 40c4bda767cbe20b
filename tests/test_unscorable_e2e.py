"""Issue 11, end to end: a real device agent replays flat, noise and checkerboard frames (one cage) and faces
(another cage) through a real Mosquitto into a real collector running its alert jobs.

The controls reach the collector as ``unscorable`` records (the device's quality gate and in-domain check),
the time course counts them apart from the faces, no pain alert fires on them although the raw model says
"pain" at 0.99 for most, and ``no_usable_faces`` fires for their cage only.
"""

from __future__ import annotations

import json
import re
import threading
import time
from datetime import UTC, datetime, timedelta

from device_helpers import make_replay, synth_faces
from server_support import get_json, server_config, wait_for
from test_device_unscorable import controls

from amgs.device.agent import Agent
from amgs.device.config import load_config
from amgs.synth.dataset import write_dataset


def _device_config(path, port, state, ctrl, faces):
    lines = [
        "[device]",
        'id = "dev1"',
        'site = "lab"',
        f"state_dir = {json.dumps(str(state))}",
        "[model]",
        "allow_synthetic = true",
        "[schedule]",
        "interval_s = 0",
        "burst_frames = 1",
        "[selection]",
        "min_sharpness = 0",  # let flat frames reach the model: the quality gate must say unscorable itself
        "min_exposure = 0",
        "max_exposure = 255",
        "min_face_px = 16",
        "[mqtt]",
        f"port = {port}",
        "reconnect_min_s = 0.2",
        "reconnect_max_s = 1.0",
        "[delivery]",
        'confirm = "collector"',
        "collector_wait_s = 1.0",
        "[agent]",
        "exit_when_done = true",
        "done_timeout_s = 60",
    ]
    for name, folder, cage in (("ctrl", ctrl, "CTRL"), ("faces", faces, "FACE")):
        lines += ["[[sources]]", f'name = "{name}"', 'kind = "folder"', f"path = {json.dumps(str(folder))}"]
        lines += ["[[views]]", f'name = "{name}"', f'source = "{name}"', f'cage_id = "{cage}"']
    path.write_text("\n".join(lines) + "\n")
    return path


def test_device_over_controls_and_faces_counts_unscorable_and_raises_no_usable_faces(
    tmp_path, broker, scorer
):
    from amgs.server.service import Collector, collector_jobs

    start = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=50)  # inside the 2 h alert windows
    ctl = (
        controls(tmp_path / "controls") * 3
    )  # 15 frames: flat 128 and 40, uniform and Gaussian noise, checkers
    make_replay(tmp_path / "ctrl", ctl, step_s=120.0, start=start)
    write_dataset(tmp_path / "set", 12, seed=43, size=299, n_animals=4)
    make_replay(tmp_path / "faces", synth_faces(tmp_path / "set", 12), step_s=120.0, start=start)
    cfg = _device_config(
        tmp_path / "d.toml", broker.port, tmp_path / "dev", tmp_path / "ctrl", tmp_path / "faces"
    )
    config = server_config(
        tmp_path,
        broker,
        notify={"mqtt": {"enabled": False}},
        alerts={"evaluate_every_s": 0.5, "pain": {"min_images": 5}},
    )
    collector = Collector(config, jobs=collector_jobs(config))  # what `amgs server run` runs
    collector.start()
    agent = Agent(load_config(cfg), scorer=scorer)
    thread = threading.Thread(target=agent.run, daemon=True)
    try:
        wait_for(collector.mqtt.connected.is_set, what="collector connected")
        thread.start()
        thread.join(180)
        assert not thread.is_alive(), "the device did not see every record confirmed"
        db = collector.db.local()
        assert db.execute("SELECT count(*) FROM scores").fetchone()[0] == 27
        outcomes = dict(
            db.execute(
                "SELECT cage_id || ':' || outcome, count(*) FROM scores GROUP BY cage_id, outcome"
            ).fetchall()
        )
        assert outcomes.get("CTRL:unscorable") == 15, outcomes  # every control, none scored
        assert outcomes.get("FACE:unscorable", 0) <= 1, outcomes  # faces at the model's size are scored
        raw_pain = db.execute(
            "SELECT count(*) FROM scores WHERE cage_id = 'CTRL' AND label = 'pain'"
        ).fetchone()[0]

        base = f"http://127.0.0.1:{collector.http_port}"
        ctrl = get_json(
            base + "/api/timecourse/cage/CTRL?hours=2&bin=5m"
        )  # 5 min bins: none cut by the window's edges
        assert sum(b["n"] for b in ctrl["bins"]) == 0
        assert sum(b["n_unscorable"] for b in ctrl["bins"]) == 15
        by_reason = {r: sum(b["unscorable"][r] for b in ctrl["bins"]) for r in ("out_of_domain", "quality")}
        assert by_reason["quality"] >= 6 and by_reason["out_of_domain"] >= 3, (
            by_reason
        )  # flat; noise/checkers
        face = get_json(
            base + "/api/timecourse/cage/FACE?hours=2&bin=5m"
        )  # 5 min bins: none cut by the window's edges
        assert sum(b["n"] for b in face["bins"]) >= 11

        def alerts():
            return {(a["rule"], a["cage_id"]): a for a in get_json(base + "/api/alerts?state=open")}

        found = wait_for(
            lambda: alerts().get(("no_usable_faces", "CTRL")) and alerts(), what="no_usable_faces"
        )
        n = re.search(r"(\d+) of (\d+) images unscorable", found[("no_usable_faces", "CTRL")]["message"])
        assert n and n.group(1) == n.group(2) and int(n.group(1)) >= 6  # opened on what had arrived by then
        time.sleep(1.5)  # three more evaluation passes over everything stored
        rules = set(alerts())
        assert not {r for r in rules if r[1] == "CTRL" and r[0] != "no_usable_faces"}, rules
        assert ("no_usable_faces", "FACE") not in rules
        assert raw_pain >= 1  # the raw model did call some controls pain: the outcome is what kept them out
    finally:
        agent.stop_requested.set()
        collector.stop()
