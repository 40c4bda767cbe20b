"""Detection figures: precision, recall, AP at an IoU, miss rate at a working threshold.

Matching follows PASCAL VOC / COCO: detections of the whole set are taken best score first; each is a
true positive if it overlaps a not-yet-matched true face of its frame at IoU >= t, else a false
positive. AP is the area under the precision envelope over recall (all-point interpolation, VOC 2010+).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from amgs.detect import iou_xyxy


@dataclass(frozen=True)
class PRCurve:
    scores: np.ndarray  # detection scores, descending
    precision: np.ndarray
    recall: np.ndarray
    n_true: int


def match(
    pred_boxes: list[np.ndarray], pred_scores: list[np.ndarray], true_boxes: list[np.ndarray], iou: float
) -> PRCurve:
    """Greedy matching over the whole set -> the precision/recall curve at IoU ``iou``."""
    n_true = int(sum(len(t) for t in true_boxes))
    rows = []  # (score, is_tp)
    for boxes, scores, truth in zip(pred_boxes, pred_scores, true_boxes, strict=True):
        used = np.zeros(len(truth), bool)
        order = np.argsort(-np.asarray(scores), kind="stable")
        overlaps = iou_xyxy(boxes, truth) if len(truth) and len(boxes) else np.zeros((len(boxes), len(truth)))
        for i in order:
            tp = False
            if len(truth):
                cand = np.where(used, -1.0, overlaps[i])
                j = int(np.argmax(cand))
                if cand[j] >= iou:
                    used[j] = True
                    tp = True
            rows.append((float(scores[i]), tp))
    rows.sort(key=lambda r: -r[0])
    s = np.array([r[0] for r in rows], np.float64)
    tp = np.cumsum([r[1] for r in rows]).astype(np.float64)
    fp = np.arange(1, len(rows) + 1) - tp
    precision = tp / np.maximum(tp + fp, 1)
    recall = tp / max(n_true, 1)
    return PRCurve(s, precision, recall, n_true)


def average_precision(curve: PRCurve) -> float:
    """All-point interpolated AP (area under the monotone precision envelope)."""
    if curve.n_true == 0:
        return float("nan")
    r = np.concatenate([[0.0], curve.recall, [curve.recall[-1] if len(curve.recall) else 0.0]])
    p = np.concatenate([[1.0], curve.precision, [0.0]])
    p = np.maximum.accumulate(p[::-1])[::-1]
    idx = np.where(r[1:] != r[:-1])[0]
    return float(np.sum((r[idx + 1] - r[idx]) * p[idx + 1]))


def at_threshold(curve: PRCurve, threshold: float) -> dict[str, float]:
    """Precision, recall and miss rate counting only detections scoring >= ``threshold``."""
    k = int(np.sum(curve.scores >= threshold))
    if k == 0:
        return {"precision": float("nan"), "recall": 0.0, "miss_rate": 1.0, "detections": 0}
    rec = float(curve.recall[k - 1])
    return {
        "precision": float(curve.precision[k - 1]),
        "recall": rec,
        "miss_rate": 1.0 - rec,
        "detections": k,
    }


def detection_figures(
    pred_boxes: list[np.ndarray],
    pred_scores: list[np.ndarray],
    true_boxes: list[np.ndarray],
    threshold: float,
) -> dict[str, float | int]:
    """Everything a report and a manifest need, from detections made at a low threshold (e.g. 0.05)."""
    c50 = match(pred_boxes, pred_scores, true_boxes, 0.5)
    c75 = match(pred_boxes, pred_scores, true_boxes, 0.75)
    at = at_threshold(c50, threshold)
    empty = [i for i, t in enumerate(true_boxes) if len(t) == 0]
    false_on_empty = sum(int(np.sum(np.asarray(pred_scores[i]) >= threshold) > 0) for i in empty)
    return {
        "frames": len(true_boxes),
        "faces": c50.n_true,
        "ap50": round(average_precision(c50), 4),
        "ap75": round(average_precision(c75), 4),
        "threshold": threshold,
        "precision": round(at["precision"], 4),
        "recall": round(at["recall"], 4),
        "miss_rate": round(at["miss_rate"], 4),
        "recall_iou75": round(at_threshold(c75, threshold)["recall"], 4),
        "frames_without_face": len(empty),
        "false_alarm_frames": false_on_empty,
    }
