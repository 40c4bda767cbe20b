"""Schema migrations keep data (with a backup first), config errors name key/value/allowed, and the CLI
manages metadata, imports CSV all-or-nothing and exports tidy CSV."""

from __future__ import annotations

import csv
import io
import json
import sqlite3
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from server_support import server_config

from amgs.cli import main
from amgs.demo import loadgen
from amgs.server.config import ConfigError, load_config, parse_config
from amgs.server.ingest.classify import score_row
from amgs.server.storage.db import SCHEMA_VERSION, SCORE_COLUMNS, CollectorDB, DatabaseError, open_database

ROOT = Path(__file__).resolve().parents[1]


def _insert_old_scores(conn, rows) -> None:
    """Score rows as an older schema holds them: only the columns that version has."""
    have = {r[1] for r in conn.execute("PRAGMA table_info(scores)")}
    cols = [c for c in SCORE_COLUMNS if c in have]
    conn.executemany(
        f"INSERT INTO scores ({', '.join(cols)}) VALUES ({', '.join('?' for _ in cols)})",
        [tuple(r[c] for c in cols) for r in rows],
    )


def test_migration_from_version_1_keeps_data_backfills_rollups_and_backs_up(tmp_path):
    config = server_config(tmp_path)
    db = CollectorDB(config.storage.db_path)
    assert db.migrate(target=1) == [1]
    conn = db.connect().conn
    now = time.time()
    rows = [score_row(loadgen.score_message("d1", s, t=now - s * 600), now) for s in range(1, 51)]
    _insert_old_scores(conn, rows)
    conn.execute("INSERT INTO animals (animal_id, cage_id, sex) VALUES ('m1', 'c1', 'F')")
    conn.close()

    migrated = open_database(config)  # what `amgs server run` does on start
    assert migrated.version() == SCHEMA_VERSION
    c = migrated.local()
    assert c.execute("SELECT count(*) FROM scores").fetchone()[0] == 50
    assert c.execute("SELECT sex FROM animals").fetchone()[0] == "F"
    assert c.execute("SELECT sum(n), round(sum(sum_amgs), 6) FROM rollup_5m").fetchone() == (
        50,
        round(sum(r["amgs"] for r in rows), 6),
    )
    (backup,) = list(config.storage.backups_dir.glob("collector-*.db"))
    with sqlite3.connect(backup) as old:
        assert old.execute("PRAGMA user_version").fetchone()[0] == 1
        assert old.execute("SELECT count(*) FROM scores").fetchone()[0] == 50
    assert open_database(config).migrate() == []  # idempotent


def test_migration_from_the_previous_version_keeps_ingest_state(tmp_path):
    from amgs.server.ingest.classify import Incoming
    from amgs.server.ingest.store import Ingestor
    from amgs.server.storage.db import ROLLUP_TABLES, rollup_select
    from amgs.server.storage.schema import ROLLUP_SUMS_V2

    config = server_config(tmp_path)
    db = CollectorDB(config.storage.db_path)
    db.migrate(target=4)  # the version before reject rollups (v5), which the upgrade backfills
    conn = db.connect().conn  # what the previous version's writer left: scores 1-3 and 5, rollups, device row
    now = time.time()
    rows = [score_row(loadgen.score_message("d1", s, t=now - 60 * s), now) for s in (1, 2, 3, 5)]
    _insert_old_scores(conn, rows)
    for width, table in ROLLUP_TABLES.items():
        conn.execute(
            f"INSERT INTO {table} (cage_id, animal_id, bucket, {', '.join(ROLLUP_SUMS_V2)}) "
            f"{rollup_select(width, before_outcomes=True)}"
        )
    conn.execute(
        "INSERT INTO devices (device_id, site, committed_seq, max_seq, scores_total) VALUES ('d1', 'lab', 3, 5, 4)"
    )
    for t, blur in ((now - 7200, 1), (now - 3600, 4), (now - 60, 6)):  # cumulative reject counters
        conn.execute(
            "INSERT INTO status_log (device_id, at, t, received_at, state, rejected_json) VALUES (?, '', ?, ?, ?, ?)",
            ["d1", t, t, "online", json.dumps({"blur": blur})],
        )
    conn.close()

    migrated = open_database(config)
    assert migrated.version() == SCHEMA_VERSION
    assert len(list(config.storage.backups_dir.glob(f"collector-*-pre-v{SCHEMA_VERSION}-*.db"))) == 1
    ing = Ingestor(migrated, config)
    item = Incoming(*loadgen.score_payload(loadgen.score_message("d1", 4, t=now)), 1, 1)
    assert ing.process([item]).watermarks["d1"] == ("lab", 5)  # 5 was pending across the upgrade
    assert ing.conn.execute("SELECT sum(n) FROM rollup_1h").fetchone()[0] == 5
    assert ing.conn.execute("SELECT sum(n) FROM rejects_5m WHERE reason = 'blur'").fetchone()[0] == 5  # 3 + 2


def test_newer_schema_is_refused_with_advice(tmp_path):
    path = tmp_path / "c.db"
    with sqlite3.connect(path) as conn:
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(DatabaseError, match="newer than this software"):
        CollectorDB(path).migrate()


