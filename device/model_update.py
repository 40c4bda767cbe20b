"""Model roll-out on the device: fetch from the collector, verify, switch between bursts, shadow, roll back.

The collector says which model a device should score with, and which one it should score in shadow beside
it, in one retained ``amgs.command/1`` ``model_assign`` message on the device's command topic (only the
collector may publish there: broker ACL). Retained, so a device that was offline gets it when it returns.
A device can also be told by its config (``[model_update] active_sha256 / candidate_sha256``).

* **Only from its collector.** The assignment names a model by sha256 (and name/version); the device builds
  the URL from its own ``model_update.collector_url`` (``{url}/device-api/models/{sha256}.tflite`` and
  ``.manifest.json``). No message can point it anywhere else.
* **Verified.** The file's sha256 must be the assigned one and the manifest's; the manifest must read
  (amgs.manifest rules), name the same model and version, pass the synthetic-model guard, load in the
  interpreter and run one inference. Anything else: refused, reported in the status (``model_update``),
  retried later with backoff, and the device keeps scoring with the model it has.
* **Kept.** Models live in ``STATE/models/{sha256}.tflite`` (+ manifest); ``STATE/models/state.json`` names the
  active, the previous and the candidate model. The previous one is kept for a roll-back.
* **Atomic between bursts.** Downloads run in a background thread; the switch happens in the capture loop
  between two bursts, so every score carries the model that made it.
* **Roll-back.** A model that fails to load at start, or fails while scoring, is replaced by the previous one
  (or the configured one) by itself, and the status says so.
* **Shadow.** A candidate scores the same selected face as the active model; its result travels inside the
  same score record (``shadow``), which the collector stores apart and never uses for time courses or alerts.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import ssl
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from amgs.contract import format_time

log = logging.getLogger(__name__)

ModelRef = dict[str, Any]  # {"name", "version", "sha256", "synthetic"}
MAX_ERROR = 480


class ModelRefused(RuntimeError):
    """A fetched model failed a check; the message says which."""


def _now() -> str:
    return format_time(datetime.now(UTC))


def _ref(manifest: Any) -> ModelRef:
    return {
        "name": manifest.name,
        "version": manifest.version,
        "sha256": manifest.sha256,
        "synthetic": manifest.synthetic,
    }


class ModelStore:
    """``STATE/models``: model files by sha256 and ``state.json`` (active, previous, candidate)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def path(self, sha: str) -> Path:
        return self.root / f"{sha}.tflite"

    def has(self, sha: str) -> bool:
        return self.path(sha).exists() and self.path(sha).with_suffix(".manifest.json").exists()

    def read_state(self) -> dict[str, Any]:
        try:
            return json.loads((self.root / "state.json").read_text())
        except (OSError, ValueError):
            return {}

    def write_state(self, state: dict[str, Any]) -> None:
        fd, tmp = tempfile.mkstemp(dir=self.root, prefix=".state-")
        with os.fdopen(fd, "w") as f:
            json.dump(state, f, indent=2)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.root / "state.json")

    def put(self, sha: str, model: bytes, manifest: bytes) -> Path:
        """Write both files under temporary names, then rename (manifest last: ``has`` sees both or none)."""
        target = self.path(sha)
        for data, dest in ((model, target), (manifest, target.with_suffix(".manifest.json"))):
            fd, tmp = tempfile.mkstemp(dir=self.root, prefix=".part-")
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, dest)
        return target

    def prune(self, keep: set[str]) -> None:
        for p in self.root.glob("*.tflite"):
            if p.stem not in keep:
                p.unlink(missing_ok=True)
                p.with_suffix(".manifest.json").unlink(missing_ok=True)


