"""The model registry: which models the collector holds, how good they are, which device runs which.

* ``add_model``: a ``.tflite`` and its manifest are checked (sha256 of the file = the manifest's, manifest
  rules of ``amgs.manifest``) and copied to ``STATE/models/{sha256}.tflite``; its synthetic flag and every
  evaluation (the manifest's, and ``figures.json`` files of ``amgs model evaluate`` / ``train``) are stored.
* ``assign`` / ``promote`` / ``abandon``: per device, the active model and a candidate scored in shadow.
  :func:`publish_due` (a periodic job of the running collector) sends each changed assignment as a retained
  ``amgs.command/1`` ``model_assign`` on the device's command topic (only the collector may write there),
  so a device that is offline gets it when it returns. Devices fetch the files from this collector's
  ``/device-api/models/{sha256}.tflite`` and check them against the assignment's sha256.
* ``store_shadow``: candidate scores (the ``shadow`` part of a score record) go to ``shadow_scores``, never
  to ``scores``: no time course, rollup or alert ever sees them. :func:`agreement` compares them per cage.
"""

from __future__ import annotations

import json
import math
import shutil
import time
from pathlib import Path
from typing import Any

from amgs.contract import UNSCORABLE, Command, command_topic, encode, utc_now
from amgs.manifest import ManifestError, manifest_path_for, read_manifest, sha256_file

HEADLINE = (
    "accuracy",
    "sensitivity",
    "specificity",
    "roc_auc",
    "pearson_r_amgs_vs_human_mgs",
    "pearson_r_au_vs_human_mgs",
    "icc_au_vs_human_mgs",
)


class RegistryError(ValueError):
    """A model cannot be added or assigned; the message says why and what to do."""


def _rows(cur) -> list[dict[str, Any]]:
    cols = [d[0] for d in cur.description]
    return [dict(zip(cols, r, strict=True)) for r in cur.fetchall()]


def _event(
    conn, action: str, sha: str | None, device_id: str | None = None, detail: str | None = None
) -> None:
    conn.execute(
        "INSERT INTO model_events (at, device_id, action, sha256, detail) VALUES (?, ?, ?, ?, ?)",
        [time.time(), device_id, action, sha, detail],
    )


def add_model(
    conn,
    models_dir: Path,
    file: Path,
    *,
    evaluations: list[tuple[Path, str | None]] = (),
    added_by: str | None = None,
    notes: str | None = None,
) -> dict[str, Any]:
    """Check FILE against its manifest and store both in the registry (idempotent for the same file)."""
    file = Path(file)
    if not file.is_file():
        raise RegistryError(f"{file}: no such file")
    try:
        manifest = read_manifest(manifest_path_for(file))
    except ManifestError as e:
        raise RegistryError(str(e)) from None
    sha = sha256_file(file)
    if sha != manifest.sha256:
        raise RegistryError(
            f"{file} has sha256 {sha[:16]}... but its manifest says {manifest.sha256[:16]}...: the file was "
            "changed or replaced after packaging; re-package it with `amgs model quantize`"
        )
    same = conn.execute(
        "SELECT sha256 FROM models WHERE name = ? AND version = ?", [manifest.name, manifest.version]
    ).fetchone()
    if same and same[0] != sha:
        raise RegistryError(
            f"{manifest.name} {manifest.version} is already registered with another file ({same[0][:16]}...): "
            "give the new model a new version (`amgs model quantize --version`)"
        )
    models_dir = Path(models_dir)
    models_dir.mkdir(parents=True, exist_ok=True)
    target = models_dir / f"{sha}.tflite"
    if not target.exists():
        tmp = target.with_suffix(".part")
        shutil.copyfile(file, tmp)
        if sha256_file(tmp) != sha:
            tmp.unlink()
            raise RegistryError(f"{file}: the copy into {models_dir} does not match (disk problem?)")
        tmp.replace(target)
    (models_dir / f"{sha}.manifest.json").write_text(manifest.to_json())
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.execute(
            "INSERT OR IGNORE INTO models (sha256, name, version, synthetic, size_bytes, input_size, quantization, "
            "training_data, pain_cutoff, manifest_json, path, added_at, added_by, notes) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                sha,
                manifest.name,
                manifest.version,
                int(manifest.synthetic),
                target.stat().st_size,
                manifest.input.width,
                manifest.quantization,
                manifest.training_data,
                getattr(manifest, "pain_cutoff", None),
                manifest.to_json(),
                str(target),
                time.time(),
                added_by,
                notes,
            ],
        )
        for e in manifest.evaluation:
            _add_evaluation(conn, sha, e.dataset, e.n_images, e.figures, e.date, "manifest")
        for path, dataset in evaluations:
            figures = _read_figures(Path(path))
            name = dataset or _dataset_name(Path(path))
            n = sum(int(figures.get(k) or 0) for k in ("tp", "fp", "tn", "fn")) or None
            _add_evaluation(conn, sha, name, n, figures, None, str(path))
        _event(conn, "added", sha, detail=f"{manifest.name} {manifest.version}")
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return get_model(conn, sha)