def test_example_config_is_valid():
    config = load_config(ROOT / "examples" / "server.toml")
    assert config.mqtt.session_id == "amgs-collector" and config.storage.wal


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"mqtt": {"hots": "x"}}, "unknown key 'mqtt.hots' (allowed here: host, port"),
        ({"mqtt": {"port": 0}}, "mqtt.port = 0"),
        ({"storage": {"raw_retention_days": -1}}, "storage.raw_retention_days = -1"),
        ({"photoperiod": {"lights_on": "25:00"}}, "photoperiod.lights_on = '25:00'"),
        ({"photoperiod": {"timezone": "Mars/Olympus"}}, "IANA time zone"),
        ({"colour": 1}, "unknown key 'colour'"),
    ],
)
def test_config_errors_name_key_value_and_allowed(data, expected):
    with pytest.raises(ConfigError) as e:
        parse_config(data)
    assert expected in str(e.value)


def test_config_file_errors(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[mqtt\nport = 1")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(bad)


def test_unloadable_certificate_stops_the_collector_at_start_with_its_name(tmp_path):
    """The MQTT receiver runs in a child process; a certificate it could not load must still fail the
    start (and `check-config`) with the file named, not leave a receiver that dies again and again."""
    from amgs.server.cli.main import cli
    from amgs.server.service import Collector

    ca = tmp_path / "ca.pem"
    ca.write_text("not a certificate")
    data = {"storage": {"state_dir": str(tmp_path / "state")}, "mqtt": {"tls": {"ca_file": str(ca)}}}
    with pytest.raises(ConfigError, match=r"mqtt\.tls: cannot load .*ca\.pem"):
        Collector(parse_config(data), with_http=False)
    toml = tmp_path / "server.toml"
    toml.write_text(f'[storage]\nstate_dir = "{tmp_path / "state"}"\n[mqtt.tls]\nca_file = "{ca}"\n')
    for args in (["check-config", str(toml)], ["run", "--config", str(toml)]):
        result = CliRunner().invoke(cli, args)
        assert result.exit_code == 1 and "mqtt.tls: cannot load" in result.output, (args, result.output)


def test_cli_metadata_import_and_export(tmp_path):
    db = str(tmp_path / "c.db")
    run = CliRunner().invoke

    def ok(*args):
        result = run(main, ["server", *args, "--db", db])
        assert result.exit_code == 0, result.output
        return result.output

    ok("group", "add", "lap", "--name", "Laparotomy")
    ok("cage", "add", "c1", "--room", "r1")
    ok("animal", "add", "m1", "--cage", "c1", "--group", "lap", "--sex", "female", "--housing", "single")
    assert json.loads(ok("animal", "list"))["sex"] == "F"
    bad = run(main, ["server", "animal", "add", "m2", "--sex", "X", "--db", db])
    assert bad.exit_code != 0 and "sex = 'X'" in bad.output

    events = tmp_path / "events.csv"
    events.write_text(
        "kind,at,animal_id,value,unit\nsurgery,2026-03-02 10:00,m1,,\nanalgesic,2026-03-02 10:30,m1,0.1,mg/kg\n"
    )
    assert "imported 2 events" in ok("import", "events", str(events))
    broken = tmp_path / "broken.csv"
    broken.write_text(
        "kind,at,animal_id\nsurgery,2026-03-02 11:00,m1\nbath,2026-03-02 12:00,m1\nweight,yesterday,m1\n"
    )
    result = run(main, ["server", "import", "events", str(broken), "--db", db])
    assert result.exit_code != 0
    assert "line 3" in result.output and "line 4" in result.output and "kind" in result.output
    assert len(ok("event", "list").splitlines()) == 2  # nothing of the broken file was imported

    from amgs.server.ingest.classify import Incoming
    from amgs.server.ingest.store import Ingestor

    config = server_config(tmp_path)
    ing = Ingestor(CollectorDB(db), config)
    t0 = 1772445600.0  # 2026-03-02T10:00Z
    ing.process(
        [
            Incoming(
                *loadgen.score_payload(loadgen.score_message("d1", s, cage_id="c1", t=t0 + s * 60, amgs=0.5)),
                s,
                1,
            )
            for s in range(1, 11)
        ]
    )
    out = ok("export", "scores", "--cage", "c1")
    rows = list(csv.DictReader(io.StringIO(out)))
    assert len(rows) == 10 and rows[0]["cage_id"] == "c1"
    out = ok("export", "timecourse", "--animal", "m1", "--event", "surgery", "--bin", "1h")
    rows = list(csv.DictReader(io.StringIO(out)))
    mean = [r for r in rows if r["metric"] == "mean_amgs"]
    assert len(mean) == 1 and mean[0]["n_images"] == "10" and float(mean[0]["value"]) == 0.5
    assert mean[0]["hours_since_event"] == "0.0"
    assert "d1" in ok("devices")
    assert "schema version" in ok("migrate")


def test_periodic_backup_job_copies_the_live_database(tmp_path):
    from amgs.server.jobs import JobContext
    from amgs.server.service import builtin_jobs

    config = server_config(tmp_path, storage={"backup_every_h": 24, "backups_keep": 2})
    db = open_database(config)
    db.local().execute("INSERT INTO cages (cage_id) VALUES ('c1')")
    (job,) = [j for j in builtin_jobs(config) if j.name == "backup"]
    assert job.every_s == 24 * 3600
    for _ in range(3):
        job.run(JobContext(config, db, publish=None, stats=None))
        time.sleep(1.1)  # backup names carry the second
    backups = sorted(config.storage.backups_dir.glob("collector-*-periodic.db"))
    assert len(backups) == 2  # backups_keep
    with sqlite3.connect(backups[-1]) as copy:
        assert copy.execute("SELECT cage_id FROM cages").fetchall() == [("c1",)]
