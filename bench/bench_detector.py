"""Face detector benchmark: its invoke next to the scorer's, and video scoring speed against real time.

    .venv/bin/python bench/bench_detector.py                # ~2-3 min on this machine
    .venv/bin/python bench/bench_detector.py --seconds 6 --rounds 1 --n 3   # tiny (the test suite)

1. Invoke cost, one thread pinned to core 0, detector and InceptionV3 interleaved round by round in
   fresh subprocesses (this machine is shared: load hits both alike). Target: detector <= 0.5x scorer.
2. ``amgs score`` on a SYNTHETIC 1080p 30 fps recording (written once under var/bench/): seconds of
   video per second of wall time, pinned to one core and to two cores. Target: >= 10x real time.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / "var" / "bench"


def invoke_worker(args: argparse.Namespace) -> None:
    import numpy as np

    os.sched_setaffinity(0, {0})
    from amgs.runtime import Model

    model = Model(args.model, num_threads=1)
    spec = model.manifest.input
    x = np.random.default_rng(0).integers(0, 255, (1, spec.height, spec.width, 3), dtype=np.uint8)
    for _ in range(3):
        model.run(x)
    times = []
    for _ in range(args.n):
        model.run(x)
        times.append(model.last_invoke_ms)
    print(json.dumps({"invoke_ms": statistics.median(times)}))


def video_worker(args: argparse.Namespace) -> None:
    os.sched_setaffinity(0, {int(c) for c in args.cores.split(",")})
    from amgs.batch_video import score_video
    from amgs.detect import FaceDetector
    from amgs.models import DEFAULT_DETECTOR, DEFAULT_MODEL
    from amgs.runtime import Model
    from amgs.scoring import Scorer

    scorer = Scorer(Model(DEFAULT_MODEL, num_threads=1))
    detector = FaceDetector(args.detector or DEFAULT_DETECTOR, num_threads=1, margin=0.1)
    t0 = time.perf_counter()
    result = score_video(Path(args.video), scorer, detector, window_s=args.window, progress=False)
    wall = time.perf_counter() - t0
    print(
        json.dumps(
            {
                "wall_s": wall,
                "video_s": result.info.duration_s,
                "windows": len(result.rows),
                "scored": len(result.scored),
            }
        )
    )


def video_file(seconds: float) -> Path:
    """A SYNTHETIC 1080p 30 fps recording: moving, still, blurred, away (written once)."""
    path = CACHE / f"cage_1080p30_{seconds:g}s.mp4"
    if path.exists():
        return path
    from amgs.synth.video import Segment, write_video

    print(f"rendering a {seconds:g} s 1080p 30 fps SYNTHETIC recording once...", file=sys.stderr)
    states = ["moving", "still", "blur", "away"]
    k = max(1, round(seconds / 5))
    segs = [Segment(seconds / k, [0.2, 1.7][i % 2], states[i % len(states)]) for i in range(k)]
    write_video(path, segs, fps=30, size=(1920, 1080), seed=7)
    return path


def _run(argv: list[str]) -> dict:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run(
        [sys.executable, __file__, *argv], capture_output=True, text=True, env=env, check=False
    )
    if out.returncode != 0:
        raise RuntimeError(f"worker {argv} failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=20, help="invokes per model per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=60.0, help="length of the 1080p test recording")
    parser.add_argument("--window", type=float, default=10.0)
    parser.add_argument("--invoke-worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--video-worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--model", help=argparse.SUPPRESS)
    parser.add_argument("--detector", help="a detector .tflite (default: the shipped one)")
    parser.add_argument("--video", help=argparse.SUPPRESS)
    parser.add_argument("--cores", default="0", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.invoke_worker:
        invoke_worker(args)
        return
    if args.video_worker:
        video_worker(args)
        return

    from amgs.manifest import read_manifest
    from amgs.models import DEFAULT_DETECTOR, DEFAULT_MODEL

    detector = Path(args.detector) if args.detector else DEFAULT_DETECTOR
    if not detector.is_file():
        raise SystemExit(f"no face detector at {detector}: pass --detector FILE (a kind: detector .tflite)")
    det_spec = read_manifest(detector.with_suffix(".manifest.json")).input
    video = video_file(args.seconds)
    two = len(os.sched_getaffinity(0)) >= 2
    inv: dict[str, list[float]] = {"detector": [], "scorer": []}
    vid: dict[str, list[dict]] = {"0": []} | ({"0,1": []} if two else {})
    for r in range(args.rounds):
        for name, path in (("detector", detector), ("scorer", DEFAULT_MODEL)):
            inv[name].append(_run(["--invoke-worker", "--model", str(path), "--n", str(args.n)])["invoke_ms"])
        for cores in vid:
            vid[cores].append(
                _run(
                    ["--video-worker", "--video", str(video), "--cores", cores, "--window", str(args.window)]
                    + ["--detector", str(detector)]
                )
            )
        print(f"round {r + 1}/{args.rounds} done", file=sys.stderr)
    d, s = statistics.median(inv["detector"]), statistics.median(inv["scorer"])
    print(f"\nInvoke, 1 thread pinned to core 0, median of {args.rounds} rounds x {args.n}:")
    print(f"  face detector {det_spec.width}x{det_spec.height} int8   {d:6.1f} ms")
    print(f"  InceptionV3 299x299 int8        {s:6.1f} ms")
    print(f"  detector / scorer = {d / s:.2f}  (target <= 0.5)")
    print(f"\namgs score on {video.name} ({args.window:g} s windows, 5 samples each, detector + scorer):")
    for cores, runs in vid.items():
        wall = statistics.median(r["wall_s"] for r in runs)
        v = runs[0]
        print(
            f"  cores {cores:<4}: {v['video_s']:.0f} s of video in {wall:.2f} s = {v['video_s'] / wall:.1f}x real time "
            f"(target >= 10x); {v['windows']} windows, {v['scored']} scored"
        )


if __name__ == "__main__":
    main()
