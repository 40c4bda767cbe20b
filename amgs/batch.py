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

from amgs.preprocess import ImageError, iter_image_files
from amgs.scoring import ImageScore, Scorer, Summary, summarize_by_folder

log = logging.getLogger(__name__)

COLUMNS = ["path", "p_pain", "label", "amgs", "confidence", "needs_review", "mgs_au", "model_sha256"]


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
    sha = scorer.manifest.sha256
    writer = csv.writer(out) if fmt == "csv" else None
    if writer:
        writer.writerow(COLUMNS)
    for path, s in score_paths(scorer, paths, progress, workers):
        if isinstance(s, str):
            result.failed.append((path, s))
            log.warning("skipped %s", s)
            continue
        result.scored.append((path, s))
        row = {
            "path": str(path),
            "p_pain": s.p_pain,
            "label": s.label,
            "amgs": s.amgs,
            "confidence": s.confidence,
            "needs_review": s.needs_review,
            "mgs_au": s.mgs_au,
            "model_sha256": sha,
        }
        if writer:
            writer.writerow([row[c] if row[c] is not None else "" for c in COLUMNS])
        else:
            out.write(json.dumps({**row, "au": s.au}) + "\n")
        out.flush()
    return result


def format_summary(result: BatchResult) -> str:
    lines = [f"{'folder':<40} {'n':>6} {'mean aMGS':>10} {'SEM':>7} {'% pain':>7} {'review':>7}"]
    for folder, s in result.summaries().items():
        sem = f"{s.sem_amgs:.3f}" if s.sem_amgs is not None else "-"
        lines.append(
            f"{_short(folder):<40} {s.n:>6} {s.mean_amgs:>10.3f} {sem:>7} {100 * (s.fraction_pain or 0):>6.1f}% {s.n_review:>7}"
        )
    lines.append(f"scored {len(result.scored)} image(s); skipped {len(result.failed)} unreadable")
    for _path, why in result.failed[:20]:
        lines.append(f"  skipped: {why}")
    if len(result.failed) > 20:
        lines.append(f"  ... and {len(result.failed) - 20} more")
    return "\n".join(lines)


def _short(folder: str, width: int = 40) -> str:
    return folder if len(folder) <= width else "..." + folder[-(width - 3) :]
