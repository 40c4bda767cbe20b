"""Scoring benchmark: int8 vs float32 InceptionV3, LiteRT vs tflite-runtime, pipeline overhead on 1080p JPEGs.

Every figure is measured in this one run, pinned to one CPU core, with the configurations interleaved
round by round so that load from other processes hits all of them alike (this machine is shared).

    .venv/bin/python bench/bench_scoring.py                    # LiteRT only
    .venv/bin/python bench/bench_scoring.py --int8-only        # no TensorFlow: pipeline + in-domain check cost
    .venv/bin/python bench/bench_scoring.py --tflite-runtime-python /path/to/venv/bin/python

tflite-runtime 2.14 (its last release) needs numpy < 2 and has no wheels past Python 3.11, so it is measured
from a separate virtual environment when one is given (``python3 -m venv V && V/bin/pip install "numpy<2"
tflite-runtime==2.14.0 pillow``). The float32 model is built once with TensorFlow (the ``models`` extra)
and cached under var/bench/; weights do not change speed, so random weights are used.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / "var" / "bench"


def worker(args: argparse.Namespace) -> None:
    """Runs inside a subprocess pinned to one core: time invokes (and, with --pipeline, the whole path)."""
    import time

    import numpy as np

    os.sched_setaffinity(0, {args.core})
    if args.runtime == "litert":
        from ai_edge_litert.interpreter import Interpreter
    else:
        from tflite_runtime.interpreter import Interpreter
    interp = Interpreter(model_path=args.model, num_threads=args.threads)
    interp.allocate_tensors()
    inp = interp.get_input_details()[0]
    x = np.random.default_rng(0).integers(0, 255, inp["shape"], dtype=np.uint8)
    if inp["dtype"] == np.float32:
        x = x.astype(np.float32) / 127.5 - 1
    elif inp["dtype"] == np.int8:
        x = (x.astype(np.int16) - 128).astype(np.int8)
    for _ in range(2):
        interp.set_tensor(inp["index"], x)
        interp.invoke()
    times = []
    for _ in range(args.n):
        t0 = time.perf_counter()
        interp.set_tensor(inp["index"], x)
        interp.invoke()
        times.append((time.perf_counter() - t0) * 1000)
    result = {"invoke_ms": statistics.median(times)}
    if args.pipeline:
        result.update(_pipeline(args))
    print(json.dumps(result))


def _pipeline(args: argparse.Namespace) -> dict[str, float]:
    """decode + preprocess + invoke on 1080p JPEG bytes through the real Scorer, full frame and face box."""
    import io
    import time

    import numpy as np

    from amgs.preprocess import prepare
    from amgs.runtime import Model
    from amgs.synth.faces import render_scene, sample_params

    model = Model(args.int8_model, num_threads=args.threads)
    spec = model.manifest.input
    rng = np.random.default_rng(1)
    frames = []
    for _ in range(6):
        scene = render_scene(
            sample_params(rng, dict.fromkeys(("ot", "nb", "cb", "ep", "wc"), 1.0)),
            frame=(1920, 1080),
            face_px=int(rng.integers(350, 700)),
            rng=rng,
        )
        buf = io.BytesIO()
        scene.image.save(buf, "JPEG", quality=90)
        frames.append((buf.getvalue(), scene.face_box, np.asarray(scene.image)))
    out: dict[str, float] = {}
    for label, use_box, raw in (("frame", False, False), ("box", True, False), ("raw", True, True)):
        prep, inv = [], []
        for i in range(args.n):
            data, box, array = frames[i % len(frames)]
            t0 = time.perf_counter()
            x = prepare(array if raw else data, spec, box if use_box else None)
            t1 = time.perf_counter()
            model.run(x)
            t2 = time.perf_counter()
            prep.append((t1 - t0) * 1000)
            inv.append((t2 - t1) * 1000)
        out[f"{label}_prep_ms"] = statistics.median(prep)
        out[f"{label}_invoke_ms"] = statistics.median(inv)
    out["jpeg_kb"] = statistics.mean(len(f[0]) for f in frames) / 1024
    out.update(_domain_check_cost(model, frames, args.n))
    return out


def _domain_check_cost(model, frames, n: int) -> dict[str, float]:
    """The in-domain check's own per-image work beside the invoke: read and dequantize the features output,
    the Mahalanobis distance, the pixel quality gate; the calibration's sigmoid is included."""
    import time

    import numpy as np

    from amgs.domain import DomainScorer
    from amgs.preprocess import load_pixels, to_model_input
    from amgs.scoring import calibrated_p_pain, pixel_quality

    m = model.manifest
    if m.domain_check is None:
        return {}
    check = DomainScorer(m.domain_check)
    feats = next(info for name, info in model.outputs.items() if name == m.domain_check.output)
    scale, zero = feats.quantization or (1.0, 0)
    spec = m.input
    pixels = [load_pixels(f[2], (spec.width, spec.height), f[1]).pixels for f in frames]
    inv, extra = [], []
    for i in range(n):
        px = pixels[i % len(pixels)]
        x = to_model_input(px, spec)
        model.run(x)
        inv.append(model.last_invoke_ms)
        t0 = time.perf_counter()
        raw = model._interp.get_tensor(feats.index)[0]
        f = (raw.astype(np.float32) - zero) * scale
        d = check.distance(f)
        check.in_domain(d)
        pixel_quality(px)
        if m.calibration is not None:
            calibrated_p_pain(m.calibration, np.array([0.5, 0.5]), np.array([0.1, 0.2]))
        extra.append((time.perf_counter() - t0) * 1000)
    return {"check_invoke_ms": statistics.median(inv), "check_ms": statistics.median(extra)}