def _dataset_name(path: Path) -> str:
    """figures.json of `amgs model evaluate -o REPORT` -> REPORT's name; of a train run -> 'RUN (held-out test)'."""
    folder = path.parent
    if folder.name == "test" and (folder.parent / "train.json").exists():
        return f"{folder.parent.name} (held-out test part)"
    return folder.name


def _read_figures(path: Path) -> dict[str, Any]:
    try:
        figures = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise RegistryError(f"{path}: cannot read evaluation figures ({e})") from None
    if not isinstance(figures, dict):
        raise RegistryError(f"{path}: expected the figures.json written by `amgs model evaluate`")
    return figures


def _add_evaluation(conn, sha, dataset, n_images, figures, date, source) -> None:
    clean = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in figures.items()}
    conn.execute(
        "INSERT OR REPLACE INTO model_evaluations (sha256, dataset, n_images, figures_json, date, source, added_at) "
        "VALUES (?, ?, ?, ?, ?, ?, ?)",
        [sha, dataset, n_images, json.dumps(clean), date, source, time.time()],
    )


def find(conn, ref: str) -> str:
    """A model's sha256 from a sha256 (or a unique prefix of 8+ hex digits) or NAME:VERSION."""
    if ":" in ref:
        name, version = ref.rsplit(":", 1)
        row = conn.execute(
            "SELECT sha256 FROM models WHERE name = ? AND version = ?", [name, version]
        ).fetchone()
        if row:
            return row[0]
    elif len(ref) >= 8:
        rows = conn.execute("SELECT sha256 FROM models WHERE sha256 LIKE ?", [ref.lower() + "%"]).fetchall()
        if len(rows) == 1:
            return rows[0][0]
        if len(rows) > 1:
            raise RegistryError(f"{ref!r} matches {len(rows)} models: give more of the sha256")
    raise RegistryError(
        f"no registered model {ref!r} (give NAME:VERSION or its sha256; see `amgs server model list`)"
    )


def get_model(conn, sha: str) -> dict[str, Any]:
    rows = _rows(conn.execute("SELECT * FROM models WHERE sha256 = ?", [sha]))
    if not rows:
        raise RegistryError(f"no registered model {sha}")
    return _describe(conn, rows[0])


