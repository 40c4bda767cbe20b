"""Helpers for the scale-out tests (tests/test_scaleout_*.py): collector workers as real processes on NATS."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

from deploy_site import Proc

from amgs.demo import loadgen

AMGS = str(Path(sys.executable).with_name("amgs"))


def worker_toml(
    path: Path,
    *,
    state_dir: Path,
    nats_url: str,
    mqtt_port: int | None,
    client_id: str = "collector",
    ack_wait_s: float = 3,
    publish_to_devices: bool = True,
    sources: list[str] | None = None,
    batch_max: int = 200,
    extra: str = "",
    storage_url: str | None = None,
) -> Path:
    """A worker's config: same database and durable consumer for every worker of one tier."""
    srcs = ", ".join(f'"{s}"' for s in sources or [])
    path.write_text(
        f"""log_level = "INFO"
[mqtt]
host = "127.0.0.1"
port = {mqtt_port or 1}
client_id = "{client_id}"
[stream]
engine = "nats"
url = "{nats_url}"
ack_wait_s = {ack_wait_s}
publish_to_devices = {"true" if publish_to_devices else "false"}
sources = [{srcs}]
fetch_batch = 500
[storage]
state_dir = "{state_dir}"
backup_every_h = 0
{f'url = "{storage_url}"' if storage_url else ""}
[ingest]
batch_max = {batch_max}
batch_wait_ms = 20
crop_request_every_s = 0
ack_heartbeat_s = 1
[http]
port = 0
{extra}
"""
    )
    return path


def start_worker(config: Path, log: Path, netns: str | None = None) -> Proc:
    return Proc([AMGS, "server", "run", "--config", str(config)], log, netns=netns).start()


def publish_scores(port: int, devices: list[str], seqs: range, *, site: str = "lab", client_id: str) -> int:
    items = [
        loadgen.score_payload(loadgen.score_message(d, s, cage_id=f"cage-{d}", site=site))
        for s in seqs
        for d in devices
    ]
    return loadgen.publish_all("127.0.0.1", port, items, client_id=client_id)


def _pg_rows(url: str, sql: str) -> list:
    import psycopg

    try:
        with psycopg.connect(url) as c:
            return c.execute(sql).fetchall()
    except psycopg.Error:
        return []


def stored_by_seq(db: Path | str) -> dict[str, list[int]]:
    """Every stored score's seq per device, in order (duplicates would show twice); ``db`` is the SQLite
    file or a PostgreSQL URL."""
    if isinstance(db, str):
        out: dict[str, list[int]] = {}
        for device, seq in _pg_rows(db, "SELECT device_id, seq FROM scores ORDER BY device_id, seq"):
            out.setdefault(device, []).append(seq)
        return out
    if not db.exists():
        return {}
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        rows = conn.execute("SELECT device_id, seq FROM scores ORDER BY device_id, seq").fetchall()
    except sqlite3.OperationalError:
        return {}
    finally:
        conn.close()
    out: dict[str, list[int]] = {}
    for device, seq in rows:
        out.setdefault(device, []).append(seq)
    return out


def stored_count(db: Path | str) -> int:
    if isinstance(db, str):
        rows = _pg_rows(db, "SELECT count(*) FROM scores")
        return rows[0][0] if rows else 0
    if not db.exists():
        return 0
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        return conn.execute("SELECT count(*) FROM scores").fetchone()[0]
    except sqlite3.OperationalError:
        return 0
    finally:
        conn.close()


def committed_seqs(db: Path | str) -> dict[str, int]:
    if isinstance(db, str):
        return dict(_pg_rows(db, "SELECT device_id, committed_seq FROM devices"))
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        return dict(conn.execute("SELECT device_id, committed_seq FROM devices"))
    finally:
        conn.close()


def ip(*args: str) -> None:
    r = subprocess.run(["ip", *args], capture_output=True, text=True)
    assert r.returncode == 0, f"ip {' '.join(args)}: {r.stderr}"