def throughput_worker(args: argparse.Namespace) -> None:
    """Batch ``amgs score`` throughput on JPEG files: ``--workers`` threads on the cores in ``--cores``."""
    import time

    from amgs.batch import score_paths
    from amgs.runtime import Model
    from amgs.scoring import Scorer

    os.sched_setaffinity(0, {int(c) for c in args.cores.split(",")})
    scorer = Scorer(Model(args.int8_model, num_threads=1))
    list(score_paths(scorer, [Path(args.images)], progress=False, workers=1))  # warm-up: caches, files
    # One call, as one `amgs score` run: the extra workers' interpreters are made inside the timed part.
    t0 = time.perf_counter()
    n = sum(
        1
        for _ in score_paths(scorer, [Path(args.images)] * args.repeat, progress=False, workers=args.workers)
    )
    print(json.dumps({"images_per_s": n / (time.perf_counter() - t0)}))


def jpeg_folder(n: int = 16) -> Path:
    """``n`` 1080p JPEG face photos (q90) for the throughput runs, written once under var/bench/."""
    folder = CACHE / f"jpeg1080_{n}"
    if len(list(folder.glob("*.jpg"))) == n:
        return folder
    import numpy as np

    from amgs.synth.faces import render_face, sample_params

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(5)
    for i in range(n):
        face = render_face(
            sample_params(rng, dict.fromkeys(("ot", "nb", "cb", "ep", "wc"), 1.0)), 1080, seed=i
        )
        face.resize((1920, 1080)).save(folder / f"face_{i:03d}.jpg", quality=90)
    return folder


