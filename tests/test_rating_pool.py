"""The rating pool in a real collector database: daily sampling of stored crops, blinded copies that
outlive the crop cap and raw-score retention, expiry of unrated items."""

import datetime as dt
import io

import pytest
from PIL import Image

from amgs.server.rating.pool import BLIND_SIZE, blind_jpeg, expire_pool, fill_pool
from amgs.server.rating.sampling import local_day_bounds
from tests.rating_helpers import REVEALING_COMMENT, add_score, device_jpeg, open_db
from tests.server_support import server_config

DAY = dt.date(2026, 3, 2)
T0, _ = local_day_bounds(DAY, "UTC")
NOW = T0 + 86400 + 3600  # 01:00 the next day


@pytest.fixture
def setup(tmp_path):
    config = server_config(tmp_path, rating={"per_cage_per_day": 4, "repeat_share": 0.25})
    db = open_db(config)
    conn = db.local().conn
    state = config.storage.state_dir
    for cage in ("C1", "C2", "C3"):
        for i in range(40):
            add_score(conn, state, f"{cage}-{i}", cage, T0 + i * 2000, (i % 20) / 20, device=f"d{cage}")
        add_score(conn, state, f"{cage}-next", cage, T0 + 86400 + 60, 0.1, crop=False)  # the day is over
    add_score(conn, state, "C1-nocrop", "C1", T0 + 50, 0.9, crop=False)
    return config, conn


def markers(jpeg: bytes) -> set[int]:
    """JPEG segment markers before the image data (0xFE comment, 0xE1 EXIF, 0xE2 ICC, ...)."""
    out, i = set(), 2
    while i + 4 <= len(jpeg) and jpeg[i] == 0xFF:
        marker = jpeg[i + 1]
        out.add(marker)
        if marker == 0xDA:
            break
        i += 2 + int.from_bytes(jpeg[i + 2 : i + 4], "big")
    return out


def test_blinded_copy_carries_pixels_only():
    src = device_jpeg(1, size=(320, 240))
    assert 0xFE in markers(src) and 0xE1 in markers(src)  # the device's comment and EXIF
    out = blind_jpeg(src)
    assert markers(out) & {0xFE, 0xE1, 0xE2, 0xED} == set()
    assert REVEALING_COMMENT not in out and b"box-03" not in out and b"Exif" not in out
    with Image.open(io.BytesIO(out)) as im:
        assert im.size == (BLIND_SIZE, BLIND_SIZE) and not im.info.get("comment") and not im.getexif()
    # two cameras with different encoders and sizes give images of the same form
    other = blind_jpeg(device_jpeg(2, size=(200, 200)))
    assert markers(other) == markers(out)


def test_daily_sample_per_cage_with_copies(setup):
    config, conn = setup
    result = fill_pool(conn, config, now=NOW)
    assert result["added"] == 12 and result["days"] == 1
    rows = conn.execute("SELECT cage_id, count(*) FROM rating_items GROUP BY cage_id").fetchall()
    assert dict(rows) == {"C1": 4, "C2": 4, "C3": 4}
    assert conn.execute("SELECT count(*) FROM rating_items WHERE msg_id = 'C1-nocrop'").fetchone()[0] == 0
    assert conn.execute("SELECT sum(repeat) FROM rating_items").fetchone()[0] == 3
    state = config.storage.state_dir
    for msg_id, image, source, device in conn.execute(
        "SELECT msg_id, image, source, device_id FROM rating_items"
    ).fetchall():
        assert image.startswith("rating/") and image.endswith(".jpg") and msg_id not in image
        assert (state / source).read_bytes() == (state / "crops" / device / f"{msg_id}.jpg").read_bytes()
        assert REVEALING_COMMENT not in (state / image).read_bytes()
    # sampled once: a second pass adds nothing; a cage whose crops arrive late is sampled then
    assert fill_pool(conn, config, now=NOW + 600)["added"] == 0
    for i in range(10):
        add_score(conn, state, f"C4-{i}", "C4", T0 + i * 3000, 0.3, device="d4")
    assert fill_pool(conn, config, now=NOW + 1200)["added"] == 0  # C4 has sent nothing from after the day yet
    add_score(conn, state, "C4-next", "C4", T0 + 86400 + 900, 0.3, device="d4", crop=False)
    assert fill_pool(conn, config, now=NOW + 1800)["added"] == 4


