"""``amgs server user ...`` and ``amgs server alerts ...``: staff accounts and API tokens, alert housekeeping."""

from __future__ import annotations

import click

from .options import config_option, db_option, load


@click.group("user")
def users() -> None:
    """Staff accounts (dashboard log-in) and API tokens. Passwords are stored as Argon2id hashes only."""


@users.command("add")
@click.argument("username")
@click.option(
    "--role", type=click.Choice(["viewer", "rater", "staff", "admin"]), default="staff", show_default=True
)
@click.password_option(help="Asked for when not given (never put it on a shared command line).")
@config_option
@db_option
def user_add(username, role, password, config_path, db_path) -> None:
    """Create a user or set a new password (which ends that user's sessions)."""
    from amgs.server.web.auth import AuthError, add_user

    _, db = load(config_path, db_path)
    conn = db.local()
    try:
        add_user(conn, username, password, role)
    except AuthError as e:
        raise click.ClickException(str(e)) from None
    click.echo(f"user {username} ({role}) saved")


@users.command("disable")
@click.argument("username")
@config_option
@db_option
def user_disable(username, config_path, db_path) -> None:
    """Refuse this user's log-ins, sessions and tokens from now on."""
    from amgs.server.web.auth import disable_user

    _, db = load(config_path, db_path)
    if not disable_user(db.local(), username):
        raise click.ClickException(f"no user {username!r}")
    click.echo(f"user {username} disabled")


@users.command("list")
@config_option
@db_option
def user_list(config_path, db_path) -> None:
    from amgs.server.web.auth import USERS

    _, db = load(config_path, db_path)
    conn = db.local()
    for name, role, disabled in conn.execute(
        f"SELECT username, role, disabled FROM {USERS} ORDER BY username"
    ):
        click.echo("\t".join([name, role] + (["disabled"] if disabled else [])))


@users.command("token")
@click.argument("username")
@click.option("--name", default="script", show_default=True, help="What the token is for.")
@config_option
@db_option
def user_token(username, name, config_path, db_path) -> None:
    """Print a new API token for USERNAME (shown once; only its SHA-256 is stored)."""
    from amgs.server.web.auth import NoSuchUser, create_token

    _, db = load(config_path, db_path)
    conn = db.local()
    try:
        click.echo(create_token(conn, username, name))
    except NoSuchUser:
        raise click.ClickException(f"no user {username!r}: add it with `amgs server user add`") from None
