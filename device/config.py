"""The device's TOML config, validated up front: unknown keys and bad values are refused by name.

One device may drive several cameras, or one camera whose frame holds several observation boxes, so
the config names ``sources`` (cameras, streams, folders) and a list of ``views``: a region of one
source, tied to a cage (and optionally an animal). See ``examples/device.toml`` and ``docs/device.md``.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from amgs.config_errors import problems
from amgs.contract import ID_PATTERN

Id = Annotated[str, Field(pattern=ID_PATTERN)]


class ConfigError(ValueError):
    """The config file is missing, not TOML, or names a key or value that is not allowed."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DeviceSection(_Strict):
    id: Id
    site: Id
    state_dir: Path | None = Field(
        None, description="outbox, crops, cursors; default $STATE_DIRECTORY (systemd) or ./state"
    )


class ModelSection(_Strict):
    path: Path | None = Field(None, description="a .tflite with its manifest; default the shipped model")
    threads: int = Field(1, ge=1, le=16)
    accelerator: Literal["auto", "cpu", "edgetpu"] = "auto"
    backend: Literal["auto", "litert", "tflite_runtime", "tensorflow"] = "auto"
    allow_synthetic: bool = Field(
        False,
        description="run a model trained on SYNTHETIC faces only (demos, tests): its scores say nothing about "
        "real mice, so the agent refuses such a model unless this is true",
    )


class ModelUpdateSection(_Strict):
    collector_url: str | None = Field(
        None,
        pattern=r"^https?://[^/\s]+(/[^\s]*)?$",
        description="the collector's HTTP(S) base URL: models are fetched from here and nowhere else "
        "(unset: no roll-out, the device keeps model.path)",
    )
    ca_file: Path | None = Field(None, description="CA certificate for an https collector_url")
    active_sha256: str | None = Field(
        None,
        pattern=r"^[0-9a-f]{64}$",
        description="score with this registry model (until the collector says otherwise)",
    )
    candidate_sha256: str | None = Field(
        None,
        pattern=r"^[0-9a-f]{64}$",
        description="score this registry model in shadow beside the active one",
    )
    timeout_s: float = Field(60.0, gt=0, description="HTTP timeout of one download")
    retry_s: float = Field(
        60.0, gt=0, description="first wait before a failed download is tried again (doubles)"
    )
    max_mb: float = Field(200.0, gt=0, description="refuse model files larger than this")


class DetectorSection(_Strict):
    """The face detector: the shipped one (no ``path``), one made by ``amgs model train-detector``, or a
    user's TFLite SSD-style model (outputs boxes, classes, scores, count)."""

    path: Path | None = Field(None, description="default: the shipped (SYNTHETIC-trained) face detector")
    min_score: float | None = Field(
        None, gt=0, le=1, description="default: the detector manifest's threshold (SSD models: 0.5)"
    )
    class_id: int | None = Field(None, ge=0, description="keep only this class; None keeps all")
    threads: int = Field(1, ge=1, le=16)
    margin: float = Field(0.1, ge=0, le=1, description="grow each box by this fraction per side")
    allow_synthetic: bool = Field(
        False,
        description="run a detector trained on SYNTHETIC scenes only (demos, tests): on real cages it finds "
        "faces by chance, so the agent refuses such a detector unless this is true",
    )


class FolderSource(_Strict):
    kind: Literal["folder"]
    name: Id
    path: Path
    timestamps: Literal["name", "mtime"] = Field(
        "name", description="capture time from the file name (falls back to mtime) or from mtime"
    )
    realtime: bool = Field(
        False, description="pace frames by their timestamps instead of as fast as possible"
    )
    speed: float = Field(1.0, gt=0, description="realtime pacing factor (2 = twice as fast)")
    follow: bool = Field(False, description="keep watching the folder for new files")


class OpenCVSource(_Strict):
    kind: Literal["opencv"]
    name: Id
    uri: str = Field(
        description="a V4L2 device number or path (0, /dev/video0), an rtsp:// or http:// URL, or a video file"
    )
    width: int | None = Field(None, gt=0)
    height: int | None = Field(None, gt=0)
    realtime: bool = Field(False, description="video files only: pace frames by their timestamps")
    open_timeout_s: float = Field(10.0, gt=0)


class PiCameraSource(_Strict):
    kind: Literal["picamera2"]
    name: Id
    camera: int = Field(0, ge=0)
    width: int = Field(1920, gt=0)
    height: int = Field(1080, gt=0)


Source = Annotated[FolderSource | OpenCVSource | PiCameraSource, Field(discriminator="kind")]


class ViewSection(_Strict):
    name: Id
    source: Id
    cage_id: Id
    animal_id: Id | None = None
    region: tuple[int, int, int, int] | None = Field(
        None, description="x, y, w, h of the face region in source pixels; None = detector or whole frame"
    )

    @field_validator("region")
    @classmethod
    def _region_has_area(cls, v: tuple[int, int, int, int] | None) -> tuple[int, int, int, int] | None:
        if v is not None and (v[0] < 0 or v[1] < 0 or v[2] < 2 or v[3] < 2):
            raise ValueError("region must be [x >= 0, y >= 0, w >= 2, h >= 2] in source pixels")
        return v


class ScheduleSection(_Strict):
    interval_s: float = Field(10.0, ge=0, description="time between burst starts (capture time for replays)")
    burst_frames: int = Field(5, ge=1, le=100)
    frame_gap_s: float = Field(0.2, ge=0, description="live sources: pause between frames of a burst")


