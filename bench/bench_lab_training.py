"""Time the lab-training path per image at a small scale, to extrapolate to a lab's ~1,000 photos.

Measures, on this machine: decoding + preprocessing to the training size, one epoch of the paper's
``head`` recipe (frozen backbone), one epoch of ``finetune`` (every layer), the held-out test pass, and
int8 quantization. The head recipe is timed on a random-init backbone saved as a notop file (the compute
is the same as with ImageNet weights, which cannot be downloaded here); its hash is injected for the run.
Prints seconds per image for each stage.

    python bench/bench_lab_training.py --n 64 --size 299
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=64, help="images in the lab folder")
    ap.add_argument("--size", type=int, default=299)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--quantize", action="store_true", help="also time int8 quantization")
    args = ap.parse_args()

    import keras
    from lab_helpers import make_lab_folder

    import amgs.models.weights as weights
    from amgs.models.data import load_arrays
    from amgs.models.train import TrainConfig, train

    tmp = Path(tempfile.mkdtemp(prefix="bench-lab-"))
    lab = make_lab_folder(tmp / "lab", args.n, size=args.size, n_animals=8)
    t = time.perf_counter()
    data = load_arrays(lab, args.size)
    decode = (time.perf_counter() - t) / len(data)
    notop = tmp / "random_notop.weights.h5"
    keras.applications.InceptionV3(include_top=False, weights=None, pooling="avg").save_weights(notop)
    digest = hashlib.md5(notop.read_bytes()).hexdigest()
    weights.keras_notop_hash = lambda: weights.KerasHash(digest, "md5", Path("bench"))
    rows = [("decode + preprocess", decode, len(data))]
    for recipe in ("head", "finetune"):
        lines: list[str] = []
        cfg = TrainConfig(
            size=args.size,
            recipe=recipe,
            weights=str(notop),
            epochs=1,
            batch_size=args.batch_size,
            bn_recalibration_batches=0,
            animal_from_name=r"^(CTC\d+)_",
            test_fraction=0.25,
            val_fraction=0.15,
        )
        t0 = time.perf_counter()
        r = train(lab, tmp / recipe, cfg, verbose=0, log_fn=lines.append)
        total = time.perf_counter() - t0
        epoch = next(float(m.rsplit("(", 1)[1].split(" s)")[0]) for m in lines if m.startswith("epoch 1:"))
        rows.append((f"{recipe}: one epoch (train + validation pass)", epoch, r.n_train))
        rows.append((f"{recipe}: whole run (load, build, epoch, save, test report)", total, args.n))
    if args.quantize:
        from amgs.models.package import package

        t0 = time.perf_counter()
        package(
            tmp / "head" / "model.keras",
            lab,
            tmp / "q.tflite",
            name="bench",
            version="0",
            training_data="bench",
            synthetic=True,
            size=args.size,
            calibration_count=16,
            edgetpu=False,
        )
        rows.append(("int8 quantization (16 calibration images)", time.perf_counter() - t0, 1))
    print(f"{args.n} images at {args.size} px, batch {args.batch_size}")
    for what, seconds, n in rows:
        print(f"{what:58s} {seconds:8.1f} s  ({seconds / n:.3f} s per image, n={n})")


if __name__ == "__main__":
    main()