def test_items_outlive_crop_cap_and_retention_and_expire_only_unrated(setup):
    config, conn = setup
    fill_pool(conn, config, now=NOW)
    state = config.storage.state_dir
    before = conn.execute(
        "SELECT item_id, cage_id, model_version, p_pain, mgs_au FROM rating_items"
    ).fetchall()
    first = before[0][0]
    conn.execute(
        "INSERT INTO ratings (item_id, rater, occasion, rated_at, au_ot, au_nb, au_cb, au_ep, au_wc) "
        "VALUES (?, 'ann', 1, ?, 1, 1, 1, 1, 1)",
        [first, NOW],
    )
    # the crop cap and raw-score retention take the collector's copies away
    for (path,) in conn.execute("SELECT path FROM crops").fetchall():
        (state / path).unlink()
    conn.execute("DELETE FROM crops")
    conn.execute("DELETE FROM scores")
    after = conn.execute(
        "SELECT item_id, cage_id, model_version, p_pain, mgs_au FROM rating_items"
    ).fetchall()
    assert after == before
    files = conn.execute("SELECT item_id, image, source FROM rating_items").fetchall()
    assert all((state / a).exists() and (state / b).exists() for _, a, b in files)
    image_of = {i: a for i, a, _ in files}
    assert expire_pool(conn, config, now=NOW + 59 * 86400) == 0
    assert expire_pool(conn, config, now=NOW + 61 * 86400) == 11  # all but the rated one
    assert (state / image_of[first]).exists()
    gone = conn.execute("SELECT item_id, image FROM rating_items WHERE state = 'expired'").fetchall()
    assert len(gone) == 11 and all(img is None and not (state / image_of[i]).exists() for i, img in gone)
    assert conn.execute("SELECT count(*) FROM ratings").fetchone()[0] == 1


def test_rated_faces_are_mirrored_into_the_backups_and_the_export_falls_back_to_them(setup, tmp_path):
    from amgs.contract import AU_KEYS
    from amgs.server.rating.data import export_records
    from amgs.server.rating.export import write_export
    from amgs.server.rating.jobs import pool_pass
    from amgs.server.rating.pool import mirror_rated

    config, conn = setup
    fill_pool(conn, config, now=NOW)
    items = [i for (i,) in conn.execute("SELECT item_id FROM rating_items ORDER BY item_id LIMIT 3")]
    for i in items:
        conn.execute(
            f"INSERT INTO ratings (item_id, rater, rated_at, {', '.join('au_' + k for k in AU_KEYS)}) "
            "VALUES (?, 'ann', 1, 1, 1, 1, 1, 1)",
            [i],
        )
    assert mirror_rated(conn, config) == 3 and mirror_rated(conn, config) == 0
    state = config.storage.state_dir
    for (src,) in conn.execute("SELECT source FROM rating_items ORDER BY item_id LIMIT 3"):
        (state / src).unlink()  # the pool's folder is lost
    recs, ratings = export_records(conn, state, config.storage.backups_dir)
    summary = write_export(tmp_path / "out", recs, ratings, 1.0)
    assert summary["pain"] == 3 and summary["excluded"] == 0

    class Ctx:  # what the collector's job runner hands the hourly job
        pass

    ctx = Ctx()
    ctx.config = config
    ctx.db = type("D", (), {"local": staticmethod(lambda: type("X", (), {"conn": conn})())})()
    assert pool_pass(ctx)["mirrored"] == 0


def test_images_are_prepared_outside_the_write_transaction(setup, monkeypatch):
    """Re-encoding and fsync take tens of ms per face: they must not hold the database's write lock,
    which the collector's ingest writer needs."""
    from amgs.server.rating import pool

    config, conn = setup
    seen = []
    real = pool.blind_jpeg

    def checked(data):
        seen.append(conn.in_transaction)
        return real(data)

    monkeypatch.setattr(pool, "blind_jpeg", checked)
    assert fill_pool(conn, config, now=NOW)["added"] == 12
    assert seen == [False] * 12
