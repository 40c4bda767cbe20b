"""Blinded scoring benchmark: server time per rating on a 100 cages x 90 days collector database, and the
ratio to a plain page render.

    .venv/bin/python bench/bench_rating.py            # full size (builds a ~730 MB database; minutes)
    .venv/bin/python bench/bench_rating.py --quick    # 10 cages x 3 days, for a smoke check

The database is bench_server.py's query database (90 days of rollups, 7 days of raw scores, 100 animals
in 10 groups) plus what a year of scoring leaves behind: a JPEG crop for every 12th raw score of the
last ``--pool-days`` days, the rating pool sampled from them by the collector's own code (4 per cage and
day, blinded copies written), and a history of ``--history-days`` x 4 items per cage with two ratings
each (so the ratings table has the size of a busy lab's). A rater then scores ``--ratings`` faces
through the real HTTP app (uvicorn, session cookie, CSRF): "server time" is measured inside the app by
an ASGI wrapper, from the request reaching the app to the last byte of its response, for the rating
POST (store + next item) and the image GET; the reference is the server time of ``GET /devices`` (a
plain server-rendered dashboard page) on the same database.
"""

from __future__ import annotations

import argparse
import http.client
import io
import json
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_server import build_query_db  # noqa: E402
from PIL import Image  # noqa: E402

from amgs.contract import AU_KEYS  # noqa: E402
from amgs.server.http.app import create_app  # noqa: E402
from amgs.server.rating.pool import fill_pool  # noqa: E402
from amgs.server.web import auth  # noqa: E402


class Timing:
    """ASGI wrapper: server time per request (request in -> last body byte out), by route label."""

    def __init__(self, app) -> None:
        self.app = app
        self.times: dict[str, list[float]] = {}

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        t0 = time.perf_counter()
        path = scope["path"]
        label = (
            "rate"
            if path.startswith("/api/rating/rate/")
            else "image"
            if path.startswith("/api/rating/image/")
            else path
        )

        async def timed_send(message):
            await send(message)
            if message["type"] == "http.response.body" and not message.get("more_body"):
                self.times.setdefault(label, []).append((time.perf_counter() - t0) * 1000)

        return await self.app(scope, receive, timed_send)


def add_crops(conn, state_dir: Path, since: float, every: int = 12) -> int:
    rows = conn.execute("SELECT msg_id, device_id FROM scores WHERE t >= ? ORDER BY t", [since]).fetchall()[
        ::every
    ]
    rng = random.Random(1)
    for msg_id, device in rows:
        im = Image.new("RGB", (299, 299), (rng.randrange(256), rng.randrange(256), rng.randrange(256)))
        buf = io.BytesIO()
        im.save(buf, "JPEG", quality=80, comment=b"device crop")
        rel = Path("crops") / device / f"{msg_id}.jpg"
        (state_dir / rel).parent.mkdir(parents=True, exist_ok=True)
        (state_dir / rel).write_bytes(buf.getvalue())
        conn.execute(
            "INSERT INTO crops (msg_id, device_id, received_at, size, path) VALUES (?, ?, ?, ?, ?)",
            [msg_id, device, time.time(), len(buf.getvalue()), str(rel)],
        )
    conn.execute("UPDATE scores SET has_crop = 1")
    return len(rows)


def add_history(conn, cages: int, days: int, end: float) -> tuple[int, int]:
    """Rated items of the past (no image files needed: they are not shown again) and two ratings each."""
    rng = random.Random(2)
    items, ratings = [], []
    item_id = 10_000_000
    for d in range(days):
        for c in range(cages):
            for k in range(4):
                item_id += 1
                t = end - (d + 8) * 86400 + k * 3600
                p = rng.random()
                items.append(
                    (item_id, f"hist-{item_id}", t, "2026-01-01", "random", 0, "done", t, t, "lab", f"dev{c:03d}",
                     f"c{c:03d}", f"m{c:03d}", f"g{c % 10}", "light", "amgs", "1.0.0", p, int(p >= 0.5), p, 2 * p)
                )  # fmt: skip
                for rater in ("alice", "bob"):
                    au = [min(2, max(0, round(2 * p + rng.gauss(0, 0.5)))) for _ in AU_KEYS]
                    ratings.append((item_id, rater, 1, t + 86400, *au, 0))
    conn.execute("BEGIN")
    conn.executemany(
        "INSERT INTO rating_items (item_id, msg_id, sampled_at, day, stratum, repeat, state, state_at, t, site, "
        "device_id, cage_id, animal_id, group_id, phase, model_name, model_version, p_pain, is_pain, amgs, mgs_au) "
        f"VALUES ({', '.join('?' * 21)})",
        items,
    )
    conn.executemany(
        f"INSERT INTO ratings (item_id, rater, occasion, rated_at, {', '.join(f'au_{k}' for k in AU_KEYS)}, "
        "unscorable) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        ratings,
    )
    conn.execute("COMMIT")
    conn.execute("ANALYZE")
    return len(items), len(ratings)


