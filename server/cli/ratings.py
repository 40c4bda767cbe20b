"""``amgs server export-ratings DIR`` and ``amgs server export agreement``: rated faces as a training set,
agreement figures as tidy CSV (the same numbers as the dashboard's agreement page and its API)."""

from __future__ import annotations

import csv
from pathlib import Path

import click

from .options import config_option, db_option, load


@click.command("export-ratings")
@click.argument("dest", type=click.Path(file_okay=False, path_type=Path))
@config_option
@db_option
def export_ratings(dest, config_path, db_path) -> None:
    """Write the rated face crops into DEST (new or empty) in the formats `amgs model train` reads:
    pain/ and no pain/ by the human consensus, au_scores.csv (per rater), animals.csv (split by animal),
    with the model version that produced each crop."""
    from amgs.server.rating.data import export_records
    from amgs.server.rating.export import ExportError, write_export

    config, db = load(config_path, db_path)
    state_dir = db.path.parent if db_path is not None else config.storage.state_dir
    backups = db.path.parent / "backups" if db_path is not None else config.storage.backups_dir
    items, ratings = export_records(db.local().conn, state_dir, backups)
    if not ratings:
        raise click.ClickException("no ratings yet: raters score faces on the dashboard's /rate page")
    try:
        summary = write_export(
            dest, items, ratings, config.rating.human_pain_cutoff, timezone=config.photoperiod.timezone
        )
    except ExportError as e:
        raise click.ClickException(str(e)) from None
    click.echo(
        f"{dest}: {summary['pain']} pain, {summary['no pain']} no pain, {summary['excluded']} excluded "
        f"(excluded.csv); {summary['ratings']} ratings by {summary['raters']} raters. "
        f"Train with: amgs model train {dest} -o runs/lab"
    )


@click.command("agreement")
@config_option
@db_option
@click.option(
    "--by", default="all", show_default=True, help="all, model, device_id, cage_id, group_id, week, month"
)
@click.option("-o", "--output", type=click.File("w"), default="-")
def export_agreement(config_path, db_path, by, output) -> None:
    """Model vs human and human vs human agreement, one row per group x comparison x metric."""
    from amgs.server.rating import data
    from amgs.server.rating.agreement import CSV_COLUMNS

    config, db = load(config_path, db_path)
    try:
        result = data.summary(db.local().conn, config, by)
    except ValueError as e:
        raise click.BadParameter(str(e)) from None
    w = csv.DictWriter(output, fieldnames=CSV_COLUMNS, lineterminator="\n")
    w.writeheader()
    for row in data.tidy(result):
        w.writerow({k: "" if v is None else v for k, v in row.items()})
