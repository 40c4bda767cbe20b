"""Reading recorded videos for scoring: probe, wall-clock start, and windows of sampled frames.

A lab's recordings are hours long; scoring every frame would waste time on near-identical frames.
Each window (``--window 10s``) contributes ``samples`` frames spread evenly over it, which then go
through the device's own frame selection (``amgs.device.selection.ViewSelector``: quality gate,
least-motion frame, stillness), so a window of a recording is treated exactly like a burst at the cage.

Frames are read in order with ``grab()`` (no colour conversion for frames that are not sampled);
only sampled frames are ``retrieve()``d. The wall-clock start comes from the file name
(``cage3_20260102_030405.mp4``, as the device's replays) or an MP4/MOV ``mvhd`` creation time.
"""

from __future__ import annotations

import re
import struct
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from amgs.device.sources import Frame, time_from_name

VIDEO_SUFFIXES = {".mp4", ".avi", ".mov", ".mkv", ".m4v"}
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MAC_EPOCH = datetime(1904, 1, 1, tzinfo=UTC)


class VideoError(ValueError):
    """A video cannot be opened or read; the message names the file."""


@dataclass(frozen=True)
class VideoInfo:
    path: Path
    fps: float
    n_frames: int
    width: int
    height: int
    start: datetime | None  # wall time of frame 0, when known
    start_from: str | None  # "name", "mp4", "option" or None

    @property
    def duration_s(self) -> float:
        return self.n_frames / self.fps if self.fps > 0 else 0.0


@dataclass
class Window:
    index: int
    start_s: float
    end_s: float
    frames: list[Frame] = field(default_factory=list)


def is_video(path: Path) -> bool:
    return Path(path).suffix.lower() in VIDEO_SUFFIXES


def iter_video_files(paths: list[Path]) -> list[Path]:
    """Video files among ``paths`` (folders searched recursively), sorted."""
    out: list[Path] = []
    for p in paths:
        if p.is_dir():
            out.extend(sorted(f for f in p.rglob("*") if f.is_file() and is_video(f)))
        elif is_video(p):
            out.append(p)
    return out


def parse_duration(text: str) -> float:
    """'10s', '1s', '500ms', '2m', '1h' or a plain number of seconds -> seconds (> 0)."""
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*(ms|s|m|min|h)?\s*", str(text))
    if not m:
        raise ValueError(f"{text!r} is not a duration (examples: 10s, 1s, 500ms, 2m)")
    value = float(m.group(1)) * {"ms": 0.001, "s": 1, None: 1, "m": 60, "min": 60, "h": 3600}[m.group(2)]
    if value <= 0:
        raise ValueError(f"{text!r}: a duration must be positive")
    return value


def mp4_creation_time(path: Path) -> datetime | None:
    """Creation time in an MP4/MOV ``moov/mvhd`` box (seconds since 1904, UTC), or None."""
    try:
        with open(path, "rb") as f:
            return _find_mvhd(f, 0, Path(path).stat().st_size, depth=0)
    except (OSError, struct.error):
        return None


def _find_mvhd(f, start: int, end: int, depth: int) -> datetime | None:
    pos = start
    while pos + 8 <= end and depth < 3:
        f.seek(pos)
        size, kind = struct.unpack(">I4s", f.read(8))
        header = 8
        if size == 1:
            size = struct.unpack(">Q", f.read(8))[0]
            header = 16
        elif size == 0:
            size = end - pos
        if size < header:
            return None
        if kind == b"moov":
            return _find_mvhd(f, pos + header, pos + size, depth + 1)
        if kind == b"mvhd":
            version = f.read(1)[0]
            f.read(3)
            secs = struct.unpack(">Q", f.read(8))[0] if version == 1 else struct.unpack(">I", f.read(4))[0]
            if secs == 0:
                return None
            return _MAC_EPOCH + timedelta(seconds=secs)
        pos += size
    return None