def _describe(conn, row: dict[str, Any]) -> dict[str, Any]:
    sha = row["sha256"]
    out = {k: v for k, v in row.items() if k not in ("manifest_json", "path")}
    out["synthetic"] = bool(row["synthetic"])
    out["evaluations"] = [
        {
            "dataset": e["dataset"],
            "n_images": e["n_images"],
            "date": e["date"],
            "source": e["source"],
            "figures": json.loads(e["figures_json"]),
        }
        for e in _rows(
            conn.execute("SELECT * FROM model_evaluations WHERE sha256 = ? ORDER BY added_at, dataset", [sha])
        )
    ]
    out["active_on"] = [
        r[0] for r in conn.execute("SELECT device_id FROM model_assignments WHERE active_sha256 = ?", [sha])
    ]
    out["candidate_on"] = [
        r[0]
        for r in conn.execute("SELECT device_id FROM model_assignments WHERE candidate_sha256 = ?", [sha])
    ]
    out["reported_active_on"] = [
        r[0] for r in conn.execute("SELECT device_id FROM devices WHERE model_sha256 = ?", [sha])
    ]
    out["shadow_scores"] = conn.execute(
        "SELECT count(*) FROM shadow_scores WHERE candidate_sha256 = ?", [sha]
    ).fetchone()[0]
    out["scores"] = conn.execute("SELECT count(*) FROM scores WHERE model_sha256 = ?", [sha]).fetchone()[0]
    return out


def list_models(conn) -> list[dict[str, Any]]:
    return [_describe(conn, r) for r in _rows(conn.execute("SELECT * FROM models ORDER BY added_at DESC"))]


def model_file(conn, sha: str) -> tuple[Path, Path] | None:
    row = conn.execute("SELECT path FROM models WHERE sha256 = ?", [sha]).fetchone()
    if row is None:
        return None
    path = Path(row[0])
    return path, path.with_suffix(".manifest.json")


# ------------------------------------------------------------------ assignments


def assignments(conn) -> list[dict[str, Any]]:
    rows = _rows(
        conn.execute(
            "SELECT d.device_id, d.site, d.model_name, d.model_version, d.model_sha256, d.models_json, "
            "a.active_sha256, a.candidate_sha256, a.updated_at, a.updated_by, a.published_at "
            "FROM devices d LEFT JOIN model_assignments a USING (device_id) ORDER BY d.device_id"
        )
    )
    for r in rows:
        reported = json.loads(r.pop("models_json") or "{}")
        r["reported"] = {
            "active": {
                "name": r.pop("model_name"),
                "version": r.pop("model_version"),
                "sha256": r.pop("model_sha256"),
            },
            **reported,
        }
    return rows


def _ref(conn, sha: str | None) -> dict[str, str] | None:
    if sha is None:
        return None
    row = conn.execute("SELECT name, version, synthetic FROM models WHERE sha256 = ?", [sha]).fetchone()
    if row is None:
        raise RegistryError(f"model {sha[:16]}... is not registered")
    return {"name": row[0], "version": row[1], "sha256": sha, "synthetic": bool(row[2])}


_KEEP = object()


def assigned(conn, device_id: str) -> tuple[str | None, str | None] | None:
    """(active sha256, candidate sha256) assigned to a device (None for either: its configured model / no
    candidate); None when nothing was ever assigned to it."""
    row = conn.execute(
        "SELECT active_sha256, candidate_sha256 FROM model_assignments WHERE device_id = ?", [device_id]
    ).fetchone()
    return None if row is None else (row[0], row[1])


def assign(
    conn, device_id: str, *, active: Any = _KEEP, candidate: Any = _KEEP, by: str | None = None
) -> dict:
    """Set a device's active model and/or candidate (a sha256, or None for 'the device's configured model' /
    'no candidate'); the running collector publishes it to the device."""
    cur_active, cur_candidate = assigned(conn, device_id) or (None, None)
    new_active = cur_active if active is _KEEP else active
    new_candidate = cur_candidate if candidate is _KEEP else candidate
    _ref(conn, new_active), _ref(conn, new_candidate)
    if new_candidate is not None and new_candidate == new_active:
        new_candidate = None
    conn.execute(
        "INSERT INTO model_assignments (device_id, active_sha256, candidate_sha256, updated_at, updated_by) "
        "VALUES (?, ?, ?, ?, ?) ON CONFLICT (device_id) DO UPDATE SET active_sha256 = excluded.active_sha256, "
        "candidate_sha256 = excluded.candidate_sha256, updated_at = excluded.updated_at, "
        "updated_by = excluded.updated_by, published_at = NULL",
        [device_id, new_active, new_candidate, time.time(), by],
    )
    _event(
        conn,
        "assigned",
        new_active,
        device_id,
        json.dumps({"active": new_active, "candidate": new_candidate}),
    )
    return {"device_id": device_id, "active_sha256": new_active, "candidate_sha256": new_candidate}


