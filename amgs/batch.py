"""Batch scoring of image files and folders: the original aMGS job, done right (``amgs score``)."""

from __future__ import annotations

import csv
import json
import logging
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from tqdm import tqdm

from amgs.manifest import Manifest
from amgs.preprocess import ImageError, iter_image_files
from amgs.scoring import UNSCORABLE_REASONS, ImageScore, Scorer, Summary, summarize_by_folder

log = logging.getLogger(__name__)

# outcome: "pain" | "no pain" | "unscorable" (amgs.scoring.OUTCOMES); unscorable_reason: why, else empty.
# p_pain/label are the model's raw verdict, kept even for unscorable images; use outcome for decisions.
SCORE_COLUMNS = [
    "outcome",
    "unscorable_reason",
    "p_pain",
    "label",
    "amgs",
    "confidence",
    "needs_review",
    "mgs_au",
    "domain_distance",
]
MODEL_COLUMNS = ["model", "model_version", "synthetic", "model_sha256"]
"""Every row of every ``amgs score`` output says which model made it and whether it is synthetic."""
COLUMNS = ["path", *SCORE_COLUMNS, *MODEL_COLUMNS]


def model_columns(m: Manifest) -> dict:
    return {"model": m.name, "model_version": m.version, "synthetic": m.synthetic, "model_sha256": m.sha256}


def score_columns(s: ImageScore) -> dict:
    return {c: getattr(s, c) for c in SCORE_COLUMNS}


def model_banner(m: Manifest) -> list[str]:
    """What a user must know about the model before reading any score (printed before the progress bar)."""
    lines = [f"model {m.name} {m.version} (sha256 {m.sha256[:12]}...)"]
    if m.synthetic:
        lines.append(
            "WARNING: this model was trained on SYNTHETIC faces: a demonstration, not validated on real mice. "
            "Do not base welfare or scientific decisions on its scores."
        )
    if m.domain_check is None:
        lines.append(
            "no in-domain check: images unlike the training faces are scored anyway "
            "(add one with `amgs model calibrate`)"
        )
    return lines


@dataclass
class BatchResult:
    scored: list[tuple[Path, ImageScore]] = field(default_factory=list)
    failed: list[tuple[Path, str]] = field(default_factory=list)

    def summaries(self) -> dict[str, Summary]:
        return summarize_by_folder(self.scored)


def score_paths(
    scorer: Scorer, paths: list[Path], progress: bool = True, workers: int = 1
) -> Iterator[tuple[Path, ImageScore | str]]:
    """Yield (path, score) or (path, error message) for every image under ``paths``; never raises on bad images.

    ``workers`` > 1 scores on that many threads, each with its own interpreter (``amgs.parallel``);
    the order of the results is the order of the files either way."""
    from amgs.parallel import ScorerPool, ordered_map

    files = iter_image_files(paths)
    pool = ScorerPool(scorer)

    def one(f: Path) -> tuple[Path, ImageScore | str]:
        try:
            return f, pool.get().score(f)
        except ImageError as e:
            return f, str(e)

    bar = tqdm(total=len(files), unit="img", disable=not progress, file=sys.stderr, dynamic_ncols=True)
    with bar:
        for item in ordered_map(one, files, workers):
            bar.update(1)
            yield item


def run_batch(
    scorer: Scorer,
    paths: list[Path],
    out: IO[str],
    fmt: str = "csv",
    progress: bool = True,
    workers: int = 1,
) -> BatchResult:
    result = BatchResult()
    model_cols = model_columns(scorer.manifest)
    writer = csv.writer(out) if fmt == "csv" else None
    if writer:
        writer.writerow(COLUMNS)
    for path, s in score_paths(scorer, paths, progress, workers):
        if isinstance(s, str):
            result.failed.append((path, s))
            log.warning("skipped %s", s)
            continue
        result.scored.append((path, s))
        row = {"path": str(path), **score_columns(s), **model_cols}
        if writer:
            writer.writerow([row[c] if row[c] is not None else "" for c in COLUMNS])
        else:
            out.write(json.dumps({**row, "au": s.au}) + "\n")
        out.flush()
    return result


def format_summary(result: BatchResult) -> str:
    """Per folder: scorable n, mean aMGS, SEM, % pain, review count (all over scorable images only),
    then the unscorable count beside them."""
    lines = [
        f"{'folder':<40} {'n':>6} {'mean aMGS':>10} {'SEM':>7} {'% pain':>7} {'review':>7} {'unscorable':>11}"
    ]
    for folder, s in result.summaries().items():
        mean = f"{s.mean_amgs:.3f}" if s.mean_amgs is not None else "-"
        sem = f"{s.sem_amgs:.3f}" if s.sem_amgs is not None else "-"
        pain = f"{100 * s.fraction_pain:.1f}%" if s.fraction_pain is not None else "-"
        lines.append(
            f"{_short(folder):<40} {s.n:>6} {mean:>10} {sem:>7} {pain:>7} {s.n_review:>7} {s.n_unscorable:>11}"
        )
    n_unscorable = sum(not s.scorable for _, s in result.scored)
    reasons = {r: sum(s.unscorable_reason == r for _, s in result.scored) for r in UNSCORABLE_REASONS}
    why = ", ".join(f"{k} {v}" for k, v in reasons.items() if v)
    lines.append(
        f"scored {len(result.scored) - n_unscorable} image(s); unscorable {n_unscorable}"
        + (f" ({why})" if why else "")
        + f"; skipped {len(result.failed)} unreadable"
    )
    for _path, why in result.failed[:20]:
        lines.append(f"  skipped: {why}")
    if len(result.failed) > 20:
        lines.append(f"  ... and {len(result.failed) - 20} more")
    return "\n".join(lines)


def _short(folder: str, width: int = 40) -> str:
    return folder if len(folder) <= width else "..." + folder[-(width - 3) :]
