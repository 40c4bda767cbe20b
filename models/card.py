"""Model cards: what a model is, what it was trained on, how good it is, and what it must not be used for.

Written from the manifest (I/O, provenance, evaluation figures) and the training runs' ``train.json``,
so the card cannot drift from the file it describes.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from amgs.manifest import Manifest, read_manifest

_RECIPE_KEYS = (
    "recipe",
    "weights",
    "size",
    "epochs",
    "steps_per_epoch",
    "batch_size",
    "learning_rate",
    "au_heads",
    "bn_momentum",
    "bn_recalibration_batches",
    "augment",
    "seed",
)


def _training_section(train_dirs: Sequence[Path]) -> list[str]:
    lines: list[str] = []
    for i, d in enumerate(train_dirs, start=1):
        record_path = Path(d) / "train.json"
        if not record_path.exists():
            continue
        rec = json.loads(record_path.read_text())
        cfg = rec["config"]
        lines.append(
            f"{i}. `{rec['data']}`: {rec['n_train']} training / {rec['n_val']} validation images "
            f"(validation animals never in training: {', '.join(rec['val_animals']) or 'none known'})"
        )
        lines.append("   - " + ", ".join(f"{k}={cfg[k]}" for k in _RECIPE_KEYS if k in cfg))
        lines.append(
            "   - held-out after training: "
            + ", ".join(f"{k}={v:.4f}" for k, v in rec.get("validation", {}).items())
        )
    return lines or [
        "(no train.json given to `amgs model card --train-dir`; the card's introduction says how it was trained)"
    ]


def _domain_lines(m: Manifest) -> list[str]:
    d, c = m.domain_check, m.calibration
    lines = []
    if d is None:
        lines.append("- in-domain check: **none** (images unlike the training faces are scored anyway)")
    else:
        lines.append(
            f"- in-domain check: {d.method} distance on {d.components.shape[0]} principal axes (+ isotropic remainder) of "
            f"`{d.output}` (shared probabilistic-PCA covariance, remainder variance {d.residual_variance:.4g}); an image above "
            f"{d.threshold:.3f} (the {d.quantile} quantile of {d.n_heldout} held-out faces: {d.heldout}) is "
            f"`unscorable` / `out_of_domain`; statistics from {d.fitted_on}"
        )
    if c is None:
        lines.append("- calibration: none (P(pain) is the raw softmax)")
    else:
        lines.append(
            f"- calibration: temperature {c.temperature} on the {c.source} (fitted on {c.n} held-out faces; "
            f"ECE there {c.ece_before} -> {c.ece_after})"
        )
    return lines


def write_card(path: Path, model_path: Path, train_dirs: Sequence[Path] | Path = (), intro: str = "") -> Path:
    m = read_manifest(Path(model_path).with_suffix(".manifest.json"))
    dirs = [train_dirs] if isinstance(train_dirs, Path) else list(train_dirs)
    inp = m.input
    lines = [f"# Model card: {m.name} {m.version}", ""]
    if m.synthetic:
        lines += [
            "> **Trained on SYNTHETIC mouse faces only** (drawings made by `amgs.synth`). It demonstrates the",
            "> pipeline end to end; it is **not validated on real mice** and must not be used to make welfare",
            "> or scientific decisions. A lab retrains it on its own human-scored images (see below).",
            "",
        ]
    if intro:
        lines += [intro.strip(), ""]
    lines += [
        "## What it is",
        "",
        f"- File `{m.file}`, sha256 `{m.sha256}`",
        f"- {m.architecture}, {m.quantization}; input {inp.width}x{inp.height}x{inp.channels} {inp.layout} "
        f"{inp.dtype} (quantization {inp.quantization}), float normalization (pixel - {inp.mean}) / {inp.std}, "
        f"{inp.resize} resize through `amgs.preprocess`",
    ]
    for o in m.outputs:
        desc = {
            "softmax": f"softmax over {list(o.labels or ())}",
            "au_regression": "five action units 0-2 (ot, nb, cb, ep, wc)",
            "features": "channel means of the mixed5 block (read by the in-domain check)"
            if m.domain_check and o.name == m.domain_check.output
            else "pooled features (not read by the in-domain check; see bench/bench_domain.py)",
            "logits": f"pain head logits over {list(o.labels or ())} (read by the calibration)",
        }[o.kind]
        lines.append(f"- output `{o.name}`: {desc}, {o.dtype}{list(o.shape)}, quantization {o.quantization}")
    lines += [
        f"- decision: pain when P(pain) >= {m.threshold}; review flag when top-class confidence < {m.review_threshold}",
        f"- aMGS score = P(pain) (see `amgs/scoring.py`); Edge TPU compiled: {m.edgetpu_compiled}",
        *_domain_lines(m),
        "",
        "## Training data and recipe",
        "",
        f"Provenance: {m.training_data}",
        "",
        *_training_section(dirs),
        "",
        "## Evaluation",
        "",
    ]
    if not m.evaluation:
        lines.append("Not evaluated yet: run `amgs model evaluate MODEL DATA -o REPORT_DIR`.")
    for e in m.evaluation:
        lines += [
            f"On `{e.dataset}` ({e.n_images} images, {e.date}):",
            "",
            "| figure | value |",
            "| --- | --- |",
        ]
        lines += [f"| {k} | {'n/a' if v is None else v} |" for k, v in e.figures.items()]
        lines.append("")
    lines += [
        "## Limitations",
        "",
        "- Scores a cropped, roughly frontal mouse face; whole frames need the face crop / quality gate first.",
        "- Calibration and accuracy hold only for images like the evaluation set; check on your own scored images.",
    ]
    if m.synthetic:
        lines.append(
            "- Synthetic faces differ from real mice in texture, lighting and anatomy: figures above say "
            "nothing about real animals."
        )
    lines += [
        "",
        "## How a lab retrains it",
        "",
        "```",
        "# images in folders 'pain/' and 'no pain/' (+ au_scores.csv, animals.csv, boxes.json if you have them)",
        "amgs model train LAB_DATA -o runs/lab --recipe head --weights imagenet     # the paper's recipe",
        "amgs model train LAB_DATA -o runs/lab-ft --recipe finetune --weights runs/lab/model.weights.h5 --lr 1e-4",
        "amgs model quantize runs/lab-ft/model.keras --calibration LAB_DATA -o models/lab.tflite \\",
        "    --name lab-amgs --version 1.0.0 --training-data 'LAB_DATA, N images, 2025' --real",
        "amgs model evaluate models/lab.tflite LAB_TEST -o reports/lab --float-model runs/lab-ft/model.keras",
        "amgs model info models/lab.tflite",
        "```",
        "",
        "Offline machines: copy Keras' `inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5` over and pass it",
        "as `--weights FILE`.",
    ]
    Path(path).write_text("\n".join(lines) + "\n")
    return Path(path)
