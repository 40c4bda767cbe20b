"""A lab-style folder made from a SYNTHETIC set: animals encoded in file names (CTC03_0007.jpg), labels
from per-rater action units only (au_scores.csv), no animals.csv: what many labs hand over."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

from amgs.synth.dataset import write_dataset


def make_lab_folder(dst: Path, n: int, *, seed: int = 5, size: int = 96, n_animals: int = 8) -> Path:
    src = write_dataset(dst.parent / f"{dst.name}-synth", n, seed=seed, size=size, n_animals=n_animals).root
    with open(src / "animals.csv", newline="") as f:
        animal = {r["filename"]: r["animal_id"] for r in csv.DictReader(f)}
    ids = {a: f"CTC{i + 1:02d}" for i, a in enumerate(sorted(set(animal.values())))}
    (dst / "images").mkdir(parents=True, exist_ok=True)
    rename = {}
    for i, (rel, a) in enumerate(sorted(animal.items())):
        new = f"images/{ids[a]}_{i:04d}.jpg"
        shutil.copyfile(src / rel, dst / new)
        rename[rel] = new
    with open(src / "au_scores.csv", newline="") as f, open(dst / "au_scores.csv", "w", newline="") as g:
        rows = list(csv.reader(f))
        w = csv.writer(g)
        w.writerow(rows[0])
        for row in rows[1:]:
            w.writerow([rename[row[0]], *row[1:]])
    return dst
