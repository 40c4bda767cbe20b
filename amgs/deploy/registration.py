"""Registering a provisioned device (and the cages it watches) in the collector's database."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from amgs.sqlite_tx import write_transaction

from .provision_config import ProvisionConfig, ProvisionError

# --------------------------------------------------------------------------- collector registration


def register_in_collector(cfg: ProvisionConfig, name: str, cages: list[str], active: bool) -> str | None:
    """Record the device (and which cages it watches from now on) in the collector's database.

    Revoking un-registers the device and ends its cage assignments, so a collector configured with
    ``ingest.require_registered_devices`` quarantines anything still arriving from it. Returns why
    registration was skipped, if it was.
    """
    if cfg.server_config is None:
        return "no server_config in the provisioning config"
    if not cfg.server_config.exists():
        return f"{cfg.server_config} does not exist (run scripts/install-collector.sh first)"
    from amgs.server.config import ConfigError, load_config

    try:
        storage = load_config(cfg.server_config).storage
    except ConfigError as e:
        raise ProvisionError(f"broker access is updated, but the collector database is not: {e}") from None
    storage.state_dir.mkdir(parents=True, exist_ok=True)
    _as_owner_of(storage.state_dir, lambda: _record_device(storage, cfg.site, name, cages, active))
    return None


def _record_device(storage, site: str, name: str, cages: list[str], active: bool) -> None:
    from amgs.server.query import metadata
    from amgs.server.storage.db import CollectorDB

    db = CollectorDB.from_config(storage)
    db.migrate(storage.backups_dir if storage.backup_before_migrate else None, storage.backups_keep)
    conn = db.connect()
    now = time.time()
    try:
        with write_transaction(conn):
            open_assignments = "UPDATE device_assignments SET end_t = ? WHERE device_id = ? AND end_t IS NULL"
            conn.execute(open_assignments, [now, name])
            if active:
                metadata.save(conn, "sites", {"site_id": site})
                metadata.save(conn, "devices", {"device_id": name, "site": site})
                for cage in cages:
                    metadata.save(conn, "cages", {"cage_id": cage, "site_id": site})
                    start = datetime.fromtimestamp(now, UTC)
                    metadata.save(
                        conn,
                        "assignments",
                        {"device_id": name, "cage_id": cage, "view": cage, "start": start},
                    )
            else:
                # The broker's ACL now refuses the device's last will too, so no "offline" will ever come:
                # the collector shows what provisioning knows (and the offline rule leaves it alone).
                conn.execute(
                    "UPDATE devices SET registered = 0, state = 'revoked', state_since = ? WHERE device_id = ?",
                    [now, name],
                )
    finally:
        conn.close()


def _as_owner_of(path: Path, work: Callable[[], None]) -> None:
    """Run ``work`` as the user owning ``path``: root writing the collector's database (or its WAL and
    backup files) would leave files the collector, running as ``amgs``, cannot open."""
    st = path.stat()
    if os.geteuid() != 0 or st.st_uid == 0:
        work()
        return
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: drop to the owner, do the work, report, exit without cleanup handlers
        os.close(read_end)
        code, message = 0, b""
        try:
            os.setgroups([])
            os.setgid(st.st_gid)
            os.setuid(st.st_uid)
            work()
        except BaseException as e:  # noqa: BLE001 - everything goes back to the parent as text
            code, message = 1, f"{type(e).__name__}: {e}".encode()[:4000]
        os.write(write_end, message)
        os._exit(code)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as f:
        message = f.read()
    _, status = os.waitpid(pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise ProvisionError(
            f"broker access is updated, but the collector database is not: {message.decode(errors='replace')}"
        )
