"""Frame sources behind one interface: folder replay, OpenCV (V4L2/USB, RTSP/HTTP, video files), picamera2.

A source hands out :class:`Frame` objects (RGB uint8 pixels + capture time). Replay sources (folders,
video files) know their position, which the agent commits together with the scores of the frames it
used, so a restarted agent resumes where it stopped instead of scoring the same frames twice.
Sources that fail are reopened with exponential backoff by :class:`RetryingSource`, which also
reports the state for the status message.
"""

from __future__ import annotations

import logging
import os
import re
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from amgs.device.config import FolderSource, OpenCVSource, PiCameraSource
from amgs.preprocess import IMAGE_SUFFIXES, ImageError, open_image

log = logging.getLogger(__name__)

Sleeper = Callable[[float], None]


class SourceError(RuntimeError):
    """A source cannot deliver frames right now (camera unplugged, stream down, package missing)."""


class SourceExhausted(Exception):
    """A replay source has no more frames (and does not follow new ones)."""


class SourceIdle(Exception):
    """A followed folder has no new frame yet; ask again later."""


class BadFrame(Exception):
    """One frame could not be decoded; the source goes on with the next one."""

    def __init__(self, message: str, position: str | None) -> None:
        super().__init__(message)
        self.position = position


@dataclass
class Frame:
    """One captured frame. Image files are decoded only when and as far as needed: the crop the model
    sees is decoded straight from the file with JPEG DCT scaling (``amgs.preprocess.load_pixels``)."""

    image: np.ndarray | Path  # HxWx3 uint8 RGB, or an image file
    captured_at: datetime  # UTC
    monotonic_s: float
    position: str | None = None  # replay cursor after this frame
    name: str = ""
    file_size: tuple[int, int] | None = None  # (w, h) of an image file, upright

    @property
    def pixels(self) -> np.ndarray:
        """The whole frame as RGB pixels (decodes a file once; raises ImageError when it is corrupt)."""
        if isinstance(self.image, Path):
            self.image = np.asarray(open_image(self.image))
        return self.image

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) without decoding the pixels."""
        if isinstance(self.image, np.ndarray):
            return int(self.image.shape[1]), int(self.image.shape[0])
        if self.file_size is None:
            self.file_size = image_file_size(self.image)
        return self.file_size


_SWAPPING_ORIENTATIONS = {5, 6, 7, 8}


def image_file_size(path: Path) -> tuple[int, int]:
    """Upright (w, h) from the header alone; raises ImageError for files that are not images."""
    try:
        with Image.open(path) as img:
            w, h = img.size
            orientation = img.getexif().get(0x0112, 1) if img.format in ("JPEG", "TIFF", "PNG", "WEBP") else 1
    except FileNotFoundError:
        raise ImageError(f"{path}: no such file") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise ImageError(f"{path}: not an image Pillow can read ({e.__class__.__name__})") from None
    return (h, w) if orientation in _SWAPPING_ORIENTATIONS else (w, h)


class FrameSource(ABC):
    """What the agent needs from a camera, a stream or a replay."""

    live: bool = True

    @abstractmethod
    def open(self) -> None: ...

    @abstractmethod
    def read(self, not_before: datetime | None = None) -> Frame:
        """The next frame at or after ``not_before`` (replays skip earlier ones cheaply)."""

    def close(self) -> None:  # noqa: B027 - optional hook
        pass

    def seek(self, position: str) -> None:  # noqa: B027 - live sources have no position
        pass


# --------------------------------------------------------------------------- folder replay

_NAME_TIME = re.compile(
    r"(?P<y>\d{4})-?(?P<mo>\d{2})-?(?P<d>\d{2})[T_ -]?(?P<h>\d{2})[:.-]?(?P<mi>\d{2})[:.-]?(?P<s>\d{2})"
    r"(?:[.,_](?P<frac>\d{1,6}))?"
)


def time_from_name(name: str) -> datetime | None:
    """Capture time written in a file name (20260102_030405, 2026-01-02T03-04-05.123, ...), read as UTC."""
    m = _NAME_TIME.search(name)
    if not m:
        return None
    try:
        t = datetime(*(int(m.group(k)) for k in ("y", "mo", "d", "h", "mi", "s")), tzinfo=UTC)
    except ValueError:
        return None
    if m.group("frac"):
        t += timedelta(microseconds=int(m.group("frac").ljust(6, "0")))
    return t


class FolderReplay(FrameSource):
    """Image files of a folder in capture-time order; as fast as possible or paced by their timestamps."""

    live = False

    def __init__(self, cfg: FolderSource, sleep: Sleeper = time.sleep) -> None:
        self.cfg = cfg
        self.sleep = sleep
        self._files: list[tuple[datetime, str]] = []
        self._done: set[str] = set()
        self._after: tuple[datetime, str] | None = None
        self._pace: tuple[float, datetime] | None = None  # (monotonic, capture time) at pacing start

    def _stamp(self, path: Path) -> datetime:
        if self.cfg.timestamps == "name":
            t = time_from_name(path.name)
            if t is not None:
                return t
        return datetime.fromtimestamp(path.stat().st_mtime, UTC)

    def open(self) -> None:
        if not self.cfg.path.is_dir():
            raise SourceError(f"folder {self.cfg.path} does not exist")
        self._scan()

    def _scan(self) -> None:
        files = []
        for entry in os.scandir(self.cfg.path):
            p = Path(entry.path)
            if entry.is_file() and p.suffix.lower() in IMAGE_SUFFIXES:
                try:
                    key = (self._stamp(p), p.name)
                except OSError:
                    continue  # vanished while scanning
                if self._after is None or key > self._after:
                    files.append(key)
        self._files = sorted(files, reverse=True)  # pop() from the end = oldest first

    def seek(self, position: str) -> None:
        stamp, _, name = position.partition("|")
        self._after = (datetime.fromisoformat(stamp), name)
        self._files = [f for f in self._files if f > self._after]

    def read(self, not_before: datetime | None = None) -> Frame:
        while True:
            if not self._files:
                if self.cfg.follow:
                    self._scan()
                    if not self._files:
                        raise SourceIdle(str(self.cfg.path))
                else:
                    raise SourceExhausted(str(self.cfg.path))
            stamp, name = self._files.pop()
            self._after = (stamp, name)
            position = f"{stamp.isoformat()}|{name}"
            if not_before is not None and stamp < not_before:
                continue
            self._wait_until(stamp)
            path = self.cfg.path / name
            try:
                size = image_file_size(path)  # garbage and empty files stop here; truncation at decode
            except ImageError as e:
                raise BadFrame(str(e), position) from None
            return Frame(path, stamp, time.monotonic(), position, name, size)

    def _wait_until(self, stamp: datetime) -> None:
        if not self.cfg.realtime:
            return
        if self._pace is None:
            self._pace = (time.monotonic(), stamp)
        due = self._pace[0] + (stamp - self._pace[1]).total_seconds() / self.cfg.speed
        delay = due - time.monotonic()
        if delay > 0:
            self.sleep(delay)


# --------------------------------------------------------------------------- OpenCV


def _cv2():
    try:
        import cv2
    except ImportError:
        raise SourceError(
            "OpenCV is not installed: `pip install 'amgs[device]'` (opencv-python-headless)"
        ) from None
    return cv2


STALE_FRAMES = 2
"""Frames a live OpenCV source drops at the start of a burst (older than the burst)."""


class OpenCVCapture(FrameSource):
    """USB/V4L2 cameras, RTSP/HTTP streams and video files through cv2.VideoCapture."""

    def __init__(self, cfg: OpenCVSource, sleep: Sleeper = time.sleep) -> None:
        self.cfg = cfg
        self.sleep = sleep
        self.cap = None
        uri = cfg.uri
        self.is_file = not uri.isdigit() and "://" not in uri and not uri.startswith("/dev/")
        self.live = not self.is_file
        self._start: datetime | None = None
        self._skip_to = 0
        self._pace: tuple[float, float] | None = None
        self._last_read = 0.0

    def open(self) -> None:
        cv2 = _cv2()
        self.close()
        uri = self.cfg.uri
        if self.is_file and not Path(uri).is_file():
            raise SourceError(f"video file {uri} does not exist")
        self._last_read = 0.0
        params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, int(self.cfg.open_timeout_s * 1000)]
        cap = cv2.VideoCapture(int(uri) if uri.isdigit() else uri, cv2.CAP_ANY, params)
        if not cap.isOpened():
            cap.release()
            raise SourceError(f"OpenCV cannot open {uri!r}")
        if self.cfg.width and self.cfg.height:
            cap.set(cv2.CAP_PROP_FRAME_WIDTH, self.cfg.width)
            cap.set(cv2.CAP_PROP_FRAME_HEIGHT, self.cfg.height)
        if self.live:
            cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)
        else:
            # Capture time of frame 0: from the file name (cam_20260102_030405.mp4), else its mtime.
            self._start = time_from_name(Path(uri).name) or datetime.fromtimestamp(
                Path(uri).stat().st_mtime, UTC
            )
            for _ in range(self._skip_to):
                if not cap.grab():
                    break
        self.cap = cap

    def seek(self, position: str) -> None:
        self._skip_to = int(position)

    def read(self, not_before: datetime | None = None) -> Frame:
        cv2 = _cv2()
        if self.cap is None:
            raise SourceError(f"{self.cfg.uri!r} is not open")
        if self.live and time.monotonic() - self._last_read > 1.0:
            for _ in range(STALE_FRAMES):  # drop what the driver buffered since the last burst
                self.cap.grab()
        self._last_read = time.monotonic()
        while True:
            if not self.cap.grab():
                if self.is_file:
                    raise SourceExhausted(self.cfg.uri)
                raise SourceError(f"{self.cfg.uri!r} stopped delivering frames")
            if self.is_file:
                index = int(self.cap.get(cv2.CAP_PROP_POS_FRAMES))
                self._skip_to = index
                offset = self.cap.get(cv2.CAP_PROP_POS_MSEC) / 1000.0
                stamp = (self._start or datetime.now(UTC)) + timedelta(seconds=offset)
                if not_before is not None and stamp < not_before:
                    continue
                self._pace_to(offset)
                position: str | None = str(index)
            else:
                stamp, position = datetime.now(UTC), None
            ok, bgr = self.cap.retrieve()
            if not ok or bgr is None:
                raise BadFrame(f"{self.cfg.uri!r}: frame could not be decoded", position)
            rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
            return Frame(
                rgb, stamp, time.monotonic(), position, f"{Path(self.cfg.uri).name}#{position or ''}"
            )

    def _pace_to(self, offset: float) -> None:
        if not self.cfg.realtime:
            return
        if self._pace is None:
            self._pace = (time.monotonic(), offset)
        delay = self._pace[0] + (offset - self._pace[1]) - time.monotonic()
        if delay > 0:
            self.sleep(delay)

    def close(self) -> None:
        if self.cap is not None:
            self.cap.release()
            self.cap = None


# --------------------------------------------------------------------------- picamera2


class PiCamera(FrameSource):
    """The Raspberry Pi camera through picamera2 (from Raspberry Pi OS: python3-picamera2)."""

    def __init__(self, cfg: PiCameraSource, sleep: Sleeper = time.sleep) -> None:
        self.cfg = cfg
        self.cam = None

    def open(self) -> None:
        try:
            from picamera2 import Picamera2  # type: ignore[import-not-found]
        except ImportError:
            raise SourceError(
                "picamera2 is not installed. On Raspberry Pi OS: `sudo apt install python3-picamera2` and create "
                "the virtual environment with --system-site-packages; elsewhere use an opencv or folder source."
            ) from None
        try:
            cam = Picamera2(self.cfg.camera)
            cam.configure(
                cam.create_still_configuration(
                    main={"size": (self.cfg.width, self.cfg.height), "format": "RGB888"}
                )
            )
            cam.start()
        except Exception as e:  # noqa: BLE001 - libcamera raises many kinds
            raise SourceError(f"Pi camera {self.cfg.camera} could not start: {e}") from None
        self.cam = cam

    def read(self, not_before: datetime | None = None) -> Frame:
        if self.cam is None:
            raise SourceError("Pi camera is not open")
        try:
            # picamera2's "RGB888" is BGR in memory order; flip to RGB.
            bgr = self.cam.capture_array("main")
        except Exception as e:  # noqa: BLE001
            raise SourceError(f"Pi camera capture failed: {e}") from None
        return Frame(
            np.ascontiguousarray(bgr[..., ::-1]), datetime.now(UTC), time.monotonic(), None, "picamera"
        )

    def close(self) -> None:
        if self.cam is not None:
            try:
                self.cam.stop()
                self.cam.close()
            finally:
                self.cam = None


def make_source(
    cfg: FolderSource | OpenCVSource | PiCameraSource, sleep: Sleeper = time.sleep
) -> FrameSource:
    if isinstance(cfg, FolderSource):
        return FolderReplay(cfg, sleep)
    if isinstance(cfg, OpenCVSource):
        return OpenCVCapture(cfg, sleep)
    return PiCamera(cfg, sleep)


# --------------------------------------------------------------------------- retry with backoff


class RetryingSource:
    """Opens a source on demand and reopens it with exponential backoff after failures; knows its health."""

    def __init__(
        self, name: str, source: FrameSource, min_backoff_s: float = 1.0, max_backoff_s: float = 60.0
    ):
        self.name = name
        self.source = source
        self.min_backoff_s = min_backoff_s
        self.max_backoff_s = max_backoff_s
        self.is_open = False
        self.exhausted = False
        self.error: str | None = None
        self.failures = 0
        self.retry_at = 0.0
        self.idle_until = 0.0
        self.idle_poll_s = 1.0
        self._position: str | None = None

    @property
    def live(self) -> bool:
        return self.source.live

    @property
    def ok(self) -> bool:
        return self.error is None

    def seek(self, position: str | None) -> None:
        self._position = position
        if position is not None:
            self.source.seek(position)

    def ready(self, now: float | None = None) -> bool:
        """True when the source is open, or the backoff has passed and reopening worked."""
        if self.exhausted:
            return False
        now = now if now is not None else time.monotonic()
        if now < self.idle_until:
            return False
        if self.is_open:
            return True
        if now < self.retry_at:
            return False
        try:
            self.source.open()
        except SourceError as e:
            self.fail(str(e))
            return False
        if self._position is not None:
            self.source.seek(self._position)
        self.is_open = True
        if self.error:
            log.warning("source %s is back after %d failure(s)", self.name, self.failures)
        self.error = None
        self.failures = 0
        return True

    def fail(self, message: str) -> None:
        self.failures += 1
        delay = min(self.max_backoff_s, self.min_backoff_s * 2 ** (self.failures - 1))
        self.retry_at = time.monotonic() + delay
        if self.error != message:
            log.error("source %s: %s (retrying in %.0f s)", self.name, message, delay)
        self.error = message
        self.is_open = False
        try:
            self.source.close()
        except Exception:  # noqa: BLE001 - closing a broken camera must not stop the agent
            pass

    def read(self, not_before: datetime | None = None) -> Frame:
        """A frame, or raises BadFrame (skip it), SourceIdle, SourceExhausted, or SourceError (recorded)."""
        try:
            frame = self.source.read(not_before)
        except SourceExhausted:
            self.exhausted = True
            raise
        except SourceIdle:
            self.idle_until = time.monotonic() + self.idle_poll_s
            raise
        except BadFrame as e:
            self._position = e.position or self._position
            raise
        except SourceError as e:
            self.fail(str(e))
            raise
        self._position = frame.position or self._position
        return frame

    @property
    def position(self) -> str | None:
        return self._position

    def close(self) -> None:
        self.source.close()
        self.is_open = False
