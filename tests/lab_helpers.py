"""A lab-style folder made from a SYNTHETIC set: animals encoded in file names (CTC03_0007.jpg), labels
from per-rater action units only (au_scores.csv), no animals.csv: what many labs hand over."""

from __future__ import annotations

import csv
import hashlib
import json
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


def variant_of(model_path, out_dir, version: str):
    """The shipped model with bytes appended (the interpreter ignores them): another file, another sha256,
    the same scores. A quick stand-in for a retrained model when training is not what is tested."""
    out_dir.mkdir(parents=True, exist_ok=True)
    data = model_path.read_bytes() + f"amgs-test-variant {version}".encode()
    target = out_dir / f"variant-{version}.tflite"
    target.write_bytes(data)
    m = json.loads(model_path.with_suffix(".manifest.json").read_text())
    m.update(
        file=target.name,
        sha256=hashlib.sha256(data).hexdigest(),
        name="lab-mgs",
        version=version,
        evaluation=[],
    )
    target.with_suffix(".manifest.json").write_text(json.dumps(m))
    return target