def summary(ms: list[float]) -> str:
    ms = sorted(ms)
    return f"{statistics.median(ms):>9.2f}{ms[int(0.95 * (len(ms) - 1))]:>9.2f}{statistics.mean(ms):>9.2f}{len(ms):>6}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="10 cages x 3 days")
    ap.add_argument("--cages", type=int, default=100)
    ap.add_argument("--days", type=int, default=90)
    ap.add_argument("--pool-days", type=int, default=3)
    ap.add_argument("--history-days", type=int, default=90)
    ap.add_argument("--ratings", type=int, default=200)
    ap.add_argument("--pages", type=int, default=100)
    ap.add_argument("--workdir", type=Path, default=None)
    ap.add_argument(
        "--reuse", action="store_true", help="reuse the database an earlier run left in --workdir"
    )
    args = ap.parse_args()
    if args.quick:
        args.cages, args.days, args.history_days, args.ratings, args.pages = 10, 3, 3, 40, 20
    work = args.workdir or Path(tempfile.mkdtemp(prefix="amgs-bench-rating-"))
    t0 = time.perf_counter()
    if args.reuse and (work / "state" / "collector.db").exists():
        measure(args, work, *reopen(work, args), t0)
        return
    config, db, end = build_query_db(work / "state", cages=args.cages, days=args.days)
    config = config.model_copy(
        update={
            "rating": config.rating.model_copy(
                update={
                    "days_back": args.pool_days,
                    "session_items": max(args.ratings, 40),
                    "repeat_share": 0.1,
                }
            )
        }
    )
    conn = db.local().conn
    state = config.storage.state_dir
    n_crops = add_crops(conn, state, end - (args.pool_days + 1) * 86400)
    t1 = time.perf_counter()
    pooled = fill_pool(conn, config, now=end)
    t_pool = time.perf_counter() - t1
    n_hist, n_ratings = add_history(conn, args.cages, args.history_days, end)
    print(
        f"# crops: {n_crops}; pool: {pooled['added']} items sampled from {pooled['days']} days in {t_pool:.1f} s "
        f"({1000 * t_pool / max(1, pooled['added']):.1f} ms per item incl. the blinded copy); "
        f"history: {n_hist} rated items, {n_ratings} ratings"
    )
    measure(args, work, config, db, t0)


def reopen(work: Path, args) -> tuple:
    """The database of an earlier run in the same --workdir (its pool items not yet rated are rated now)."""
    from amgs.server.config import parse_config
    from amgs.server.storage.db import open_database

    config = parse_config(
        {"storage": {"state_dir": str(work / "state")}, "rating": {"session_items": max(args.ratings, 40)}}
    )
    db = open_database(config)
    db.local().execute("DELETE FROM web_users WHERE username = 'rater1'")
    print(f"# reusing {work / 'state'} (--reuse)")
    return config, db


def measure(args, work: Path, config, db, t0: float) -> None:
    size_mb = db.path.stat().st_size / 1e6
    counts = (
        db.local().execute("SELECT count(*), (SELECT count(*) FROM ratings) FROM rating_items").fetchone()
    )
    print(
        f"# database: {args.cages} cages x {args.days} days, {size_mb:.0f} MB, ready in "
        f"{time.perf_counter() - t0:.0f} s; {counts[0]} pool items, {counts[1]} ratings"
    )
    app = create_app(config, db)
    timing = Timing(app)
    udb = db.local()
    auth.add_user(udb, "rater1", "bench password", role="rater")
    cookie, csrf = auth.create_session(udb, "rater1", 12)
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from tests.web_helpers import Served

    served = Served(timing)
    host, port = served.base.removeprefix("http://").split(":")
    client = http.client.HTTPConnection(host, int(port), timeout=30)
    headers = {"Cookie": f"{auth.SESSION_COOKIE}={cookie}", "X-CSRF-Token": csrf}

    def call(method, path, body=None):
        data = json.dumps(body).encode() if body is not None else None
        h = dict(headers, **({"Content-Type": "application/json"} if data else {}))
        client.request(method, path, body=data, headers=h)
        r = client.getresponse()
        raw = r.read()
        assert r.status == 200, (path, r.status, raw[:200])
        return raw

    try:
        view = json.loads(call("POST", "/api/rating/session", {}))
        rng = random.Random(3)
        wall = []
        for _ in range(args.ratings):
            if not view["token"]:
                break
            call("GET", f"/api/rating/image/{view['token']}")
            body = {
                "au": {k: rng.choice([0, 1, 2]) for k in AU_KEYS},
                "unscorable": False,
                "duration_ms": 3000,
            }
            w0 = time.perf_counter()
            view = json.loads(call("POST", f"/api/rating/rate/{view['token']}", body))
            wall.append((time.perf_counter() - w0) * 1000)
        for _ in range(args.pages):
            call("GET", "/devices")
        for _ in range(3):
            call("GET", "/api/rating/agreement?by=model")
    finally:
        client.close()
        served.stop()

    rate, page = timing.times["rate"], timing.times["/devices"]
    print(f"\n{'server time (ms)':<44}{'median':>9}{'p95':>9}{'mean':>9}{'n':>6}")
    print(f"{'rating: POST /api/rating/rate/{token}':<44}{summary(rate)}")
    print(f"{'  (round trip seen by the client)':<44}{summary(wall)}")
    print(f"{'image: GET /api/rating/image/{token}':<44}{summary(timing.times['image'])}")
    print(f"{'plain page: GET /devices':<44}{summary(page)}")
    agree = timing.times["/api/rating/agreement"]
    print(f"{'agreement: GET /api/rating/agreement?by=model':<44}{summary(agree)}")
    ratio = statistics.median(rate) / statistics.median(page)
    print(
        f"\nrating / page render (medians): {ratio:.2f}; target: rating < 20 ms "
        f"({'met' if statistics.median(rate) < 20 else 'NOT met'}: median {statistics.median(rate):.2f} ms, "
        f"p95 {sorted(rate)[int(0.95 * (len(rate) - 1))]:.2f} ms)"
    )
    print(f"# load average: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs; workdir {work}")


if __name__ == "__main__":
    main()
