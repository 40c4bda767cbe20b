"""What shadow scoring costs on the device: one selected face scored by the active model alone, and by the
active model plus a candidate (both int8 InceptionV3 at 299 px, one thread), interleaved in one run.

    python bench/bench_shadow.py --n 40
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=40)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()

    from lab_helpers import variant_of

    from amgs.models import DEFAULT_MODEL
    from amgs.preprocess import to_model_input
    from amgs.runtime import Model
    from amgs.scoring import Scorer

    active = Scorer(Model(DEFAULT_MODEL, num_threads=args.threads))
    candidate = Scorer(
        Model(variant_of(DEFAULT_MODEL, Path(tempfile.mkdtemp()), "bench"), num_threads=args.threads)
    )
    rng = np.random.default_rng(0)
    spec = active.manifest.input
    faces = [rng.integers(0, 256, (spec.height, spec.width, 3), dtype=np.uint8) for _ in range(8)]
    one, both = [], []
    for i in range(args.n):
        x = to_model_input(faces[i % len(faces)], spec)
        t = time.perf_counter()
        active.score_input(x)
        one.append(time.perf_counter() - t)
        t = time.perf_counter()
        active.score_input(x)
        candidate.score_input(to_model_input(faces[i % len(faces)], candidate.manifest.input))
        both.append(time.perf_counter() - t)
    a, b = statistics.median(one) * 1000, statistics.median(both) * 1000
    print(f"{args.n} faces, {args.threads} thread(s), int8 299 px")
    print(f"active only:          {a:7.1f} ms per face (median)")
    print(f"active + candidate:   {b:7.1f} ms per face (median)   ratio {b / a:.2f}")


if __name__ == "__main__":
    main()
