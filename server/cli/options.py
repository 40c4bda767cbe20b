"""What every ``amgs server`` command shares: finding the config and the database."""

from __future__ import annotations

import os
from pathlib import Path

import click

DEFAULT_CONFIG = Path("/etc/amgs/server.toml")


def _config_path(path: Path | None) -> Path | None:
    if path is not None:
        return path
    env = os.environ.get("AMGS_SERVER_CONFIG")
    if env:
        return Path(env)
    return DEFAULT_CONFIG if DEFAULT_CONFIG.exists() else None


def load(config_path: Path | None, db_path: Path | None = None):
    """(config, CollectorDB) or a ClickException saying what is wrong."""
    from amgs.server.config import ConfigError, load_config
    from amgs.server.storage.db import CollectorDB, DatabaseError, open_database

    try:
        config = load_config(_config_path(config_path))
        if db_path is not None:
            db = CollectorDB(db_path)
            db.migrate(db_path.parent / "backups", config.storage.backups_keep)
        else:
            db = open_database(config)
    except (ConfigError, DatabaseError) as e:
        raise click.ClickException(str(e)) from None
    except PermissionError as e:
        raise click.ClickException(f"{e}: run as the collector's user or pass --db / --config") from None
    return config, db


config_option = click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Collector TOML (default: $AMGS_SERVER_CONFIG or /etc/amgs/server.toml).",
)
db_option = click.option(
    "--db",
    "db_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Database file to use instead.",
)
