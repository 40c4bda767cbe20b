"""An optional TFLite face detector with the standard SSD post-processed outputs.

Expected outputs (TF Object Detection API ``TFLite_Detection_PostProcess``): boxes [1, N, 4] as
normalized ymin, xmin, ymax, xmax; classes [1, N]; scores [1, N]; count [1]. They are matched by
signature name when the model has one (detection_boxes, ...), else by the classic output order.
The highest-scoring box becomes the face crop, grown by a margin.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from amgs.device.config import DetectorSection
from amgs.preprocess import Box
from amgs.runtime import RuntimeUnavailable, interpreter_module


class DetectorError(RuntimeError):
    """The detector model cannot be loaded or does not have SSD-style outputs."""


def best_box(
    boxes: np.ndarray,
    classes: np.ndarray,
    scores: np.ndarray,
    count: int,
    frame_size: tuple[int, int],
    min_score: float,
    class_id: int | None = None,
    margin: float = 0.0,
) -> Box | None:
    """The highest-scoring box above ``min_score`` (and of ``class_id``) in frame pixels, or None."""
    w, h = frame_size
    best: tuple[float, Box] | None = None
    for i in range(min(int(count), len(scores))):
        score = float(scores[i])
        if score < min_score or (class_id is not None and int(round(float(classes[i]))) != class_id):
            continue
        ymin, xmin, ymax, xmax = (float(v) for v in boxes[i])
        bw, bh = (xmax - xmin) * w, (ymax - ymin) * h
        if bw <= 1 or bh <= 1:
            continue
        x0 = max(0, round(xmin * w - margin * bw))
        y0 = max(0, round(ymin * h - margin * bh))
        x1 = min(w, round(xmax * w + margin * bw))
        y1 = min(h, round(ymax * h + margin * bh))
        if best is None or score > best[0]:
            best = (score, (x0, y0, x1 - x0, y1 - y0))
    return best[1] if best else None


SSD_MIN_SCORE = 0.5


def load_detector(cfg: DetectorSection, backend: str = "auto"):
    """The detector a ``[detector]`` section names: the project's own (a ``kind: detector`` manifest beside
    the file; the shipped one when no path is given) or a user's SSD-style model."""
    from amgs.detect import FaceDetector
    from amgs.manifest import ManifestError, read_manifest
    from amgs.models import DEFAULT_DETECTOR

    path = Path(cfg.path) if cfg.path else DEFAULT_DETECTOR
    manifest_file = path.with_suffix(".manifest.json")
    if manifest_file.is_file():
        try:
            manifest = read_manifest(manifest_file)
            if manifest.kind == "detector":
                if manifest.synthetic and not cfg.allow_synthetic:
                    raise DetectorError(
                        f"face detector {manifest.name} {manifest.version} ({path}) was trained on SYNTHETIC "
                        "scenes only: on real cages it finds faces by chance. Train one on your lab's boxes "
                        "(`amgs model train-detector`, docs/models.md), or, for a demo or a test, set "
                        "detector.allow_synthetic = true."
                    )
                return FaceDetector(
                    path, num_threads=cfg.threads, backend=backend, min_score=cfg.min_score, margin=cfg.margin
                )
        except (ManifestError, RuntimeUnavailable) as e:
            raise DetectorError(f"detector model {path}: {e}") from None
    if cfg.path is None:
        raise DetectorError(f"the shipped face detector {path} is missing or has no manifest")
    return Detector(cfg, backend)


class Detector:
    def __init__(self, cfg: DetectorSection, backend: str = "auto") -> None:
        self.cfg = cfg
        if cfg.path is None or not Path(cfg.path).is_file():
            raise DetectorError(f"detector model {cfg.path} does not exist")
        try:
            _, module = interpreter_module(backend)  # type: ignore[arg-type]
        except RuntimeUnavailable as e:
            raise DetectorError(str(e)) from None
        try:
            self.interp = module.Interpreter(model_path=str(cfg.path), num_threads=cfg.threads)
            self.interp.allocate_tensors()
        except (ValueError, RuntimeError) as e:
            raise DetectorError(f"detector model {cfg.path} cannot be loaded: {e}") from None
        self.input = self.interp.get_input_details()[0]
        outs = self.interp.get_output_details()
        if len(outs) != 4:
            raise DetectorError(
                f"detector {cfg.path} has {len(outs)} outputs; an SSD-style detector has 4 "
                "(boxes, classes, scores, count)"
            )
        self.order = self._output_order(outs)
        _, self.in_h, self.in_w, _ = (int(v) for v in self.input["shape"])

    def _output_order(self, outs: list[dict]) -> list[int]:
        names = ("detection_boxes", "detection_classes", "detection_scores", "num_detections")
        sigs = self.interp.get_signature_list()
        if sigs:
            runner_outs = self.interp.get_signature_runner().get_output_details()
            if all(n in runner_outs for n in names):
                return [runner_outs[n]["index"] for n in names]
        return [o["index"] for o in outs]  # boxes, classes, scores, count

    def best_box(self, frame: np.ndarray) -> Box | None:
        resized = cv2.resize(frame, (self.in_w, self.in_h), interpolation=cv2.INTER_AREA)
        dtype = np.dtype(self.input["dtype"])
        if dtype == np.float32:
            x = (resized.astype(np.float32) - 127.5) / 127.5
        else:
            x = resized.astype(dtype)
        self.interp.set_tensor(self.input["index"], x[None])
        self.interp.invoke()
        boxes, classes, scores, count = (self.interp.get_tensor(i) for i in self.order)
        return best_box(
            boxes[0],
            classes[0],
            scores[0],
            int(np.ravel(count)[0]),
            (frame.shape[1], frame.shape[0]),
            self.cfg.min_score or SSD_MIN_SCORE,
            self.cfg.class_id,
            self.cfg.margin,
        )
