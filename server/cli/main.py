"""``amgs server ...``: run the collector, check its config, manage study metadata, import and export.

Every command finds the database through ``--config`` (default ``$AMGS_SERVER_CONFIG``, else
``/etc/amgs/server.toml`` when it exists, else the built-in defaults) or an explicit ``--db``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import click

from .models import model
from .options import config_option, db_option, load
from .ratings import export_agreement, export_ratings
from .users import users


@click.group("server")
def cli() -> None:
    """The collector: MQTT ingest, storage, time courses, study metadata, API, exports."""


def _collector_service():
    """The collector's service module with every part it runs, or a clear refusal to start.

    A collector that started without a part (its alert engine, say) would look healthy while no
    humane-endpoint alert could ever fire: better not to start and say what is broken.
    """
    try:
        from amgs.server import service
    except ImportError as e:
        from amgs.extras import missing_extra_hint

        hint = missing_extra_hint(e) if isinstance(e, ModuleNotFoundError) else None
        raise click.ClickException(
            hint
            or f"the collector cannot start: a part of it failed to load ({type(e).__name__}: {e}). "
            "It will not run without it (alerts included): reinstall amgs with the 'server' extra, "
            "or see the log of your last upgrade."
        ) from None
    return service


@cli.command()
@config_option
def run(config_path) -> None:
    """Run the collector (ingest + HTTP API + periodic jobs) until SIGTERM/SIGINT."""
    import logging

    from amgs.server.config import ConfigError

    run_service = _collector_service().run
    config, _ = load(config_path)
    logging.getLogger().setLevel(config.log_level)
    if not logging.getLogger().handlers:
        logging.basicConfig(level=config.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        run_service(config)
    except ConfigError as e:  # found while starting: e.g. a certificate that cannot be loaded
        raise click.ClickException(str(e)) from None


@cli.command("check-config")
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path))
def check_config(path) -> None:
    """Validate a collector TOML and print the effective settings (secrets are not printed)."""
    from amgs.server.config import ConfigError, load_config
    from amgs.server.http.tls import check_https
    from amgs.server.ingest.mqtt import check_settings

    _collector_service()  # every part the collector runs loads (the alert engine included)
    try:
        config = load_config(path)
        check_settings(config)  # the password and certificate files load
        check_https(config.http)  # and the HTTPS certificate and key
    except ConfigError as e:
        raise click.ClickException(str(e)) from None
    click.echo(json.dumps(config.model_dump(mode="json"), indent=2))


@cli.command()
@config_option
@db_option
def migrate(config_path, db_path) -> None:
    """Create or upgrade the database schema (a backup is taken before changing an existing one)."""
    _, db = load(config_path, db_path)
    click.echo(f"{db.path}: schema version {db.version()}")


@cli.command()
@config_option
@db_option
@click.option("--to", "dest", type=click.Path(file_okay=False, path_type=Path), default=None)
def backup(config_path, db_path, dest) -> None:
    """Copy the live database (consistent while the collector runs) into the backups folder.

    SQLite: the online backup API. PostgreSQL: ``pg_dump`` in its custom format (``pg_restore`` reads it)."""
    from amgs.server.storage.db import DatabaseError
    from amgs.server.storage.db import backup as do_backup
    from amgs.server.storage.pg import is_postgres
    from amgs.server.storage.pg_backup import backup as pg_backup

    config, db = load(config_path, db_path)
    where, keep = dest or config.storage.backups_dir, config.storage.backups_keep
    try:
        if is_postgres(db):
            path = pg_backup(db.url, where, "manual", keep)
        else:
            path = do_backup(db.local().conn, where, "manual", keep)
    except DatabaseError as e:
        raise click.ClickException(str(e)) from None
    click.echo(str(path))


@cli.command()
@config_option
@db_option
def devices(config_path, db_path) -> None:
    """Devices: state, last seen, watermark, gaps."""
    from amgs.server.query.metadata import list_rows
    from amgs.server.query.timecourse import iso

    _, db = load(config_path, db_path)
    rows = list_rows(db.local().conn, "devices")
    if not rows:
        click.echo("no devices yet")
    for r in rows:
        click.echo(
            f"{r['device_id']:<20} {r['state'] or '-':<9} last seen {iso(r['last_seen']) or 'never':<25} "
            f"committed {r['committed_seq']:<8} scores {r['scores_total']:<8} missing {r['missing_open']} "
            f"lost {r['lost_total']}"
        )


# ---------------------------------------------------------------- metadata: one group per kind


def _kind_group(kind: str, name: str, help_text: str) -> click.Group:
    from amgs.server.query.metadata import KINDS

    model = KINDS[kind][0]

    @click.group(name, help=help_text)
    def group() -> None:
        pass

    pk = KINDS[kind][2]

    def add(config_path, db_path, **fields) -> None:
        from amgs.server.query.metadata import MetadataError, save

        config, db = load(config_path, db_path)
        data = {k: v for k, v in fields.items() if v is not None}
        try:
            row = save(db.local().conn, kind, data, config.photoperiod.tz)
        except MetadataError as e:
            raise click.ClickException(f"{name}: {e}") from None
        click.echo(json.dumps(row, default=str))

    for field_name, field in reversed(model.model_fields.items()):
        if field_name == pk:
            add = click.argument(field_name)(add)
        else:
            names = {f"--{field_name.replace('_', '-')}", f"--{field_name.removesuffix('_id')}"}
            add = click.option(*sorted(names, key=len), field_name, default=None, help=field.description)(add)
    add = db_option(config_option(add))
    group.command("add", help=f"Add or update one {name} record.")(add)

    @group.command("list", help=f"List {kind} as JSON lines.")
    @config_option
    @db_option
    def list_(config_path, db_path) -> None:
        from amgs.server.query.metadata import list_rows

        _, db = load(config_path, db_path)
        for row in list_rows(db.local().conn, kind):
            click.echo(json.dumps(row, default=str))

    @group.command("remove", help=f"Delete one {name} record by its id.")
    @click.argument("key")
    @config_option
    @db_option
    def remove(key, config_path, db_path) -> None:
        from amgs.server.query.metadata import delete

        _, db = load(config_path, db_path)
        if not delete(db.local().conn, kind, key):
            raise click.ClickException(f"no {name} {key!r}")
        click.echo(f"removed {name} {key}")

    return group


for _kind, _name, _help in (
    ("sites", "site", "Sites (facilities)."),
    ("rooms", "room", "Rooms of a site."),
    ("cages", "cage", "Cages (or observation boxes)."),
    ("groups", "group", "Treatment groups / cohorts (e.g. laparotomy, sham, laparotomy + analgesic)."),
    ("animals", "animal", "Animals: strain, sex, coat, cage, housing, group."),
    ("devices", "device", "Registered devices (needed when ingest.require_registered_devices is on)."),
    ("events", "event", "Timestamped events: surgery, analgesic, anaesthesia, handling, weight, other."),
    ("assignments", "assign", "Which device watches which cage over which period."),
):
    cli.add_command(_kind_group(_kind, _name, _help))


@cli.command("import")
@click.argument(
    "kind",
    type=click.Choice(["sites", "rooms", "cages", "groups", "animals", "devices", "events", "assignments"]),
)
@click.argument("csv_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@config_option
@db_option
def import_(kind, csv_file, config_path, db_path) -> None:
    """Import a CSV whose header names the fields (all rows or none; errors name line and column)."""
    from amgs.server.query.metadata import MetadataError, import_csv

    config, db = load(config_path, db_path)
    try:
        n = import_csv(
            db.local().conn, kind, csv_file.read_text(encoding="utf-8"), str(csv_file), config.photoperiod.tz
        )
    except (MetadataError, UnicodeDecodeError) as e:
        raise click.ClickException(str(e)) from None
    click.echo(f"imported {n} {kind} from {csv_file}")


# ---------------------------------------------------------------- exports


def _when(value: str | None, default: float | None, name: str) -> float | None:
    from amgs.server.query.params import QueryError, parse_when

    try:
        return parse_when(value, default, name)
    except QueryError as e:
        raise click.BadParameter(str(e)) from None


@cli.group()
def export() -> None:
    """Tidy long-format CSV for R, Prism and pandas."""


@export.command("scores")
@config_option
@db_option
@click.option("--start", default=None, help="RFC 3339 or Unix seconds (default: everything kept)")
@click.option("--end", default=None)
@click.option("--cage", default=None)
@click.option("--animal", default=None)
@click.option("-o", "--output", type=click.File("w"), default="-")
def export_scores(config_path, db_path, start, end, cage, animal, output) -> None:
    """One row per scored image."""
    from amgs.server.query.export import scores_csv

    _, db = load(config_path, db_path)
    for chunk in scores_csv(
        db.local().conn, _when(start, 0, "--start"), _when(end, time.time() + 1, "--end"), cage, animal
    ):
        output.write(chunk)


@export.command("timecourse")
@config_option
@db_option
@click.option("--cage", default=None)
@click.option("--animal", default=None)
@click.option("--group", default=None)
@click.option("--bin", "bin_", default="1h", show_default=True, help="5m .. 1d")
@click.option("--start", default=None)
@click.option("--end", default=None)
@click.option("--event", default=None, help="align to hours since this event kind (groups: default surgery)")
@click.option(
    "--baseline-h", type=float, default=None, help="hours before the event forming each animal's baseline"
)
@click.option("-o", "--output", type=click.File("w"), default="-")
def export_timecourse(
    config_path, db_path, cage, animal, group, bin_, start, end, event, baseline_h, output
) -> None:
    """One row per series x bin x metric (mean_amgs with sem, frac_pain, AU means, activity, rejects)."""
    from amgs.server.query import timecourse as tc
    from amgs.server.query.export import timecourse_csv
    from amgs.server.query.params import QueryError, parse_bin

    if sum(x is not None for x in (cage, animal, group)) != 1:
        raise click.UsageError("give exactly one of --cage, --animal, --group")
    config, db = load(config_path, db_path)
    conn = db.local().conn
    now = time.time()
    common = dict(
        start=_when(start, None, "--start"),
        end=_when(end, None, "--end"),
        now=now,
        photoperiod=config.photoperiod,
        baseline_hours=baseline_h,
    )
    try:
        bin_s = parse_bin(bin_, "--bin")
        if cage:
            result = tc.cage_timecourse(conn, cage, bin_s=bin_s, event_kind=event, **common)
        elif animal:
            result = tc.animal_timecourse(conn, animal, bin_s=bin_s, event_kind=event, **common)
        else:
            common.pop("photoperiod")
            result = tc.group_timecourse(conn, group, bin_s=bin_s, event_kind=event or "surgery", **common)
    except QueryError as e:
        raise click.ClickException(str(e)) from None
    for chunk in timecourse_csv(result):
        output.write(chunk)


@cli.command("serve-api")
@config_option
@db_option
def serve_api(config_path, db_path) -> None:
    """Serve only the HTTP API over a database (no MQTT ingest): for analysis copies of the database."""
    import uvicorn

    from amgs.server.config import ConfigError
    from amgs.server.http.app import create_app
    from amgs.server.http.tls import scheme, uvicorn_config

    config, db = load(config_path, db_path)
    try:
        server = uvicorn.Server(uvicorn_config(create_app(config, db), config.http, log_level="warning"))
    except ConfigError as e:
        raise click.ClickException(str(e)) from None
    click.echo(
        f"serving {db.path} on {scheme(config.http)}://{config.http.bind}:{config.http.port}", err=True
    )
    server.run()


cli.add_command(users)
cli.add_command(model)
cli.add_command(export_ratings)
export.add_command(export_agreement)
