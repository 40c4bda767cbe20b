"""Scoring whole-cage photos: find every face (detector, or a lab's ``boxes.json``), score each one.

One row per face, with its box in the photo, so a rater can check what was scored; a photo in which
no face is found is one row with ``status = no_face`` (and counted), never silently dropped. Each
photo is decoded once: detection and every face crop use the same pixels.
"""

from __future__ import annotations

import csv
import json
import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import numpy as np
from tqdm import tqdm

from amgs.batch import MODEL_COLUMNS, SCORE_COLUMNS, model_columns, score_columns
from amgs.datasets import load_boxes
from amgs.preprocess import Box, ImageError, iter_image_files, open_image
from amgs.scoring import ImageScore, Scorer, summarize_by_folder

log = logging.getLogger(__name__)

FACE_COLUMNS = [
    "path",
    "face",
    "status",
    "box_x",
    "box_y",
    "box_w",
    "box_h",
    "det_score",
    *SCORE_COLUMNS,
    *MODEL_COLUMNS,
]


@dataclass
class FaceBatchResult:
    scored: list[tuple[Path, ImageScore]] = field(default_factory=list)
    no_face: list[Path] = field(default_factory=list)
    failed: list[tuple[Path, str]] = field(default_factory=list)


class BoxTable:
    """Face boxes from a lab's ``boxes.json``, looked up by path relative to the file's folder or by name."""

    def __init__(self, path: Path) -> None:
        self.root = Path(path).resolve().parent
        self.boxes = load_boxes(Path(path))
        self._by_name = {Path(k).name: v for k, v in self.boxes.items()}

    def faces(self, image: Path) -> list[tuple[Box, float | None]] | None:
        """Boxes for ``image`` (None when the file lists no entry for it at all)."""
        try:
            key = str(Path(image).resolve().relative_to(self.root))
        except ValueError:
            key = Path(image).name
        entries = self.boxes.get(key)
        if entries is None:
            entries = self._by_name.get(Path(image).name)
        return None if entries is None else [(b, None) for _, b in entries]


def find_faces(frame: np.ndarray, detector) -> list[tuple[Box, float | None]]:
    return [(d.box, d.score) for d in detector.detect(frame)]


def run_faces(
    scorer: Scorer,
    paths: list[Path],
    out: IO[str],
    fmt: str = "csv",
    detector=None,
    boxes: BoxTable | None = None,
    progress: bool = True,
) -> FaceBatchResult:
    """Score every face of every photo under ``paths``; write one row per face (or per face-less photo)."""
    if detector is None and boxes is None:
        raise ValueError("run_faces needs a detector or a box table")
    result = FaceBatchResult()
    model = model_columns(scorer.manifest)
    writer = csv.writer(out) if fmt == "csv" else None
    if writer:
        writer.writerow(FACE_COLUMNS)
    files = iter_image_files(paths)
    for f in tqdm(files, unit="img", disable=not progress, file=sys.stderr, dynamic_ncols=True):
        try:
            frame = np.asarray(open_image(f))
            faces = boxes.faces(f) if boxes is not None else None
            if faces is None:
                if detector is None:
                    raise ImageError(f"{f}: not listed in the boxes file")
                faces = find_faces(frame, detector)
            rows = []
            for i, (box, det_score) in enumerate(faces):
                s = scorer.score(frame, box)
                result.scored.append((f, s))
                rows.append(_row(f, i, "scored", box, det_score, s, model))
        except ImageError as e:
            result.failed.append((f, str(e)))
            log.warning("skipped %s", e)
            continue
        if not rows:
            result.no_face.append(f)
            rows.append(_row(f, None, "no_face", None, None, None, model))
        for row in rows:
            if writer:
                writer.writerow(["" if row[c] is None else row[c] for c in FACE_COLUMNS])
            else:
                out.write(json.dumps(row) + "\n")
        out.flush()
    return result


def _row(path, face, status, box, det_score, s: ImageScore | None, model: dict) -> dict:
    row: dict = dict.fromkeys(FACE_COLUMNS)
    row.update(path=str(path), face=face, status=status, det_score=det_score, **model)
    if box is not None:
        row.update(box_x=int(box[0]), box_y=int(box[1]), box_w=int(box[2]), box_h=int(box[3]))
    if s is not None:
        row.update(score_columns(s))
    else:  # a photo in which no face was found
        row.update(outcome="unscorable", unscorable_reason="no_face")
    return row


def format_face_summary(result: FaceBatchResult) -> str:
    """Per folder: faces, then mean aMGS, % pain and review count over scorable faces only."""
    lines = [f"{'folder':<40} {'faces':>6} {'mean aMGS':>10} {'% pain':>7} {'review':>7} {'unscorable':>11}"]
    for folder, s in summarize_by_folder(result.scored).items():
        name = folder if len(folder) <= 40 else "..." + folder[-37:]
        mean = f"{s.mean_amgs:.3f}" if s.mean_amgs is not None else "-"
        pain = f"{100 * s.fraction_pain:.1f}%" if s.fraction_pain is not None else "-"
        lines.append(f"{name:<40} {s.n_total:>6} {mean:>10} {pain:>7} {s.n_review:>7} {s.n_unscorable:>11}")
    photos = len({p for p, _ in result.scored})
    lines.append(
        f"scored {len(result.scored)} face(s) in {photos} photo(s); {len(result.no_face)} photo(s) without a face; "
        f"skipped {len(result.failed)} unreadable"
    )
    for _path, why in result.failed[:20]:
        lines.append(f"  skipped: {why}")
    return "\n".join(lines)
