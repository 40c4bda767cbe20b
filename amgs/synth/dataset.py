"""Write SYNTHETIC labelled sets in the formats real labs use, so every loader is exercised end to end.

Layout written by :func:`write_dataset` (all names as in ``amgs.datasets``)::

    OUT/SYNTHETIC.txt            says loudly that nothing here is a real mouse
    OUT/pain/*.jpg, OUT/no pain/*.jpg   face crops, the original aMGS retraining layout
    OUT/labels.csv               filename,label   (1 = pain, 0 = no pain)
    OUT/au_scores.csv            filename,ot1,nb1,cb1,ep1,wc1,ot2,...   several raters, blanks, skipped numbers
    OUT/animals.csv              filename,animal_id,time_point,condition
    OUT/truth.csv                the generator's exact continuous action units (never available for real data)
    OUT/scenes/*.jpg + OUT/boxes.json   whole frames with face boxes (optional)
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from amgs.contract import AU_KEYS
from amgs.synth.faces import COATS, render_face, render_scene, sample_params

SYNTHETIC_NOTICE = (
    "SYNTHETIC DATA made by the amgs procedural face generator (amgs synth). These are drawings, not mice.\n"
    "Use them to test and demonstrate the pipeline only; a model trained on them is not validated on real animals.\n"
)
JPEG_COMMENT = b"amgs synthetic face - not a real mouse"
PAIN_CUTOFF = 1.0
"""A synthetic face is labelled pain when its mean action unit is at least this (0-2 scale)."""


def sample_aus(rng: np.random.Generator, pain: bool, margin: float = 0.25) -> dict[str, float]:
    """Continuous action units for a no-pain (mean < cutoff - margin) or pain (mean > cutoff + margin) face."""
    while True:
        level = rng.uniform(PAIN_CUTOFF + margin, 1.85) if pain else rng.uniform(0.0, PAIN_CUTOFF - margin)
        aus = {k: float(np.clip(level + rng.normal(0, 0.3), 0, 2)) for k in AU_KEYS}
        mean = float(np.mean(list(aus.values())))
        if (pain and mean >= PAIN_CUTOFF + margin) or (not pain and mean <= PAIN_CUTOFF - margin):
            return aus


def rater_scores(
    rng: np.random.Generator, aus: dict[str, float], n_raters: int, skip_prob: float = 0.15
) -> list[dict[str, int] | None]:
    """Simulated human raters: the true unit plus rater noise, rounded to 0/1/2; None where a rater skipped."""
    out: list[dict[str, int] | None] = []
    for r in range(n_raters):
        if r > 0 and rng.random() < skip_prob:
            out.append(None)
            continue
        out.append({k: int(np.clip(np.round(aus[k] + rng.normal(0, 0.35)), 0, 2)) for k in AU_KEYS})
    return out


@dataclass(frozen=True)
class WrittenSet:
    root: Path
    n_faces: int
    n_scenes: int


def write_dataset(
    out: Path,
    n: int,
    seed: int = 0,
    size: int = 299,
    n_animals: int = 12,
    raters: tuple[int, ...] = (1, 2, 4),
    scenes: int = 0,
    margin: float = 0.25,
    hard: bool = False,
) -> WrittenSet:
    """Write ``n`` face crops (half pain) plus tables, and ``scenes`` whole frames with face boxes."""
    out = Path(out)
    rng = np.random.default_rng(seed)
    for sub in ("pain", "no pain"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    (out / "SYNTHETIC.txt").write_text(SYNTHETIC_NOTICE)
    animals = [f"M{seed % 1000:03d}-{i:02d}" for i in range(n_animals)]
    coat_of = {a: COATS[i % len(COATS)] for i, a in enumerate(animals)}
    rows_label, rows_au, rows_animal, rows_truth = [], [], [], []
    for i in range(n):
        pain = bool(i % 2)
        animal = animals[int(rng.integers(0, n_animals))]
        aus = sample_aus(rng, pain, margin)
        params = sample_params(rng, aus, coat=coat_of[animal], hard=hard)
        img = render_face(params, size, seed=int(rng.integers(0, 2**31 - 1)))
        name = f"synth_{seed}_{i:05d}.jpg"
        rel = f"{'pain' if pain else 'no pain'}/{name}"
        img.save(out / rel, quality=90, comment=JPEG_COMMENT)
        rows_label.append([rel, int(pain)])
        row = [rel]
        for r, scores in zip(raters, rater_scores(rng, aus, len(raters)), strict=True):
            del r
            row.extend([""] * 5 if scores is None else [scores[k] for k in AU_KEYS])
        rows_au.append(row)
        rows_animal.append(
            [
                rel,
                animal,
                "post-op 12 h" if pain else "baseline",
                "synthetic-pain" if pain else "synthetic-baseline",
            ]
        )
        rows_truth.append([rel, params.coat] + [round(aus[k], 4) for k in AU_KEYS])
    _write_csv(out / "labels.csv", ["filename", "label"], rows_label)
    _write_csv(out / "au_scores.csv", ["filename"] + [f"{k}{r}" for r in raters for k in AU_KEYS], rows_au)
    _write_csv(out / "animals.csv", ["filename", "animal_id", "time_point", "condition"], rows_animal)
    _write_csv(out / "truth.csv", ["filename", "coat", *AU_KEYS], rows_truth)
    if scenes:
        write_scenes(out, scenes, seed=seed + 1)
    return WrittenSet(out, n, scenes)


def write_scenes(
    out: Path, n: int, seed: int = 0, frame: tuple[int, int] = (1280, 720)
) -> dict[str, list[dict]]:
    """Whole frames with known face boxes (JSON with numbers as strings, as real sets have); 1 in 5 has no usable face."""
    rng = np.random.default_rng(seed)
    (out / "scenes").mkdir(parents=True, exist_ok=True)
    boxes: dict[str, list[dict]] = {}
    for i in range(n):
        kind = "face" if i % 5 else str(rng.choice(["empty", "back_turned", "dark_blur"]))
        pain = bool(rng.integers(0, 2))
        aus = sample_aus(rng, pain)
        scene = render_scene(
            sample_params(rng, aus), frame=frame, face_px=int(rng.integers(200, 420)), rng=rng, kind=kind
        )
        name = f"scenes/synth_scene_{seed}_{i:04d}.jpg"
        scene.image.save(out / name, quality=90, comment=JPEG_COMMENT)
        entries = []
        if scene.face_box:
            x, y, w, h = scene.face_box
            entries.append(
                {
                    "AnimalNumber": "1",
                    "Boundingbox": {"x": str(x), "y": str(y), "w": str(w), "h": str(h)},
                    "GrimaceScale": str(int(np.clip(np.round(np.mean(list(aus.values()))), 0, 2))),
                }
            )
        boxes[name] = entries
    (out / "boxes.json").write_text(json.dumps(boxes, indent=1))
    return boxes


def _write_csv(path: Path, header: list[str], rows: list[list]) -> None:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
