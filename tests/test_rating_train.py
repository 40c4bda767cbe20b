"""End to end: faces stored by the collector -> rating pool -> raters -> `amgs server export-ratings`
-> `amgs model train` on the export (tiny settings) with the split by animal. SYNTHETIC faces."""

from __future__ import annotations

import csv
import datetime as dt
import json

import numpy as np
import pytest

from amgs.contract import AU_KEYS
from amgs.server.rating import sessions
from amgs.server.rating.data import export_records
from amgs.server.rating.export import write_export
from amgs.server.rating.pool import fill_pool
from amgs.server.rating.sampling import local_day_bounds
from amgs.synth.dataset import write_dataset
from tests.rating_helpers import add_score, open_db
from tests.server_support import server_config

pytestmark = pytest.mark.slow

DAY = dt.date(2026, 3, 2)
T0, _ = local_day_bounds(DAY, "UTC")
SIZE = 96


def test_train_on_an_export_of_rated_faces(tmp_path):
    src = write_dataset(tmp_path / "faces", 96, seed=21, size=SIZE, n_animals=8, margin=0.5).root
    truth = {r["filename"]: r for r in csv.DictReader(open(src / "truth.csv"))}
    animal_of = {r["filename"]: r["animal_id"] for r in csv.DictReader(open(src / "animals.csv"))}
    config = server_config(
        tmp_path,
        rating={"per_cage_per_day": 40, "repeat_share": 0.0, "random_share": 0.5, "session_items": 200},
    )
    conn = open_db(config).local().conn
    true_au = {}
    for i, (name, row) in enumerate(sorted(truth.items())):
        animal = animal_of[name]
        msg_id = f"msg{i:04d}"
        mean = float(np.mean([float(row[k]) for k in AU_KEYS]))
        true_au[msg_id] = {k: float(row[k]) for k in AU_KEYS}
        add_score(
            conn,
            config.storage.state_dir,
            msg_id,
            f"cage-{animal}",
            T0 + i * 800,
            min(1.0, mean / 2),
            device="dev1",
            animal=animal,
            model_version="0.1.0",
            jpeg=(src / name).read_bytes(),
        )
    for animal in set(animal_of.values()):
        add_score(
            conn,
            config.storage.state_dir,
            f"next-{animal}",
            f"cage-{animal}",
            T0 + 86400 + 9,
            0.1,
            crop=False,
        )
    added = fill_pool(conn, config, now=T0 + 86400 + 3600)["added"]
    assert added == 96  # every face of this small day
    rng = np.random.default_rng(0)
    for rater in ("alice", "bob"):
        ref = sessions.open_session(conn, rater, config.rating, T0 + 2 * 86400)
        while (v := sessions.view(conn, ref))["token"]:
            msg_id = conn.execute(
                "SELECT i.msg_id FROM rater_queue q JOIN rating_items i USING (item_id) WHERE q.token = ?",
                [v["token"]],
            ).fetchone()[0]
            au = {k: int(np.clip(np.rint(true_au[msg_id][k] + rng.normal(0, 0.3)), 0, 2)) for k in AU_KEYS}
            sessions.submit(conn, ref, v["token"], au, now=T0 + 2 * 86400)
    out = tmp_path / "export"
    items, ratings = export_records(conn, config.storage.state_dir)
    summary = write_export(out, items, ratings, config.rating.human_pain_cutoff)
    assert summary["pain"] > 20 and summary["no pain"] > 20 and summary["raters"] == 2

    from amgs.models.train import TrainConfig, train

    cfg = TrainConfig(
        size=SIZE,
        weights="none",
        epochs=1,
        batch_size=16,
        learning_rate=1e-3,
        warmup_steps=5,
        val_fraction=0.25,
        bn_recalibration_batches=2,
    )
    result = train(out, tmp_path / "run", cfg, verbose=0, log_fn=lambda m: None)
    assert result.model_path.exists()
    assert result.n_train + result.n_val + result.n_test == summary["pain"] + summary["no pain"]
    record = json.loads((result.model_path.parent / "train.json").read_text())
    exported_animals = {r["animal_id"] for r in csv.DictReader(open(out / "animals.csv"))}
    assert set(record["val_animals"]) < exported_animals  # split by animal: whole animals held out
    models = {r["model_version"] for r in csv.DictReader(open(out / "animals.csv"))}
    assert models == {"0.1.0"}