def run_throughput(cores: str, workers: int, images: Path, int8_model: Path, repeat: int) -> float:
    cmd = [sys.executable, __file__, "--throughput", "--cores", cores, "--workers", str(workers)]
    cmd += ["--images", str(images), "--int8-model", str(int8_model), "--repeat", str(repeat)]
    out = subprocess.run(
        cmd, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)}, check=False
    )
    if out.returncode != 0:
        raise RuntimeError(f"throughput worker failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])["images_per_s"]


def float_model() -> Path:
    path = CACHE / "inceptionv3_299_float32.tflite"
    if path.exists():
        return path
    CACHE.mkdir(parents=True, exist_ok=True)
    from amgs.models.architecture import build_model
    from amgs.models.quantize import convert_float

    print("building the float32 InceptionV3 reference once (TensorFlow)...", file=sys.stderr)
    path.write_bytes(convert_float(build_model(299)))
    return path


def run_worker(
    python: str, runtime: str, model: Path, n: int, core: int, threads: int, pipeline: bool, int8_model: Path
) -> dict:
    cmd = [
        python,
        __file__,
        "--worker",
        "--runtime",
        runtime,
        "--model",
        str(model),
        "--n",
        str(n),
        "--core",
        str(core),
        "--threads",
        str(threads),
        "--int8-model",
        str(int8_model),
    ]
    if pipeline:
        cmd.append("--pipeline")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"{runtime} worker failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--runtime", default="litert")
    parser.add_argument("--model")
    parser.add_argument("--int8-model")
    parser.add_argument("--pipeline", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--n", type=int, default=20, help="invokes per configuration per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--core", type=int, default=0, help="the CPU core everything is pinned to")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--tflite-runtime-python", help="python of a venv with tflite-runtime (numpy < 2)")
    parser.add_argument(
        "--int8-only",
        action="store_true",
        help="only the shipped int8 model on LiteRT: pipeline overhead and the in-domain check's cost",
    )
    parser.add_argument("--throughput", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--cores", default="0", help=argparse.SUPPRESS)
    parser.add_argument("--workers", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--images", help=argparse.SUPPRESS)
    parser.add_argument("--repeat", type=int, default=4, help="passes over the 16 JPEGs per throughput run")
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return
    if args.throughput:
        throughput_worker(args)
        return

    from amgs.models import DEFAULT_MODEL

    int8 = DEFAULT_MODEL
    fp32 = None if args.int8_only else float_model()
    configs = [("litert", int8)] + ([] if fp32 is None else [("litert", fp32)])
    if args.tflite_runtime_python:
        configs += [("tflite_runtime", int8), ("tflite_runtime", fp32)]
    results: dict[tuple[str, str], list[float]] = {}
    pipe: list[dict] = []
    two_cores = len(os.sched_getaffinity(0)) >= 2
    batch_configs = [("0", 1), ("0", 2)] + ([("0,1", 2)] if two_cores else [])
    images = jpeg_folder()
    batch: dict[tuple[str, int], list[float]] = {}
    for r in range(args.rounds):
        for cores, workers in batch_configs:
            batch.setdefault((cores, workers), []).append(
                run_throughput(cores, workers, images, int8, args.repeat)
            )
        for runtime, model in configs:
            python = sys.executable if runtime == "litert" else args.tflite_runtime_python
            pipeline = runtime == "litert" and model == int8
            res = run_worker(python, runtime, model, args.n, args.core, args.threads, pipeline, int8)
            results.setdefault((runtime, "int8" if model == int8 else "float32"), []).append(res["invoke_ms"])
            if pipeline:
                pipe.append(res)
        print(f"round {r + 1}/{args.rounds} done", file=sys.stderr)

    med = {k: statistics.median(v) for k, v in results.items()}
    print(
        f"\nInceptionV3 299x299, 2 classes + 5 AU heads; {args.threads} thread(s) pinned to core {args.core}; "
        f"median of {args.rounds} rounds x {args.n} invokes"
    )
    print(f"{'runtime':<16}{'int8 ms':>10}{'float32 ms':>12}{'float/int8':>12}")
    for runtime in dict.fromkeys(k[0] for k in med):
        i8, f32 = med.get((runtime, "int8")), med.get((runtime, "float32"))
        if f32 is None:
            print(f"{runtime:<16}{i8:>10.1f}{'-':>12}{'-':>12}")
        else:
            print(f"{runtime:<16}{i8:>10.1f}{f32:>12.1f}{f32 / i8:>12.2f}")
    if ("tflite_runtime", "int8") in med:
        print(
            f"LiteRT speed-up over tflite-runtime 2.14 on int8: {med[('tflite_runtime', 'int8')] / med[('litert', 'int8')]:.2f}x"
        )
    else:
        print("tflite-runtime: not measured (pass --tflite-runtime-python; see the module docstring)")
    print(
        f"\nPipeline on 1080p frames, JPEG q90 ({statistics.mean(p['jpeg_kb'] for p in pipe):.0f} KB) through amgs.preprocess + Scorer model:"
    )
    for label, what in (
        ("frame", "JPEG whole frame -> 299"),
        ("box", "JPEG face box -> 299"),
        ("raw", "raw RGB frame, face box"),  # what the device does: camera frames arrive decoded
    ):
        prep = statistics.median(p[f"{label}_prep_ms"] for p in pipe)
        inv = statistics.median(p[f"{label}_invoke_ms"] for p in pipe)
        print(
            f"  {what:<26} decode+preprocess {prep:5.1f} ms, invoke {inv:5.1f} ms, "
            f"overhead ratio (decode+preprocess+invoke)/invoke = {(prep + inv) / inv:.3f}  (target <= 1.15)"
        )
    invoke = med[("litert", "int8")]
    print(
        f"\nBatch scoring throughput (amgs.batch.score_paths, 16 1080p JPEG q90 files x {args.repeat}, median of rounds):"
    )
    one = statistics.median(batch[("0", 1)])
    for (cores, workers), values in batch.items():
        ips = statistics.median(values)
        print(
            f"  cores {cores:<4} workers {workers}: {ips:5.1f} images/s  ({1000 / ips:5.1f} ms/image; "
            f"core-time per image / invoke = {len(cores.split(',')) * 1000 / ips / invoke:.2f}; "
            f"{ips / one:.2f}x one core, one worker)"
        )
    if not two_cores:
        print("  (one CPU visible: the 2-core configuration was not measured)")
    if "check_ms" in pipe[0]:
        inv = statistics.median(p["check_invoke_ms"] for p in pipe)
        check = statistics.median(p["check_ms"] for p in pipe)
        print(
            f"\nIn-domain check (features readout + Mahalanobis + quality gate + calibration) {check:.3f} ms "
            f"per image beside an invoke of {inv:.1f} ms: +{100 * check / inv:.2f} % (target <= 5 %)"
        )
    else:
        print("\nIn-domain check: the model has none (manifest without domain_check)")


if __name__ == "__main__":
    main()
