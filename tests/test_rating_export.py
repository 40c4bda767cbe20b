"""The rated-crops export (server/rating/export.py) reads back through the training loaders (amgs/datasets.py)
with the same labels and human scores the agreement figures use."""

import csv
import datetime as dt

import pytest
from PIL import Image

from amgs.contract import AU_KEYS
from amgs.datasets import load_dataset
from amgs.server.rating.agreement import Rating, consensus
from amgs.server.rating.export import ExportError, ExportItem, file_name, write_export

T0 = dt.datetime(2026, 3, 2, 12, tzinfo=dt.UTC).timestamp()


def au(*v):
    return dict(zip(AU_KEYS, v, strict=True))


@pytest.fixture
def pool(tmp_path):
    images = tmp_path / "pool"
    images.mkdir()
    items = []
    for i in range(1, 7):
        p = images / f"{i}.jpg"
        Image.new("RGB", (32, 32), (i * 30, 80, 80)).save(p, "JPEG")
        items.append(
            ExportItem(
                i,
                p,
                T0 + i * 600,
                cage_id=f"c{i % 2}",
                animal_id="m1" if i <= 2 else None,
                device_id="dev1",
                group_id="lap",
                model_name="amgs-synthetic",
                model_version="1.0.0",
                p_pain=0.1 * i,
                mgs_au=0.3 * i,
                stratum="random",
            )
        )
    ratings = [
        Rating(1, "ann", 1, au(2, 2, 2, 1, 2), rated_at=T0),
        Rating(1, "bob", 1, au(2, 1, None, 2, 2), rated_at=T0),
        Rating(1, "bob", 2, au(0, 0, 0, 0, 0), rated_at=T0 + 9),  # second showing: ratings.csv only
        Rating(2, "ann", 1, au(0, 0, 1, 0, 0), rated_at=T0),
        Rating(3, "ann", 1, unscorable=True, rated_at=T0),  # excluded: not scorable
        Rating(4, "bob", 1, au(1, 1, None, 1, 1), rated_at=T0),  # no cb from anyone: folder only
        Rating(5, "cat", 1, au(1, 1, 1, 1, 1), rated_at=T0),
    ]  # item 6 was never rated: not exported
    items[4].image = images / "gone.jpg"  # item 5's copy is missing
    return items, ratings


def test_export_reads_back_through_the_training_loader(pool, tmp_path):
    items, ratings = pool
    out = tmp_path / "export"
    summary = write_export(out, items, ratings, cutoff=1.0, timezone="Europe/Berlin")
    assert summary["pain"] == 2 and summary["no pain"] == 1 and summary["excluded"] == 2
    assert summary["ratings"] == 7 and summary["raters"] == 3
    loaded = {str(it.path.relative_to(out)): it for it in load_dataset(out)}
    assert set(loaded) == {f"pain/{file_name(1)}", f"no pain/{file_name(2)}", f"pain/{file_name(4)}"}
    cons = consensus(ratings)
    one = loaded[f"pain/{file_name(1)}"]
    assert one.label == 1 and one.au.n_raters == 2
    assert one.au.mgs == pytest.approx(cons[1].mgs)  # the same human MGS as the agreement figures
    assert one.au.au["cb"] == 2.0  # bob's "not visible" left out of the unit's mean
    assert one.animal_id == "m1" and loaded[f"pain/{file_name(4)}"].animal_id == "cage:c0"
    assert loaded[f"pain/{file_name(4)}"].au is None  # every rater said cb not visible
    meta = one.meta
    assert meta["model_name"] == "amgs-synthetic" and meta["model_version"] == "1.0.0"
    assert meta["model_synthetic"] == ""  # not known for this item
    assert meta["condition"] == "lap" and meta["time_point"].endswith("+01:00")
    header = next(csv.reader(open(out / "au_scores.csv")))
    assert header[:6] == ["file", "ot1", "nb1", "cb1", "ep1", "wc1"] and len(header) == 1 + 3 * 5
    raters = list(csv.DictReader(open(out / "raters.csv")))
    assert [(r["rater_number"], r["rater"], r["n_ratings"]) for r in raters] == [
        ("1", "ann", "3"),
        ("2", "bob", "3"),
        ("3", "cat", "1"),
    ]
    excluded = {r["item_id"]: r["reason"] for r in csv.DictReader(open(out / "excluded.csv"))}
    assert set(excluded) == {"3", "5"}
    tidy = list(csv.DictReader(open(out / "ratings.csv")))
    assert len(tidy) == 7 and {r["occasion"] for r in tidy if r["item_id"] == "1"} == {"1", "2"}
    assert "1 no pain" in (out / "README.txt").read_text().replace(",", "")


def test_export_refuses_a_folder_with_files(pool, tmp_path):
    items, ratings = pool
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "x").write_text("x")
    with pytest.raises(ExportError):
        write_export(tmp_path / "busy", items, ratings, cutoff=1.0)