def fetch(
    base_url: str, sha: str, *, timeout: float, ca_file: Path | None, max_bytes: int
) -> tuple[bytes, bytes]:
    """The model file and its manifest from the collector (the only place a device downloads from)."""
    context = None
    if base_url.startswith("https://"):
        context = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
    out = []
    for suffix in (".tflite", ".manifest.json"):
        url = f"{base_url.rstrip('/')}/device-api/models/{sha}{suffix}"
        try:
            with urllib.request.urlopen(url, timeout=timeout, context=context) as r:  # noqa: S310 - own collector
                data = r.read(max_bytes + 1)
        except urllib.error.HTTPError as e:
            raise ModelRefused(f"GET {url}: HTTP {e.code} {e.reason}") from None
        except (urllib.error.URLError, OSError) as e:
            raise ConnectionError(f"GET {url}: {getattr(e, 'reason', e)}") from None
        if len(data) > max_bytes:
            raise ModelRefused(f"GET {url}: larger than model_update.max_mb")
        out.append(data)
    return out[0], out[1]


def verify(sha: str, model: bytes, manifest_bytes: bytes, want: ModelRef | None) -> Any:
    """Refuse bytes that are not the assigned model: sha256 of the file, the manifest's own rules and hash,
    and the assigned name and version. Returns the manifest."""
    from amgs.manifest import ManifestError, read_manifest

    got = hashlib.sha256(model).hexdigest()
    if got != sha:
        raise ModelRefused(
            f"model {sha[:12]}: the downloaded file has sha256 {got[:12]}... (corrupted in transit?)"
        )
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "m.manifest.json"
        p.write_bytes(manifest_bytes)
        try:
            manifest = read_manifest(p)
        except ManifestError as e:
            raise ModelRefused(f"model {sha[:12]}: manifest refused: {e}") from None
    if manifest.sha256 != sha:
        raise ModelRefused(f"model {sha[:12]}: its manifest describes sha256 {manifest.sha256[:12]}...")
    if want and (want.get("name"), want.get("version")) != (manifest.name, manifest.version):
        raise ModelRefused(
            f"model {sha[:12]}: the collector assigned {want.get('name')} {want.get('version')} but the "
            f"manifest says {manifest.name} {manifest.version}"
        )
    return manifest