def promote(conn, device_id: str, by: str | None = None) -> dict:
    """The candidate becomes the active model (after an operator looked at the agreement)."""
    candidate = _candidate(conn, device_id, "promote")
    _event(conn, "promoted", candidate, device_id, by)
    return assign(conn, device_id, active=candidate, candidate=None, by=by)


def abandon(conn, device_id: str, by: str | None = None) -> dict:
    candidate = _candidate(conn, device_id, "abandon")
    _event(conn, "abandoned", candidate, device_id, by)
    return assign(conn, device_id, candidate=None, by=by)


def _candidate(conn, device_id: str, action: str) -> str:
    candidate = (assigned(conn, device_id) or (None, None))[1]
    if not candidate:
        raise RegistryError(f"device {device_id!r} has no candidate model to {action}")
    return candidate


def assignment_message(conn, device_id: str) -> dict[str, Any]:
    """The retained ``model_assign`` command for a device, as sent (a dict)."""
    active, candidate = assigned(conn, device_id) or (None, None)
    return Command.build(
        command="model_assign", active=_ref(conn, active), candidate=_ref(conn, candidate), at=utc_now()
    ).wire()


def publish_due(conn, publish, republish_all: bool = False) -> int:
    """Publish (retained) every assignment changed since it was last sent; returns how many."""
    rows = conn.execute(
        "SELECT a.device_id, d.site FROM model_assignments a JOIN devices d USING (device_id) "
        "WHERE d.site IS NOT NULL" + ("" if republish_all else " AND a.published_at IS NULL")
    ).fetchall()
    for device_id, site in rows:
        publish(
            command_topic(site, device_id), encode(assignment_message(conn, device_id)), qos=1, retain=True
        )
        conn.execute(
            "UPDATE model_assignments SET published_at = ? WHERE device_id = ?", [time.time(), device_id]
        )
    return len(rows)


# ------------------------------------------------------------------ from ingest


def store_shadow(conn, items: list[tuple[dict[str, Any], dict[str, Any]]]) -> int:
    """(message, score row) of score records that carry a ``shadow`` part -> ``shadow_scores``."""
    rows = []
    for msg, row in items:
        if hasattr(msg, "wire"):  # an amgs.contract message model
            msg = msg.wire()
        sh = msg.get("shadow")
        if not sh:
            continue
        rows.append(
            [
                row["msg_id"], row["device_id"], row["cage_id"], row["animal_id"], row["seq"], row["t"],
                row["model_sha256"], sh["model"]["sha256"], sh["model"]["name"], sh["model"]["version"],
                row["p_pain"], row["label"], row["mgs_au"], row["inference_ms"],
                sh["p_pain"], sh["label"], sh.get("confidence"), sh.get("mgs_au"), sh.get("inference_ms"),
                row.get("outcome"), sh.get("outcome"),
            ]
        )  # fmt: skip
    if rows:
        conn.executemany(
            "INSERT OR IGNORE INTO shadow_scores (msg_id, device_id, cage_id, animal_id, seq, t, active_sha256, "
            "candidate_sha256, candidate_name, candidate_version, p_pain_active, label_active, mgs_au_active, "
            "inference_ms_active, p_pain, label, confidence, mgs_au, inference_ms, outcome_active, outcome) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            rows,
        )
    return len(rows)


