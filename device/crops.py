"""Face crops of scored frames, kept on the device for a while for human review and audit.

Crops are the first thing to go when space is short: older than ``keep_crops_h`` they are deleted;
beyond ``crops_max_mb`` the oldest are deleted; when the disk's free space falls below
``min_free_mb`` crops are deleted (oldest first) and no new ones are kept, while scores still are.
Every such decision is reported in ``warning`` so the status message can say it loudly.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from collections import deque
from pathlib import Path

import numpy as np
from PIL import Image

from amgs.device.config import StorageSection

log = logging.getLogger(__name__)
MB = 1024 * 1024
WARNING_HOLD_S = 600.0
"""A storage warning stays in the status this long after the last time a limit was hit."""


class CropStore:
    def __init__(self, root: Path, cfg: StorageSection) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.cfg = cfg
        self.warning: str | None = None
        self.deleted_for_space = 0
        self._warned_at = 0.0
        self._files: deque[tuple[float, Path, int]] = deque()  # oldest first
        self._bytes = 0
        self._scan()

    def _scan(self) -> None:
        found = []
        for path in self.root.glob("*/*.jpg"):
            try:
                st = path.stat()
            except OSError:
                continue
            found.append((st.st_mtime, path, st.st_size))
        for tmp in self.root.glob("*/*.tmp"):  # left by a crash mid-write
            tmp.unlink(missing_ok=True)
        found.sort()
        self._files = deque(found)
        self._bytes = sum(f[2] for f in found)

    @property
    def enabled(self) -> bool:
        return self.cfg.keep_crops_h > 0

    def path_for(self, msg_id: str) -> Path:
        return self.root / msg_id[:2] / f"{msg_id}.jpg"

    def disk_free_mb(self) -> float:
        return shutil.disk_usage(self.root).free / MB

    def save(self, msg_id: str, pixels: np.ndarray) -> bool:
        """Write the crop (atomically); False when crops are off or space is short."""
        if not self.enabled:
            return False
        if self.disk_free_mb() < self.cfg.min_free_mb:
            self.prune()  # deletes crops and says so
            return False
        path = self.path_for(msg_id)
        path.parent.mkdir(exist_ok=True)
        tmp = path.with_suffix(".tmp")
        try:
            Image.fromarray(pixels).save(tmp, format="JPEG", quality=self.cfg.crop_quality)
            os.replace(tmp, path)
        except OSError as e:
            tmp.unlink(missing_ok=True)
            self._warn(f"could not write face crop ({e}); scores are still kept")
            return False
        size = path.stat().st_size
        self._files.append((time.time(), path, size))
        self._bytes += size
        self.prune()
        return path.exists()

    def read(self, msg_id: str) -> bytes | None:
        try:
            return self.path_for(msg_id).read_bytes()
        except OSError:
            return None

    def _drop_oldest(self) -> None:
        _, path, size = self._files.popleft()
        path.unlink(missing_ok=True)
        self._bytes -= size

    def prune(self) -> None:
        """Apply age, size and free-space limits; set or clear ``warning``."""
        warning = None
        cutoff = time.time() - self.cfg.keep_crops_h * 3600
        while self._files and self._files[0][0] < cutoff:
            self._drop_oldest()
        cap = self.cfg.crops_max_mb * MB
        if self._bytes > cap:
            n = 0
            while self._files and self._bytes > cap:
                self._drop_oldest()
                n += 1
            self.deleted_for_space += n
            warning = f"face crop cap of {self.cfg.crops_max_mb:g} MB reached: deleted the {n} oldest crop(s)"
        free = self.disk_free_mb()
        if free < self.cfg.min_free_mb:
            n = 0
            while self._files and self.disk_free_mb() < self.cfg.min_free_mb:
                self._drop_oldest()
                n += 1
            self.deleted_for_space += n
            warning = (
                f"DISK LOW: {free:.0f} MB free, below min_free_mb = {self.cfg.min_free_mb:g}: "
                f"face crops are deleted ({n} now) and not kept; scores are still stored and sent"
            )
        if warning:
            self._warn(warning)
        elif self.warning and time.monotonic() - self._warned_at > WARNING_HOLD_S:
            self.warning = None

    def _warn(self, message: str) -> None:
        if message != self.warning:
            log.warning("%s", message)
        self.warning = message
        self._warned_at = time.monotonic()

    @property
    def count(self) -> int:
        return len(self._files)

    @property
    def bytes(self) -> int:
        return self._bytes
