"""Evaluate a packaged (int8) face detector on annotated frames: figures, plots, a markdown report.

The frames go through ``amgs.detect.FaceDetector`` at full resolution, i.e. exactly the path the
device and ``amgs score`` take (resize, quantize, invoke, the shared numpy decode). Detections are
collected down to a score of 0.05 so precision/recall curves and AP cover the whole range; the
working point is the manifest's threshold (the device's ``min_score`` default).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from amgs.datasets import load_boxes
from amgs.detect import FaceDetector
from amgs.manifest import Evaluation, manifest_path_for, read_manifest
from amgs.models.detector_metrics import detection_figures, match
from amgs.preprocess import open_image

FLOOR = 0.05


@dataclass
class DetectorEvaluation:
    figures: dict[str, float | int]
    pred_boxes: list[np.ndarray]
    pred_scores: list[np.ndarray]
    true_boxes: list[np.ndarray]
    names: list[str]


def evaluate_frames(detector: FaceDetector, root: Path, threshold: float | None = None) -> DetectorEvaluation:
    """Run the detector on every frame listed in ``root/boxes.json``; figures at IoU 0.5 and 0.75."""
    root = Path(root)
    boxes = load_boxes(root / "boxes.json")
    preds, scores, truth, names, ms = [], [], [], [], []
    for name in sorted(boxes):
        frame = np.asarray(open_image(root / name))
        h, w = frame.shape[:2]
        b, s = detector.detect_normalized(frame, FLOOR)
        ms.append(detector.last_invoke_ms)
        preds.append(b)
        scores.append(s)
        truth.append(
            np.array(
                [[x / w, y / h, (x + bw) / w, (y + bh) / h] for _, (x, y, bw, bh) in boxes[name]], np.float32
            ).reshape(-1, 4)
        )
        names.append(name)
    thr = detector.min_score if threshold is None else threshold
    fig = detection_figures(preds, scores, truth, thr)
    fig["invoke_ms_median"] = round(float(np.median(ms)), 2) if ms else 0.0
    return DetectorEvaluation(fig, preds, scores, truth, names)


def write_report(ev: DetectorEvaluation, model_path: Path, data: Path, out: Path, examples: int = 6) -> Path:
    """report.md + pr_curve.png + scores.png + examples.png in ``out``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    manifest = read_manifest(manifest_path_for(Path(model_path)))
    fig, ax = plt.subplots(figsize=(5, 4))
    for iou in (0.5, 0.75):
        c = match(ev.pred_boxes, ev.pred_scores, ev.true_boxes, iou)
        ax.plot(c.recall, c.precision, label=f"IoU {iou}")
        k = int(np.sum(c.scores >= ev.figures["threshold"]))
        if k:
            ax.plot(c.recall[k - 1], c.precision[k - 1], "o", color="k")
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_xlim(0, 1.01)
    ax.set_ylim(0, 1.01)
    ax.set_title(f"{manifest.name}: precision-recall (dot = threshold {ev.figures['threshold']})")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "pr_curve.png", dpi=110)
    plt.close(fig)

    c = match(ev.pred_boxes, ev.pred_scores, ev.true_boxes, 0.5)
    tp = np.diff(np.concatenate([[0], np.round(c.precision * np.arange(1, len(c.scores) + 1))]))
    fig, ax = plt.subplots(figsize=(5, 3.5))
    bins = np.linspace(0, 1, 41)
    ax.hist(c.scores[tp > 0.5], bins, alpha=0.7, label="true face (IoU>=0.5)")
    ax.hist(c.scores[tp <= 0.5], bins, alpha=0.7, label="false detection")
    ax.axvline(float(ev.figures["threshold"]), color="k", ls="--")
    ax.set_yscale("log")
    ax.set_xlabel("detector score")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "scores.png", dpi=110)
    plt.close(fig)

    _examples(ev, Path(data), out / "examples.png", float(ev.figures["threshold"]), examples)
    f = ev.figures
    synthetic = "SYNTHETIC " if manifest.synthetic else ""
    lines = [
        f"# Face detector evaluation: {manifest.name} {manifest.version}",
        "",
        f"Model `{Path(model_path).name}` (sha256 {manifest.sha256[:16]}..., {synthetic}training data: "
        f"{manifest.training_data}) on `{data}`: {f['frames']} frames, {f['faces']} faces, "
        f"{f['frames_without_face']} frames without a face.",
        "",
        "| figure | value |",
        "| --- | --- |",
        f"| AP@0.5 | {f['ap50']} |",
        f"| AP@0.75 | {f['ap75']} |",
        f"| precision at threshold {f['threshold']} (IoU 0.5) | {f['precision']} |",
        f"| recall at threshold {f['threshold']} (IoU 0.5) | {f['recall']} |",
        f"| miss rate at threshold {f['threshold']} | {f['miss_rate']} |",
        f"| recall at threshold, IoU 0.75 | {f['recall_iou75']} |",
        f"| face-free frames with a detection at threshold | {f['false_alarm_frames']} of {f['frames_without_face']} |",
        f"| median invoke (this run, ms) | {f['invoke_ms_median']} |",
        "",
        "![precision-recall](pr_curve.png) ![scores](scores.png)",
        "",
        "![examples: green = truth, red = detections at threshold](examples.png)",
        "",
    ]
    if manifest.synthetic:
        lines.append("These figures are about drawings made by the project's generator, not real mice.")
    (out / "report.md").write_text("\n".join(lines) + "\n")
    (out / "figures.json").write_text(json.dumps(f, indent=2) + "\n")
    return out / "report.md"