class ModelUpdater:
    """Desired state (from the collector or the config) -> downloaded, verified models -> switched in the loop.

    ``assign`` is called from the delivery thread; ``apply`` and ``on_scoring_error`` from the capture loop.
    """

    def __init__(
        self, cfg: Any, state_dir: Path, load: Callable[[Path], Any], check: Callable[[Any], None]
    ) -> None:
        self.cfg = cfg
        self.mu = cfg.model_update
        self.store = ModelStore(state_dir / "models")
        self.load = load  # path -> Scorer (raises on a model that does not load)
        self.check = check  # manifest -> None, raises on a model this device must refuse (synthetic guard)
        self.lock = threading.Lock()
        self.wake = threading.Event()
        self.stop = threading.Event()
        state = self.store.read_state()
        self.desired: dict[str, ModelRef | None] = state.get(
            "desired", {"active": self._config_ref("active"), "candidate": self._config_ref("candidate")}
        )
        self.previous: ModelRef | None = state.get("previous")
        self.active_ref: ModelRef | None = state.get("active")  # None: the configured model
        self.candidate_ref: ModelRef | None = None
        self.candidate: Any = None
        self.update: dict[str, Any] | None = state.get("update")
        self.failed: dict[str, tuple[float, str]] = {}  # sha -> (retry at, error)
        self.thread: threading.Thread | None = None
        self.switches = 0

    def _config_ref(self, role: str) -> ModelRef | None:
        sha = getattr(self.mu, f"{role}_sha256", None)
        return {"name": "", "version": "", "sha256": sha} if sha else None

    # ---------------------------------------------------------------- from the delivery thread

    def assign(self, cmd: dict[str, Any]) -> None:
        with self.lock:
            new = {"active": cmd.get("active"), "candidate": cmd.get("candidate")}
            if new != self.desired:
                log.info(
                    "collector assigned models: active %s, candidate %s",
                    _short(new["active"]),
                    _short(new["candidate"]),
                )
                self.desired = new
                self.failed.clear()  # a new assignment is tried at once
                self._save()
        self.wake.set()

    # ---------------------------------------------------------------- background fetching

    def start(self) -> None:
        if self.mu.collector_url:
            self.thread = threading.Thread(target=self._fetch_loop, name="model-fetch", daemon=True)
            self.thread.start()

    def close(self) -> None:
        self.stop.set()
        self.wake.set()

    def _wanted(self) -> list[tuple[str, ModelRef]]:
        with self.lock:
            return [(role, ref) for role in ("active", "candidate") if (ref := self.desired.get(role))]

    def _fetch_loop(self) -> None:
        while not self.stop.is_set():
            for role, ref in self._wanted():
                sha = ref["sha256"]
                if self.store.has(sha) or self.stop.is_set():
                    continue
                retry_at = self.failed.get(sha, (0.0, ""))[0]
                if time.monotonic() < retry_at:
                    continue
                self._report("downloading", sha, None)
                try:
                    model, manifest = fetch(
                        self.mu.collector_url,
                        sha,
                        timeout=self.mu.timeout_s,
                        ca_file=self.mu.ca_file,
                        max_bytes=int(self.mu.max_mb * 1e6),
                    )
                    verify(sha, model, manifest, ref if ref.get("name") else None)
                    self.store.put(sha, model, manifest)
                    log.info("fetched model %s for %s", sha[:12], role)
                except (ModelRefused, ConnectionError) as e:
                    self._fail(sha, str(e))
            self.wake.wait(self._next_wait())
            self.wake.clear()

    def _next_wait(self) -> float:
        pending = [t for t, _ in self.failed.values()]
        return max(0.05, min([self.mu.retry_s, *[t - time.monotonic() for t in pending]]))

    def _fail(self, sha: str, error: str) -> None:
        n = getattr(self, "_fails", {})
        self._fails = n
        n[sha] = n.get(sha, 0) + 1
        backoff = min(self.mu.retry_s * 2 ** (n[sha] - 1), 3600.0)
        self.failed[sha] = (time.monotonic() + backoff, error)
        log.error(
            "model %s refused: %s (keeping the current model; next try in %.0f s)", sha[:12], error, backoff
        )
        self._report("failed", sha, error)

    def _report(self, state: str, sha: str | None, error: str | None) -> None:
        self.update = {
            "state": state,
            "sha256": sha,
            "error": error[:MAX_ERROR] if error else None,
            "at": _now(),
        }

    def _save(self) -> None:
        self.store.write_state(
            {
                "desired": self.desired,
                "active": self.active_ref,
                "previous": self.previous,
                "update": self.update,
            }
        )

    # ---------------------------------------------------------------- in the capture loop

    def restore(self, agent: Any) -> None:
        """At start: score with the model the last run switched to, if it still loads; else roll back."""
        ref = self.active_ref
        if ref is None:
            return
        try:
            scorer = self._load_checked(ref["sha256"])
        except Exception as e:  # noqa: BLE001 - any failure to load means: roll back
            log.error("active model %s does not load (%s): rolling back", ref["sha256"][:12], e)
            self._roll_back(agent, f"active model {ref['sha256'][:12]} did not load at start: {e}")
            return
        agent.use_scorer(scorer)

    def _load_checked(self, sha: str) -> Any:
        from amgs.manifest import read_manifest

        path = self.store.path(sha)
        manifest = read_manifest(path.with_suffix(".manifest.json"))
        if manifest.sha256 != sha:
            raise ModelRefused(f"stored manifest of {sha[:12]} describes another file")
        self.check(manifest)
        scorer = self.load(path)
        import numpy as np

        from amgs.preprocess import to_model_input

        spec = scorer.manifest.input
        scorer.score_input(to_model_input(np.zeros((spec.height, spec.width, 3), np.uint8), spec))
        return scorer

    def apply(self, agent: Any) -> None:
        """Between bursts: switch to the desired active model and candidate when their files are here."""
        with self.lock:
            want_active, want_candidate = self.desired.get("active"), self.desired.get("candidate")
        current = agent.model_ref["sha256"]
        if want_active is None and self.active_ref is not None:
            self._switch(agent, None)  # back to the configured model
        elif (
            want_active is not None
            and want_active["sha256"] != current
            and self._ready(want_active["sha256"])
        ):
            self._switch(agent, want_active["sha256"])
        cand_sha = want_candidate["sha256"] if want_candidate else None
        have = self.candidate_ref["sha256"] if self.candidate_ref else None
        if cand_sha != have:
            if cand_sha is None:
                log.info("candidate %s abandoned", have[:12] if have else None)
                self.candidate, self.candidate_ref = None, None
                self._report("idle", None, None)
            elif self._ready(cand_sha):
                try:
                    scorer = self._load_checked(cand_sha)
                except Exception as e:  # noqa: BLE001
                    self._fail(cand_sha, f"candidate does not load: {e}")
                    self.store.path(cand_sha).unlink(missing_ok=True)
                else:
                    self.candidate, self.candidate_ref = scorer, _ref(scorer.manifest)
                    log.info("candidate %s scoring in shadow", cand_sha[:12])
                    self._report("shadow", cand_sha, None)
                    self._save()

    def _ready(self, sha: str) -> bool:
        return self.store.has(sha) and time.monotonic() >= self.failed.get(sha, (0.0, ""))[0]

    def _switch(self, agent: Any, sha: str | None) -> None:
        old = dict(agent.model_ref)
        try:
            scorer = self._load_checked(sha) if sha else agent.configured_scorer()
        except Exception as e:  # noqa: BLE001 - refused: keep the current model
            if sha:
                self._fail(sha, f"does not load: {e}")
                self.store.path(sha).unlink(missing_ok=True)  # fetched again after the backoff
            return
        agent.use_scorer(scorer)
        self.previous = old
        self.active_ref = _ref(scorer.manifest) if sha else None
        self.switches += 1
        self._report("active", sha, None)
        self._save()
        keep = {r["sha256"] for r in (self.active_ref, self.previous, self.candidate_ref) if r}
        keep |= {r[1]["sha256"] for r in self._wanted()}
        self.store.prune(keep)
        log.info(
            "now scoring with %s %s (previous %s %s)",
            *(_ref(scorer.manifest)[k] for k in ("name", "version")),
            old["name"],
            old["version"],
        )

    def on_scoring_error(self, agent: Any, error: Exception) -> bool:
        """A model that fails while scoring is replaced by the previous one; True if it was."""
        if self.active_ref is None:
            return False
        self._roll_back(agent, f"model {self.active_ref['sha256'][:12]} failed while scoring: {error}")
        return True

    def _roll_back(self, agent: Any, why: str) -> None:
        bad = self.active_ref["sha256"] if self.active_ref else None
        prev = self.previous
        scorer = None
        if prev and prev["sha256"] != bad and self.store.has(prev["sha256"]):
            try:
                scorer = self._load_checked(prev["sha256"])
            except Exception as e:  # noqa: BLE001
                log.error("previous model %s does not load either: %s", prev["sha256"][:12], e)
        self.active_ref = _ref(scorer.manifest) if scorer else None
        agent.use_scorer(scorer or agent.configured_scorer())
        if bad:
            self.failed[bad] = (time.monotonic() + 3600.0, why)  # not retried for an hour
        self._report("rolled_back", bad, why)
        self._save()
        log.error("%s; rolled back to %s", why, agent.model_ref["name"] + " " + agent.model_ref["version"])

    def status_fields(self) -> dict[str, Any]:
        return {
            "model_previous": self.previous,
            "model_candidate": self.candidate_ref,
            "model_update": self.update,
        }


def _short(ref: ModelRef | None) -> str:
    return f"{ref.get('name')} {ref.get('version')} ({ref['sha256'][:12]})" if ref else "none"
