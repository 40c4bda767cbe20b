"""The model registry over HTTP: ``/api/models...`` for people (viewer reads, editor changes) and
``/device-api/models/{sha256}.tflite|.manifest.json`` for devices fetching an assigned model.

Devices need no account to download: a model is addressed by its sha256, which the device only learns
from the collector's ``model_assign`` command over MQTT (a topic only the collector may write), and the
device refuses any file whose sha256 is not that one. Serve this over HTTPS where the network is shared.
"""

from __future__ import annotations

import re
from typing import Any

from fastapi import APIRouter, Body, Depends, HTTPException, Query, Request
from fastapi.responses import FileResponse

from amgs.server.models import registry
from amgs.server.rating.by_model import human_agreement
from amgs.server.web.context import who as current

from .access import require_editor, require_viewer

router = APIRouter(prefix="/api/models", dependencies=[Depends(require_viewer)], tags=["models"])
device_router = APIRouter(prefix="/device-api/models", tags=["device"])
_BODY = Body(...)
_FILE = re.compile(r"^([0-9a-f]{64})(\.tflite|\.manifest\.json)$")


def _conn(request: Request):
    return request.app.state.db.local().conn


def _ref(conn, value: Any) -> str | None:
    if value is None or value == "":
        return None
    try:
        return registry.find(conn, str(value))
    except registry.RegistryError as e:
        raise HTTPException(400, str(e)) from None


def _human(request: Request) -> dict[str, Any]:
    return human_agreement(_conn(request), request.app.state.config.rating.human_pain_cutoff)


@router.get("", summary="Registered models with their evaluations, where they run and their human agreement")
def list_models(request: Request) -> list[dict[str, Any]]:
    human = {m["sha256"]: m for m in _human(request)["models"] if m["sha256"]}
    return [{**m, "human_agreement": human.get(m["sha256"])} for m in registry.list_models(_conn(request))]


@router.get(
    "/human-agreement",
    summary="Model vs human ratings per model version, and of shadow candidates on the same rated faces",
)
def get_human_agreement(request: Request) -> dict[str, Any]:
    return _human(request)


@router.get("/assignments", summary="Per device: assigned active/candidate model and what it reports")
def get_assignments(request: Request) -> list[dict[str, Any]]:
    return registry.assignments(_conn(request))


@router.get("/agreement", summary="Active vs candidate (shadow) scores per cage")
def get_agreement(request: Request, candidate: str | None = Query(None)) -> list[dict[str, Any]]:
    conn = _conn(request)
    return registry.agreement(conn, _ref(conn, candidate) if candidate else None)


@router.get("/events", summary="Models added, assigned, promoted, abandoned")
def get_events(request: Request) -> list[dict[str, Any]]:
    return registry.events(_conn(request))


@router.get("/{ref}", summary="One model (sha256, prefix or NAME:VERSION)")
def get_model(request: Request, ref: str) -> dict[str, Any]:
    conn = _conn(request)
    sha = _ref(conn, ref)
    human = {m["sha256"]: m for m in _human(request)["models"] if m["sha256"]}
    return {**registry.get_model(conn, sha), "human_agreement": human.get(sha)}


def _who(request: Request) -> str | None:
    """The user or token owner making the change (recorded with the event)."""
    user = current(request)
    return user.username if user else None


@router.post(
    "/assign",
    summary="Assign a device its active model and/or candidate",
    dependencies=[Depends(require_editor)],
)
def post_assign(request: Request, body: dict[str, Any] = _BODY) -> dict[str, Any]:
    conn = _conn(request)
    device_id = body.get("device_id")
    if not device_id:
        raise HTTPException(400, "device_id is required")
    kwargs = {k: _ref(conn, body[k]) for k in ("active", "candidate") if k in body}
    try:
        return registry.assign(conn, device_id, by=_who(request), **kwargs)
    except registry.RegistryError as e:
        raise HTTPException(400, str(e)) from None


@router.post(
    "/promote",
    summary="The device's candidate becomes its active model",
    dependencies=[Depends(require_editor)],
)
def post_promote(request: Request, body: dict[str, Any] = _BODY) -> dict[str, Any]:
    try:
        return registry.promote(_conn(request), str(body.get("device_id")), _who(request))
    except registry.RegistryError as e:
        raise HTTPException(400, str(e)) from None


@router.post(
    "/abandon", summary="Stop scoring the device's candidate", dependencies=[Depends(require_editor)]
)
def post_abandon(request: Request, body: dict[str, Any] = _BODY) -> dict[str, Any]:
    try:
        return registry.abandon(_conn(request), str(body.get("device_id")), _who(request))
    except registry.RegistryError as e:
        raise HTTPException(400, str(e)) from None


@device_router.get("/{name}", summary="A registered model file or its manifest, by sha256")
def download(request: Request, name: str) -> FileResponse:
    m = _FILE.match(name)
    if not m:
        raise HTTPException(404, "ask for {sha256}.tflite or {sha256}.manifest.json")
    files = registry.model_file(_conn(request), m.group(1))
    if files is None:
        raise HTTPException(404, f"no registered model {m.group(1)}")
    path = files[0] if m.group(2) == ".tflite" else files[1]
    if not path.exists():
        raise HTTPException(410, f"model {m.group(1)[:16]}... is registered but its file is gone")
    return FileResponse(
        path, media_type="application/octet-stream" if m.group(2) == ".tflite" else "application/json"
    )
