"""Loaders for the label formats labs actually use (see docs/datasets.md).

- folders ``pain/`` and ``no pain/`` of face crops (the original aMGS retraining layout)
- ``labels.csv``: ``filename,label`` with 1 = pain, 0 = no pain
- ``au_scores.csv``: file name, then ``ot1,nb1,cb1,ep1,wc1,ot2,...`` per rater, 0/1/2, blank = not scored
- ``boxes.json``: ``{"file.jpg": [{"AnimalNumber": "1", "Boundingbox": {"x": "447", ...}}]}`` (strings)
- ``animals.csv``: ``filename,animal_id,time_point,condition`` (any extra columns are kept)

Errors name the file, the line and the value, so a lab can fix its spreadsheet.
"""

from __future__ import annotations

import csv
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from amgs.contract import AU_KEYS
from amgs.preprocess import IMAGE_SUFFIXES, Box

PAIN_DIRS = {"pain": 1, "no pain": 0, "no_pain": 0, "nopain": 0, "no-pain": 0}
_AU_COLUMN = re.compile(r"^(ot|nb|cb|ep|wc)(\d+)$", re.IGNORECASE)


class DatasetError(ValueError):
    """A label file cannot be read; the message names the file, line and value."""


@dataclass(frozen=True)
class AuLabel:
    """Human action-unit scores for one image, averaged over the raters who scored it."""

    au: dict[str, float]
    mgs: float  # mean over units and raters: the image's human MGS score
    n_raters: int


@dataclass
class Item:
    path: Path
    label: int | None = None  # 1 pain, 0 no pain
    au: AuLabel | None = None
    animal_id: str | None = None
    box: Box | None = None
    meta: dict[str, str] = field(default_factory=dict)


def _key(name: str) -> str:
    return name.replace("\\", "/").strip()


def load_folder_labels(root: Path) -> dict[str, int]:
    labels: dict[str, int] = {}
    for sub in sorted(p for p in Path(root).iterdir() if p.is_dir()):
        value = PAIN_DIRS.get(sub.name.lower())
        if value is None:
            continue
        for f in sorted(sub.rglob("*")):
            if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES:
                labels[_key(str(f.relative_to(root)))] = value
    return labels


def _rows(path: Path) -> tuple[list[str], list[tuple[int, list[str]]]]:
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.reader(f)
            header = next(reader, None)
            if header is None:
                raise DatasetError(f"{path}: empty file, expected a header line")
            return [h.strip() for h in header], [
                (i + 2, row) for i, row in enumerate(reader) if any(c.strip() for c in row)
            ]
    except FileNotFoundError:
        raise DatasetError(f"{path}: no such file") from None
    except UnicodeDecodeError as e:
        raise DatasetError(f"{path}: not UTF-8 text ({e.reason}); save the sheet as CSV UTF-8") from None


def load_label_table(path: Path) -> dict[str, int]:
    header, rows = _rows(path)
    if len(header) < 2:
        raise DatasetError(f"{path}: expected columns filename,label; got {header}")
    out = {}
    for line, row in rows:
        value = row[1].strip().lower() if len(row) > 1 else ""
        if value in ("1", "pain"):
            out[_key(row[0])] = 1
        elif value in ("0", "no pain", "no_pain"):
            out[_key(row[0])] = 0
        else:
            raise DatasetError(
                f"{path}:{line}: label {value!r} for {row[0]!r} must be 1 (pain) or 0 (no pain)"
            )
    return out