def store_device_models(conn, device_id: str, msg: dict[str, Any]) -> None:
    """The previous and candidate models and the last update a device reports in its status."""
    keys = ("model_previous", "model_candidate", "model_update")
    if any(k in msg for k in keys):
        conn.execute(
            "UPDATE devices SET models_json = ? WHERE device_id = ?",
            [json.dumps({k.removeprefix("model_"): msg.get(k) for k in keys}), device_id],
        )


# ------------------------------------------------------------------ comparison


def _pearson(x: list[float], y: list[float]) -> float | None:
    n = len(x)
    if n < 3:
        return None
    mx, my = sum(x) / n, sum(y) / n
    sxx = sum((a - mx) ** 2 for a in x)
    syy = sum((b - my) ** 2 for b in y)
    if sxx <= 0 or syy <= 0:
        return None
    return round(sum((a - mx) * (b - my) for a, b in zip(x, y, strict=True)) / math.sqrt(sxx * syy), 4)


def agreement(conn, candidate_sha: str | None = None, since: float | None = None) -> list[dict[str, Any]]:
    """Active vs candidate per cage (and candidate model): n, share of identical pain decisions, mean |dP|,
    Pearson r of P(pain), pain fractions, and the mean inference time of each model on the device.

    The decision figures are over faces both models could score; a face either one found unscorable (its
    in-domain check, the quality gate) is counted apart, per model, and compared in nothing."""
    where, args = ["1"], []
    if candidate_sha:
        where.append("candidate_sha256 = ?")
        args.append(candidate_sha)
    if since is not None:
        where.append("t >= ?")
        args.append(since)
    rows = conn.execute(
        "SELECT cage_id, candidate_sha256, candidate_name, candidate_version, active_sha256, p_pain_active, p_pain, "
        "label_active, label, inference_ms_active, inference_ms, outcome_active, outcome FROM shadow_scores WHERE "
        + " AND ".join(where)
        + " ORDER BY cage_id, candidate_sha256, t",
        args,
    ).fetchall()
    groups: dict[tuple[str, str], list] = {}
    for r in rows:
        groups.setdefault((r[0], r[1]), []).append(r)
    out = []
    for (cage, cand), every in groups.items():
        ia, ic = [r[9] for r in every if r[9] is not None], [r[10] for r in every if r[10] is not None]
        rs = [r for r in every if UNSCORABLE not in (r[11], r[12])]
        n = len(rs) or None  # no face both could score: every figure is None, the counts say why
        pa, pc = [r[5] for r in rs], [r[6] for r in rs]
        out.append(
            {
                "cage_id": cage,
                "candidate_sha256": cand,
                "candidate": f"{every[0][2]} {every[0][3]}",
                "active_sha256s": sorted({r[4] for r in every}),
                "n": len(rs),
                "same_decision": n and round(sum(r[7] == r[8] for r in rs) / n, 4),
                "mean_abs_dp": n and round(sum(abs(a - c) for a, c in zip(pa, pc, strict=True)) / n, 4),
                "pearson_r": _pearson(pa, pc),
                "pain_fraction_active": n and round(sum(r[7] == "pain" for r in rs) / n, 4),
                "pain_fraction_candidate": n and round(sum(r[8] == "pain" for r in rs) / n, 4),
                "unscorable_active": sum(r[11] == UNSCORABLE for r in every),
                "unscorable_candidate": sum(r[12] == UNSCORABLE for r in every),
                "inference_ms_active": round(sum(ia) / len(ia), 2) if ia else None,
                "inference_ms_candidate": round(sum(ic) / len(ic), 2) if ic else None,
            }
        )
    return out


def events(conn, limit: int = 200) -> list[dict[str, Any]]:
    return _rows(conn.execute("SELECT * FROM model_events ORDER BY id DESC LIMIT ?", [limit]))
