"""Face detection post-processing and the shipped detector's runner: ONE place for device and batch.

The detector family (``amgs.models.detector_arch``) is CenterNet-style (Zhou et al. 2019, "Objects as
Points"): a small int8 network maps a frame, resized to its square input, to a grid of cells (stride 8);
each cell holds five numbers in 0-1 (one sigmoid output, so int8 quantization is exact in range):

    0  heat   P(a face centre lies in this cell)
    1  off_x  where in the cell the centre is (0 = left edge, 1 = right edge)
    2  off_y  the same, vertically
    3  w      face width as a fraction of the frame width
    4  h      face height as a fraction of the frame height

A face is a local maximum of the heat map (3x3) at or above the threshold; overlapping boxes are then
thinned by non-maximum suppression. No anchors, no TFLite post-processing op: everything after the
invoke is the numpy below, which every caller (device, ``amgs score``, evaluation) shares.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from amgs.manifest import ManifestError
from amgs.preprocess import Box, to_model_input

CHANNELS = ("heat", "off_x", "off_y", "w", "h")


@dataclass(frozen=True)
class Detection:
    """One face: box in frame pixels (x, y, w, h) and the detector's score 0-1."""

    box: Box
    score: float


def detector_pixels(frame: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """The frame stretched to the detector input (w, h) with area averaging: the only resize used for
    detection, in training, evaluation, batch scoring and on the device."""
    if frame.ndim == 2:
        frame = np.stack([frame] * 3, axis=-1)
    if frame.shape[2] == 4:
        frame = frame[..., :3]
    if (frame.shape[1], frame.shape[0]) == size:
        return np.ascontiguousarray(frame)
    return cv2.resize(frame, size, interpolation=cv2.INTER_AREA)


def _local_max(heat: np.ndarray) -> np.ndarray:
    """True where a cell is the maximum of its 3x3 neighbourhood (CenterNet's max-pool 'NMS')."""
    padded = np.pad(heat, 1, constant_values=-np.inf)
    h, w = heat.shape
    neigh = np.stack([padded[dy : dy + h, dx : dx + w] for dy in range(3) for dx in range(3)])
    return heat >= neigh.max(axis=0)


def iou_xyxy(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU between boxes ``a`` [n, 4] and ``b`` [m, 4] (x0, y0, x1, y1) -> [n, m]."""
    a, b = np.asarray(a, np.float64).reshape(-1, 4), np.asarray(b, np.float64).reshape(-1, 4)
    ix = np.clip(np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0]), 0, None)
    iy = np.clip(np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1]), 0, None)
    inter = ix * iy
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def nms(boxes: np.ndarray, scores: np.ndarray, iou: float) -> list[int]:
    """Indices kept by greedy non-maximum suppression, best score first."""
    order = list(np.argsort(-scores, kind="stable"))
    keep: list[int] = []
    while order:
        i = order.pop(0)
        keep.append(int(i))
        if order:
            overlaps = iou_xyxy(boxes[i], boxes[order])[0]
            order = [j for j, o in zip(order, overlaps, strict=True) if o < iou]
    return keep


def decode(
    grid: np.ndarray, threshold: float, max_faces: int = 20, nms_iou: float = 0.4
) -> tuple[np.ndarray, np.ndarray]:
    """Grid [H, W, 5] (dequantized) -> (boxes [k, 4] as x0, y0, x1, y1 fractions of the frame, scores [k])."""
    if grid.ndim != 3 or grid.shape[2] != len(CHANNELS):
        raise ValueError(f"detector grid must be HxWx{len(CHANNELS)}, got {grid.shape}")
    heat = grid[..., 0]
    gh, gw = heat.shape
    ys, xs = np.nonzero((heat >= threshold) & _local_max(heat))
    if len(ys) == 0:
        return np.zeros((0, 4), np.float32), np.zeros(0, np.float32)
    scores = heat[ys, xs].astype(np.float32)
    cx = (xs + grid[ys, xs, 1]) / gw
    cy = (ys + grid[ys, xs, 2]) / gh
    bw, bh = grid[ys, xs, 3], grid[ys, xs, 4]
    boxes = (
        np.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], axis=1).clip(0, 1).astype(np.float32)
    )
    keep = nms(boxes, scores, nms_iou)[:max_faces]
    return boxes[keep], scores[keep]


def to_frame_boxes(
    boxes: np.ndarray, scores: np.ndarray, frame_size: tuple[int, int], margin: float = 0.0
) -> list[Detection]:
    """Fractional boxes -> pixel boxes in the frame, each grown by ``margin`` of its size per side."""
    w, h = frame_size
    out = []
    for (x0, y0, x1, y1), s in zip(boxes, scores, strict=True):
        bw, bh = (x1 - x0) * w, (y1 - y0) * h
        if bw <= 1 or bh <= 1:
            continue
        px0 = max(0, round(x0 * w - margin * bw))
        py0 = max(0, round(y0 * h - margin * bh))
        px1 = min(w, round(x1 * w + margin * bw))
        py1 = min(h, round(y1 * h + margin * bh))
        out.append(Detection((px0, py0, px1 - px0, py1 - py0), round(float(s), 4)))
    return out


class FaceDetector:
    """The project's own detector (manifest ``kind: detector``): frame in, face boxes out.

    Same interface as the device's SSD wrapper (``best_box``), plus ``detect`` for every face.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        num_threads: int = 1,
        backend: str = "auto",
        accelerator: str = "auto",
        min_score: float | None = None,
        margin: float = 0.0,
    ) -> None:
        from amgs.runtime import Model

        self.model = Model(path, num_threads=num_threads, backend=backend, accelerator=accelerator)  # type: ignore[arg-type]
        m = self.model.manifest
        if m.kind != "detector" or m.detector is None:
            raise ManifestError(f"{path} is not a face detector (manifest kind {m.kind!r})")
        self.manifest = m
        self.spec = m.detector
        self.min_score = m.threshold if min_score is None else min_score
        self.margin = margin
        self._out = m.outputs[0].name
        self.last_invoke_ms = 0.0

    @property
    def input_size(self) -> tuple[int, int]:
        return self.manifest.input.width, self.manifest.input.height

    def grid(self, frame: np.ndarray) -> np.ndarray:
        """The raw dequantized output grid [H, W, 5] for one RGB frame."""
        x = to_model_input(detector_pixels(frame, self.input_size), self.manifest.input)
        out = self.model.run(x)[self._out]
        self.last_invoke_ms = self.model.last_invoke_ms
        return out

    def detect_normalized(
        self, frame: np.ndarray, min_score: float | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        thr = self.min_score if min_score is None else min_score
        return decode(self.grid(frame), thr, self.spec.max_faces, self.spec.nms_iou)

    def detect(self, frame: np.ndarray, min_score: float | None = None) -> list[Detection]:
        """Every face at or above the threshold, best first, in frame pixels (grown by ``margin``)."""
        boxes, scores = self.detect_normalized(frame, min_score)
        return to_frame_boxes(boxes, scores, (frame.shape[1], frame.shape[0]), self.margin)

    def best(self, frame: np.ndarray) -> Detection | None:
        found = self.detect(frame)
        return found[0] if found else None

    def best_box(self, frame: np.ndarray) -> Box | None:
        found = self.best(frame)
        return found.box if found else None