def load_au_table(path: Path) -> dict[str, AuLabel]:
    """Wide per-rater table; rater numbers may skip, blanks mean not scored by that rater."""
    header, rows = _rows(path)
    columns: dict[int, tuple[str, str]] = {}
    for i, name in enumerate(header[1:], start=1):
        m = _AU_COLUMN.match(name)
        if not m:
            raise DatasetError(
                f"{path}: column {name!r} is not <unit><rater> with unit one of {', '.join(AU_KEYS)}"
            )
        columns[i] = (m.group(1).lower(), m.group(2))
    if not columns:
        raise DatasetError(f"{path}: no action-unit columns (expected ot1,nb1,cb1,ep1,wc1,...)")
    out: dict[str, AuLabel] = {}
    for line, row in rows:
        per_unit: dict[str, list[float]] = {k: [] for k in AU_KEYS}
        raters: set[str] = set()
        for i, (unit, rater) in columns.items():
            cell = row[i].strip() if i < len(row) else ""
            if not cell:
                continue
            try:
                value = float(cell)
            except ValueError:
                raise DatasetError(f"{path}:{line}: {header[i]} = {cell!r} is not a number") from None
            if value not in (0.0, 1.0, 2.0):
                raise DatasetError(f"{path}:{line}: {header[i]} = {cell!r}; MGS units are scored 0, 1 or 2")
            per_unit[unit].append(value)
            raters.add(rater)
        if not raters:
            continue  # nobody scored this image
        means = {k: sum(v) / len(v) for k, v in per_unit.items() if v}
        missing = [k for k in AU_KEYS if k not in means]
        if missing:
            raise DatasetError(
                f"{path}:{line}: {row[0]!r} has no score for {', '.join(missing)} from any rater"
            )
        all_values = [x for v in per_unit.values() for x in v]
        out[_key(row[0])] = AuLabel(means, sum(all_values) / len(all_values), len(raters))
    return out


def load_boxes(path: Path) -> dict[str, list[tuple[str, Box]]]:
    """Face boxes per image: list of (animal number, (x, y, w, h)); numbers may be strings."""
    try:
        data = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise DatasetError(f"{path}: no such file") from None
    except json.JSONDecodeError as e:
        raise DatasetError(f"{path}: not JSON ({e})") from None
    if not isinstance(data, dict):
        raise DatasetError(f"{path}: expected an object keyed by image file name")
    out: dict[str, list[tuple[str, Box]]] = {}
    for name, animals in data.items():
        entries = animals if isinstance(animals, list) else [animals]
        boxes = []
        for j, a in enumerate(entries):
            try:
                b = a["Boundingbox"]
                box = tuple(int(round(float(b[k]))) for k in ("x", "y", "w", "h"))
            except (KeyError, TypeError, ValueError) as e:
                raise DatasetError(
                    f"{path}: {name!r} entry {j}: needs Boundingbox x, y, w, h numbers ({e})"
                ) from None
            boxes.append((str(a.get("AnimalNumber", j + 1)), box))  # type: ignore[arg-type]
        out[_key(name)] = boxes
    return out


def load_side_table(path: Path) -> dict[str, dict[str, str]]:
    header, rows = _rows(path)
    return {
        _key(row[0]): {h: (row[i].strip() if i < len(row) else "") for i, h in enumerate(header) if i}
        for _, row in rows
    }


def load_dataset(root: Path, pain_cutoff: float = 1.0) -> list[Item]:
    """Everything known about the images under ``root``, from whichever label files are present.

    Label precedence: labels.csv, then the pain/ and no pain/ folders, then mean human MGS >= ``pain_cutoff``.
    """
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"{root}: not a folder")
    labels = load_folder_labels(root)
    if (root / "labels.csv").exists():
        labels.update(load_label_table(root / "labels.csv"))
    aus = load_au_table(root / "au_scores.csv") if (root / "au_scores.csv").exists() else {}
    side = load_side_table(root / "animals.csv") if (root / "animals.csv").exists() else {}
    boxes = load_boxes(root / "boxes.json") if (root / "boxes.json").exists() else {}
    names = sorted(set(labels) | set(aus))
    items = []
    for name in names:
        path = root / name
        if not path.exists():
            raise DatasetError(f"{root}: a label names {name!r} but there is no such image")
        au = aus.get(name)
        label = labels.get(name)
        if label is None and au is not None:
            label = int(au.mgs >= pain_cutoff)
        meta = side.get(name, {})
        box_list = boxes.get(name)
        items.append(
            Item(path, label, au, meta.get("animal_id") or None, box_list[0][1] if box_list else None, meta)
        )
    return items
