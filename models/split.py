"""Which animal each image shows, and a train / validation / test split that keeps animals apart.

A model scored on images of mice it was trained on looks better than it is: the test must be mice it
never saw. Animal ids come from ``animals.csv`` (``filename,animal_id,...``) or, since labs often encode
the animal in the file name (``CTC03_day2_0141.jpg``, ``AJ F4 post 12h.jpg``), from a regular expression
over the file name (``--animal-from-name``). Without either, the split is image by image and every log
line and record says so: it then proves nothing about unseen animals.

The split is written into the run folder (``split.csv``: path, animal, part) and reused when the same
run is resumed, so the test images stay the ones the model never trained on.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np

from amgs.datasets import DatasetError

PARTS = ("train", "val", "test")


def animals_from_names(
    paths: Sequence[str], known: Sequence[str], pattern: str
) -> tuple[np.ndarray, list[str]]:
    """Animal ids from file names by ``pattern`` (searched in the file's name, not its folders).

    The id is the group named ``animal`` if there is one, else the first group, else the whole match;
    ids from ``animals.csv`` (``known``, "" = none) win. Returns the ids and the names that did not match.
    """
    try:
        rx = re.compile(pattern)
    except re.error as e:
        raise DatasetError(f"--animal-from-name {pattern!r} is not a regular expression: {e}") from None
    group: str | int = "animal" if "animal" in rx.groupindex else (1 if rx.groups else 0)
    out, missed = [], []
    for path, animal in zip(paths, known, strict=True):
        if animal:
            out.append(animal)
            continue
        name = PurePosixPath(str(path).replace("\\", "/")).name
        m = rx.search(name)
        value = (m.group(group) or "").strip() if m else ""
        if not value:
            missed.append(str(path))
        out.append(value)
    return np.asarray(out, dtype=str), missed


@dataclass
class Split:
    train: np.ndarray
    val: np.ndarray
    test: np.ndarray
    by: str  # "animal", "animal+image" (some images without an id), or "image"

    def describe(self, animals: np.ndarray) -> str:
        def part(name: str, idx: np.ndarray) -> str:
            ids = set(animals[idx]) - {""}
            return f"{name} {len(idx)} images" + (f" / {len(ids)} animals" if self.by != "image" else "")

        how = {
            "animal": "split by animal (no animal on two sides)",
            "animal+image": "split by animal; images without an animal id split by image",
            "image": "split BY IMAGE (no animal ids: give animals.csv or --animal-from-name); "
            "held-out figures say nothing about unseen animals",
        }[self.by]
        return f"{how}: " + ", ".join(part(n, getattr(self, n)) for n in PARTS)


def split_mode(animals: np.ndarray) -> str:
    known = np.asarray(animals, dtype=str) != ""
    if known.all():
        return "animal"
    return "animal+image" if known.any() else "image"


def split_three(
    animals: Sequence[str] | np.ndarray, val_fraction: float, test_fraction: float, seed: int = 0
) -> Split:
    """Train / validation / test indices with no animal in two parts (images without an id are each their
    own group). ``test_fraction`` 0 gives an empty test part."""
    from amgs.models.data import split_by_animal

    animals = np.asarray(animals, dtype=str)
    everything = np.arange(len(animals))
    if test_fraction > 0:
        rest, test = split_by_animal(animals, test_fraction, seed + 7919)
    else:
        rest, test = everything, np.array([], dtype=np.int64)
    tr, va = split_by_animal(animals[rest], val_fraction / max(1 - test_fraction, 1e-9), seed)
    return Split(rest[tr], rest[va], test, split_mode(animals))


def write_split(path: Path, paths: np.ndarray, animals: np.ndarray, split: Split) -> None:
    rows = [(str(paths[i]), str(animals[i]), name) for name in PARTS for i in getattr(split, name)]
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "animal_id", "part"])
        w.writerows(sorted(rows, key=lambda r: (PARTS.index(r[2]), r[0])))
    (path.parent / "test_images.txt").write_text(
        "".join(f"{p}\n" for p, _, part in sorted(rows) if part == "test")
    )


def read_split(path: Path, paths: np.ndarray, animals: np.ndarray) -> Split:
    """The split recorded for a run; refuses if the images changed since (a test image must stay unseen)."""
    where = {str(p): i for i, p in enumerate(paths)}
    parts: dict[str, list[int]] = {n: [] for n in PARTS}
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            if row["path"] not in where:
                raise DatasetError(
                    f"{path}: {row['path']!r} is no longer in the data; the recorded split does not fit "
                    "these images. Train into a new run folder."
                )
            parts[row["part"]].append(where[row["path"]])
    if sum(map(len, parts.values())) != len(paths):
        raise DatasetError(
            f"{path}: the data has images the recorded split does not know; use a new run folder"
        )
    return Split(*(np.array(sorted(parts[n]), dtype=np.int64) for n in PARTS), split_mode(animals))
