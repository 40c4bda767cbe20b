"""Issue 11 on the device: images the model must not be believed on are published as ``unscorable``.

A replay of faces mixed with controls (flat grey, uniform noise, checkerboard) goes through the real agent
and a real broker: every control either never reaches the model (the frame gate rejects it, counted in the
status) or is published with ``outcome: "unscorable"`` and its reason; the faces are scored.
"""

from __future__ import annotations

import threading

import numpy as np
from device_helpers import AckingCollector, make_replay, synth_faces, write_config
from PIL import Image

from amgs.device.agent import Agent
from amgs.device.config import load_config
from amgs.synth.dataset import write_dataset


def controls(folder) -> list:
    """Flat, noise and checkerboard frames as JPEG files (what a camera shows with no mouse in view)."""
    rng = np.random.default_rng(7)
    images = {
        "flat128": np.full((240, 320, 3), 128, np.uint8),
        "flat40": np.full((240, 320, 3), 40, np.uint8),
        "noise": rng.integers(0, 256, (240, 320, 3), dtype=np.uint8),
        "gauss": np.clip(rng.normal(128, 50, (240, 320, 3)), 0, 255).astype(np.uint8),
        "checker": (np.indices((240, 320)).sum(axis=0) // 20 % 2 * 255)
        .astype(np.uint8)[..., None]
        .repeat(3, 2),
    }
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, px in images.items():
        p = folder / f"{name}.png"
        Image.fromarray(px).save(p)
        paths.append(p)
    return paths


def test_controls_are_published_unscorable_and_faces_are_scored(tmp_path, broker, scorer):
    # faces at the model's own size, as the camera region gives them (the shared 160 px set is upscaled:
    # blurrier than anything the shipped model was trained on, and its in-domain check says so for some)
    write_dataset(tmp_path / "faces", 8, seed=41, size=299, n_animals=4)
    faces = synth_faces(tmp_path / "faces", 8)
    ctl = controls(tmp_path / "controls")
    frames = tmp_path / "frames"
    names = make_replay(frames, [*faces, *ctl], step_s=60.0)
    kind = {n: ("face" if i < len(faces) else ctl[i - len(faces)].stem) for i, n in enumerate(names)}
    cfg = write_config(tmp_path / "d.toml", port=broker.port, state=tmp_path / "state", frames=frames)
    collector = AckingCollector(broker.port)
    agent = Agent(load_config(cfg), scorer=scorer)
    thread = threading.Thread(target=agent.run, daemon=True)
    try:
        thread.start()
        thread.join(120)
        assert not thread.is_alive(), "the agent did not finish the replay"
        records = list(collector.by_msg_id.values())
    finally:
        agent.stop_requested.set()
        collector.close()

    by_time = {r["captured_at"][11:19].replace(":", ""): r for r in records}
    record_of = {n: by_time.get(n.split("_")[1].split(".")[0]) for n in names}
    got = {kind[n]: r for n, r in record_of.items() if kind[n] != "face"}
    face_records = [r for n, r in record_of.items() if kind[n] == "face" and r]
    # every record says its outcome; an unscorable one its reason, and it keeps the raw p_pain for the record
    assert all(r["outcome"] in ("pain", "no pain", "unscorable") for r in records)
    assert all((r["outcome"] == "unscorable") == ("unscorable_reason" in r) for r in records)
    assert all("domain_distance" in r for r in records)  # the shipped model has an in-domain check
    for name in ("flat128", "flat40", "noise", "gauss", "checker"):
        r = got[name]
        if r is None:  # the frame gate refused it before the model: counted as a rejected frame
            continue
        assert r["outcome"] == "unscorable", (name, r)
    assert got["flat128"]["unscorable_reason"] == "quality"
    assert got["noise"]["unscorable_reason"] == "out_of_domain"
    assert len(face_records) == len(faces)
    assert sum(r["outcome"] != "unscorable" for r in face_records) >= len(faces) - 1
    assert agent.health.frames.get("unscorable_out_of_domain", 0) >= 1
    assert agent.health.frames.get("unscorable_quality", 0) >= 1
