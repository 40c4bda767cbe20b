"""Dashboard JSON on ingested data: a group-housed cage as a whole and per animal, baseline, thresholds."""

from __future__ import annotations

import time

from amgs.server.config import parse_config
from amgs.server.http.app import create_app
from amgs.server.ingest.store import Ingestor
from amgs.server.query.metadata import save
from amgs.server.storage.db import open_database
from tests.alert_helpers import SITE, at, score
from tests.web_helpers import Served, http


def test_cage_and_animal_series(tmp_path):
    config = parse_config(
        {"storage": {"state_dir": str(tmp_path / "state")}, "notify": {"mqtt": {"enabled": False}}}
    )
    db = open_database(config)
    conn = db.local().conn
    now = time.time()
    save(conn, "cages", {"cage_id": "C1", "site_id": SITE})
    for animal in ("A", "B"):
        save(conn, "animals", {"animal_id": animal, "cage_id": "C1", "housing": "group"})
    save(conn, "events", {"kind": "surgery", "at": at(now - 3 * 3600), "cage_id": "C1"})
    batch = []
    for i in range(36):  # 6 h, one image per 10 min per animal: A scores 0.8, B 0.2
        for k, (animal, p) in enumerate((("A", 0.8), ("B", 0.2))):
            batch.append(score("dev1", "C1", 2 * i + k + 1, now - 6 * 3600 + i * 600 + 5, p, animal))
    Ingestor(db, config).process(batch)
    served = Served(create_app(config, db))
    try:
        url = f"{served.base}/api/timecourse/cage/C1?hours=6&bin=6h&baseline_h=24"
        means = {}
        for who in ("", "&animal=A", "&animal=B"):
            status, _, body = http("GET", url + who)
            assert status == 200, body
            filled = [b for b in body["bins"] if b["n"]]
            means[who] = sum(b["mean_amgs"] * b["n"] for b in filled) / sum(b["n"] for b in filled)
            assert body["thresholds"] == {"fraction_pain": 0.5, "mean_amgs": 0.6}
            assert body["baseline"]["n"] > 0
        assert abs(means["&animal=A"] - 0.8) < 1e-9 and abs(means["&animal=B"] - 0.2) < 1e-9
        assert abs(means[""] - 0.5) < 1e-9
        status, _, body = http("GET", f"{served.base}/api/timecourse/cage/C2?animal=A")
        assert status == 400 and "not in cage 'C2'" in body["detail"]
        status, _, page = http("GET", f"{served.base}/cages/C1")
        assert status == 200 and 'id="c-animal"' in page
        status, _, body = http("GET", url + "&event=surgery&hours_before=6&hours_after=6&animal=A")
        assert status == 200 and body["event"]["kind"] == "surgery" and body["bins"][0]["hours"] < 0
    finally:
        served.stop()