def probe(path: Path, start: datetime | None = None) -> VideoInfo:
    """Open the file once to read its frame rate, length and size; find its wall-clock start."""
    import cv2

    path = Path(path)
    if not path.is_file():
        raise VideoError(f"{path}: no such file")
    cap = cv2.VideoCapture(str(path))
    try:
        if not cap.isOpened():
            raise VideoError(f"{path}: OpenCV cannot open this video (unsupported codec or corrupt file)")
        fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
        n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        w, h = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
    finally:
        cap.release()
    if fps <= 0 or fps > 1000:
        raise VideoError(f"{path}: no usable frame rate in the file ({fps})")
    source = "option" if start else None
    if start is None:
        start = time_from_name(path.name)
        source = "name" if start else None
    if start is None and path.suffix.lower() in (".mp4", ".mov", ".m4v"):
        start = mp4_creation_time(path)
        source = "mp4" if start else None
    return VideoInfo(path, fps, n, w, h, start, source)


def sample_times(window_s: float, samples: int, duration_s: float) -> list[list[float]]:
    """Per window, ``samples`` times spread evenly inside it (centres of equal slices)."""
    n_windows = max(1, int(-(-duration_s // window_s))) if duration_s > 0 else 0
    out = []
    for k in range(n_windows):
        lo, hi = k * window_s, min(duration_s, (k + 1) * window_s)
        step = (hi - lo) / samples
        out.append([lo + (j + 0.5) * step for j in range(samples)])
    return out


def iter_windows(
    info: VideoInfo, window_s: float, samples: int = 5, seek_after_s: float | None = 2.0
) -> Iterator[Window]:
    """Windows of sampled RGB frames, in order. A frame that cannot be decoded is skipped.

    When the next sampled frame is more than ``seek_after_s`` ahead the reader seeks to it (OpenCV decodes
    from the preceding keyframe); nearer ones are reached by ``grab()``. ``None`` never seeks."""
    import cv2

    cap = cv2.VideoCapture(str(info.path))
    if not cap.isOpened():
        raise VideoError(f"{info.path}: OpenCV cannot open this video")
    duration = info.duration_s
    plan = sample_times(window_s, samples, duration)
    wanted: dict[int, int] = {}  # frame index -> window index
    for k, times in enumerate(plan):
        for t in times:
            wanted.setdefault(min(info.n_frames - 1, int(t * info.fps)), k)
    base = info.start or _EPOCH
    seek_after = info.n_frames + 1 if seek_after_s is None else max(1, int(seek_after_s * info.fps))
    try:
        index = 0
        current = Window(0, 0.0, min(duration, window_s))
        last_wanted = max(wanted) if wanted else -1
        targets = sorted(wanted)
        next_target = 0
        while index <= last_wanted:
            while next_target < len(targets) and targets[next_target] < index:
                next_target += 1
            if next_target < len(targets) and targets[next_target] - index > seek_after:
                # Far to the next sample: seek (decodes from the keyframe before it) instead of
                # decoding every frame in between.
                cap.set(cv2.CAP_PROP_POS_FRAMES, targets[next_target])
                index = int(cap.get(cv2.CAP_PROP_POS_FRAMES))
            if not cap.grab():
                break
            k = wanted.get(index)
            if k is not None:
                while k > current.index:
                    yield current
                    nxt = current.index + 1
                    current = Window(nxt, nxt * window_s, min(duration, (nxt + 1) * window_s))
                ok, bgr = cap.retrieve()
                if ok and bgr is not None:
                    t = index / info.fps
                    rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
                    current.frames.append(
                        Frame(
                            rgb,
                            base + timedelta(seconds=t),
                            time.monotonic(),
                            str(index),
                            f"{info.path.name}@{t:.2f}s",
                        )
                    )
            index += 1
        yield current
        for nxt in range(current.index + 1, len(plan)):  # the file ended early: empty windows
            yield Window(nxt, nxt * window_s, min(duration, (nxt + 1) * window_s))
    finally:
        cap.release()


def video_time(frame: Frame, info: VideoInfo) -> float:
    """Seconds from the start of the video of a frame made by :func:`iter_windows`."""
    return (frame.captured_at - (info.start or _EPOCH)).total_seconds()