def _examples(ev: DetectorEvaluation, data: Path, path: Path, thr: float, n: int) -> None:
    """A grid of frames with true (green) and detected (red) boxes; misses and false alarms first."""
    from PIL import Image, ImageDraw

    def errors(i: int) -> int:
        keep = ev.pred_scores[i] >= thr
        return abs(int(keep.sum()) - len(ev.true_boxes[i]))

    order = sorted(range(len(ev.names)), key=lambda i: -errors(i))[:n]
    tiles = []
    for i in order:
        img = open_image(data / ev.names[i]).convert("RGB")
        w, h = img.size
        d = ImageDraw.Draw(img)
        for b in ev.true_boxes[i]:
            d.rectangle([b[0] * w, b[1] * h, b[2] * w, b[3] * h], outline=(0, 220, 0), width=max(2, w // 300))
        for b, s in zip(ev.pred_boxes[i], ev.pred_scores[i], strict=True):
            if s >= thr:
                d.rectangle(
                    [b[0] * w, b[1] * h, b[2] * w, b[3] * h], outline=(230, 0, 0), width=max(2, w // 400)
                )
                d.text((b[0] * w + 4, b[1] * h + 4), f"{s:.2f}", fill=(230, 0, 0))
        tiles.append(img.resize((480, int(480 * h / w))))
    if not tiles:
        return
    cols = 3
    rows = (len(tiles) + cols - 1) // cols
    th = max(t.height for t in tiles)
    sheet = Image.new("RGB", (cols * 480, rows * th), (255, 255, 255))
    for k, t in enumerate(tiles):
        sheet.paste(t, ((k % cols) * 480, (k // cols) * th))
    sheet.save(path)


def record_in_manifest(model_path: Path, dataset: str, figures: dict) -> None:
    """Add (or replace, by dataset name) the evaluation in the detector's manifest; sha256 is unchanged."""
    mpath = manifest_path_for(Path(model_path))
    m = read_manifest(mpath)
    ev = Evaluation(
        dataset=dataset,
        n_images=int(figures["frames"]),
        figures={k: v for k, v in figures.items() if isinstance(v, (int, float))},
        date=time.strftime("%Y-%m-%d"),
    )
    kept = tuple(e for e in m.evaluation if e.dataset != dataset)
    mpath.write_text(m.model_copy(update={"evaluation": kept + (ev,)}).to_json())