class SelectionSection(_Strict):
    min_sharpness: float = Field(15.0, ge=0, description="variance of Laplacian of the model-size crop")
    min_exposure: float = Field(35.0, ge=0, le=255, description="mean grey level of the crop")
    max_exposure: float = Field(225.0, ge=0, le=255)
    min_face_px: int = Field(64, ge=1, description="shorter side of the face box in source pixels")
    motion_threshold: float = Field(1.5, ge=0, description="mean absolute grey difference between frames")
    still_after_s: float = Field(
        10.0, ge=0, description="motion below threshold this long -> possibly asleep"
    )
    asleep: Literal["flag", "exclude"] = "flag"

    @model_validator(mode="after")
    def _exposure_range(self) -> SelectionSection:
        if self.min_exposure >= self.max_exposure:
            raise ValueError(
                f"min_exposure ({self.min_exposure}) must be below max_exposure ({self.max_exposure})"
            )
        return self


class MqttSection(_Strict):
    host: str = "localhost"
    port: int = Field(1883, ge=1, le=65535)
    username: str | None = None
    password_file: Path | None = Field(
        None, description="file holding the password (never put it in the config)"
    )
    tls_ca_file: Path | None = Field(None, description="CA certificate; enables TLS")
    keepalive_s: int = Field(30, ge=5, le=3600)
    reconnect_min_s: float = Field(1.0, gt=0)
    reconnect_max_s: float = Field(30.0, gt=0)

    @model_validator(mode="after")
    def _files_exist(self) -> MqttSection:
        for key in ("password_file", "tls_ca_file"):
            p = getattr(self, key)
            if p is not None and not Path(p).is_file():
                raise ValueError(f"{key} {str(p)!r} does not exist or is not a file")
        if self.password_file is not None and self.username is None:
            raise ValueError("password_file is set but username is not")
        return self


class DeliverySection(_Strict):
    confirm: Literal["collector", "broker"] = Field(
        "collector",
        description="delete a score on the collector's ack watermark (end to end) or on the broker's PUBACK",
    )
    resend_after_s: float = Field(60.0, gt=0, description="collector mode: re-send what stays unconfirmed")
    collector_wait_s: float = Field(
        15.0,
        ge=0,
        description="collector mode: after a (re)connect, send once a live watermark shows the collector is "
        "subscribed, or after this long at the latest",
    )
    window: int = Field(200, ge=1, le=10000, description="scores in flight (published, no PUBACK yet)")
    flush_timeout_s: float = Field(5.0, ge=0, description="on stop: wait this long for unsent scores")


class StorageSection(_Strict):
    keep_crops_h: float = Field(168.0, ge=0, description="keep face crops this long (0 = do not keep)")
    crops_max_mb: float = Field(500.0, ge=0)
    outbox_max_records: int = Field(
        1_000_000, ge=100, description="beyond this the oldest scores are dropped"
    )
    min_free_mb: float = Field(200.0, ge=0, description="below this free space crops are deleted first")
    crop_quality: int = Field(85, ge=10, le=100)


class StatusSection(_Strict):
    interval_s: float = Field(60.0, gt=0)


class AgentSection(_Strict):
    exit_when_done: bool = Field(
        False, description="exit (after delivering) once every source is exhausted: batch replays"
    )
    done_timeout_s: float = Field(60.0, ge=0, description="exit_when_done: longest wait for confirmations")


class DeviceConfig(_Strict):
    device: DeviceSection
    model: ModelSection = ModelSection()
    model_update: ModelUpdateSection = ModelUpdateSection()
    detector: DetectorSection | None = None
    sources: tuple[Source, ...] = Field(min_length=1)
    views: tuple[ViewSection, ...] = Field(min_length=1)
    schedule: ScheduleSection = ScheduleSection()
    selection: SelectionSection = SelectionSection()
    mqtt: MqttSection = MqttSection()
    delivery: DeliverySection = DeliverySection()
    storage: StorageSection = StorageSection()
    status: StatusSection = StatusSection()
    agent: AgentSection = AgentSection()

    @model_validator(mode="after")
    def _names_resolve(self) -> DeviceConfig:
        names = [s.name for s in self.sources]
        dupes = {n for n in names if names.count(n) > 1}
        if dupes:
            raise ValueError(f"source names must be unique, repeated: {sorted(dupes)}")
        views = [v.name for v in self.views]
        if len(set(views)) != len(views):
            raise ValueError(f"view names must be unique: {views}")
        for v in self.views:
            if v.source not in names:
                raise ValueError(f"view {v.name!r} uses source {v.source!r}, but the sources are {names}")
        return self

    def state_path(self) -> Path:
        if self.device.state_dir is not None:
            return Path(self.device.state_dir)
        env = os.environ.get("STATE_DIRECTORY")
        return Path(env.split(":")[0]) if env else Path("state")


def load_config(path: str | Path) -> DeviceConfig:
    """Read and validate a device config, or raise :class:`ConfigError` naming the key and value."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file (start from examples/device.toml)") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML: {e}") from None
    try:
        return DeviceConfig.model_validate(data)
    except ValidationError as e:
        lines = problems(e, DeviceConfig)
        raise ConfigError(
            f"{path}: invalid device config (see examples/device.toml):\n  " + "\n  ".join(lines)
        ) from None
