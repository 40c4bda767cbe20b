"""The face detector's card: what it is, what it was trained on, how well it does, and its limits.

Written from the manifest (figures, provenance) and the training record, so the card never disagrees
with the file it describes. ``intro`` carries the exact commands that made the model.
"""

from __future__ import annotations

import json
from pathlib import Path

from amgs.manifest import manifest_path_for, read_manifest


def write_detector_card(path: Path, model: Path, train_dir: Path | None = None, intro: str = "") -> Path:
    m = read_manifest(manifest_path_for(Path(model)))
    train = {}
    if train_dir and (Path(train_dir) / "train.json").is_file():
        train = json.loads((Path(train_dir) / "train.json").read_text())
    lines = [f"# Model card: {m.name} {m.version} (face detector)", ""]
    if m.synthetic:
        lines += [
            "> **Trained on SYNTHETIC cage scenes drawn by this project's generator. It finds the generator's",
            "> drawn faces; it has never seen a real mouse. A lab retrains it on its own annotated frames",
            "> (`amgs model train-detector`) before trusting it on real cages.**",
            "",
        ]
    if intro:
        lines += [intro.strip(), ""]
    spec = m.input
    lines += [
        "## What it is",
        "",
        f"- File `{m.file}`, sha256 `{m.sha256}`, {m.quantization} ({spec.dtype} input "
        f"{spec.width}x{spec.height}x3, quantization {spec.quantization}).",
        f"- Architecture: {m.architecture}; one output grid {list(m.outputs[0].shape)} "
        f"({', '.join(m.detector.channels) if m.detector else ''}); decoding in numpy (`amgs.detect`).",
        f"- Working threshold (the device's default `min_score`): {m.threshold}.",
        f"- Training data: {m.training_data}.",
        "",
        "## Evaluation",
        "",
    ]
    if not m.evaluation:
        lines += [
            "Not evaluated yet: `amgs model evaluate-detector MODEL FRAMES -o REPORT` records it here.",
            "",
        ]
    for ev in m.evaluation:
        f = ev.figures
        lines += [
            f"`{ev.dataset}` ({ev.n_images} frames, {f.get('faces')} faces, {ev.date}):",
            "",
            "| AP@0.5 | AP@0.75 | precision | recall | miss rate | recall IoU 0.75 | false-alarm frames |",
            "| --- | --- | --- | --- | --- | --- | --- |",
            f"| {f.get('ap50')} | {f.get('ap75')} | {f.get('precision')} | {f.get('recall')} | {f.get('miss_rate')} "
            f"| {f.get('recall_iou75')} | {f.get('false_alarm_frames')} of {f.get('frames_without_face')} |",
            "",
        ]
    if train:
        lines += [
            "## Training record",
            "",
            f"- {train.get('train_frames')} frames ({train.get('train_faces')} faces), {train.get('steps_done')} steps, "
            f"{train.get('seconds_this_run')} s in the last run; validation on {train.get('val_frames')} frames.",
            f"- Config: `{json.dumps(train.get('config'))}`",
            f"- Float model on the validation frames: `{json.dumps(train.get('val_float'))}`",
            "",
        ]
    lines += [
        "## Limits",
        "",
        "- One class (mouse face). Faces smaller than ~8 % of the frame width, seen edge-on, or mostly",
        "  outside the frame were rare or absent in training.",
        "- Frames are stretched to the square input; very different aspect ratios than the training",
        "  frames' change the apparent face shape.",
        "- The Edge TPU build needs `edgetpu_compiler` (not installed here); every op is on its list.",
    ]
    Path(path).write_text("\n".join(lines) + "\n")
    return Path(path)
