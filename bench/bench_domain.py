"""Which in-domain check? Mahalanobis (Lee 2018) in two covariance estimates, kNN (Sun 2022) and energy
(Liu 2020), on two of the model's own feature outputs, plus the max-softmax baseline: side by side.

Each method is fitted on training faces; its threshold is the ``--quantile`` of held-out in-domain faces
(seeds and animals never trained on); it is then judged on a second held-out set (``--test``: share of
faces it would wrongly call unscorable) and on control images (share it catches, and the ROC AUC of
controls vs held-out faces). Features come from the same int8 invoke that scores. The quality gate of
amgs.scoring is NOT applied here: this is the in-domain check alone.

    .venv/bin/python bench/bench_domain.py models/amgs_inceptionv3_synthetic.tflite \
        --train var/exp/train --heldout var/exp/hold --test var/exp/test --train-count 800 --controls 30

(var/exp/*: ``amgs.synth.dataset.write_dataset`` with the seeds given in docs/models.md.) Features are cached
under var/bench/features/ (the same cache `amgs model calibrate --cache` keeps), keyed by the model's sha256
and the image list, so a re-run only recomputes the table.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

import numpy as np

from amgs.models import metrics
from amgs.models.calibrate import FeatureSet, _sample, cached_features, model_features
from amgs.models.controls import make_controls
from amgs.models.data import labelled_items
from amgs.models.expose import FEATURES_OUTPUT, MID_OUTPUT
from amgs.models.indomain import fit_mahalanobis, ledoit_wolf
from amgs.runtime import Model

Score = Callable[[FeatureSet], np.ndarray]


def knn(fit: FeatureSet, output: str, k: int) -> Score:
    """k-th nearest neighbour cosine distance to the training features (Sun et al. 2022)."""

    def unit(a: np.ndarray) -> np.ndarray:
        return a / np.linalg.norm(a, axis=1, keepdims=True).clip(1e-6)

    bank = unit(fit.by_output[output])
    return lambda s: np.sort(1 - unit(s.by_output[output]) @ bank.T, axis=1)[:, k - 1]


def ppca(fit: FeatureSet, output: str, dims: int) -> Score:
    """The shipped method: shared covariance as probabilistic PCA (top axes + isotropic remainder)."""
    m = fit_mahalanobis(fit.by_output[output], fit.labels, dims)
    return lambda s: m.distance(s.by_output[output])


def pca_lw(fit: FeatureSet, output: str, dims: int) -> Score:
    """Mahalanobis on the top ``dims`` PCs only, shared covariance shrunk by Ledoit-Wolf (no remainder term)."""
    f, y = fit.by_output[output].astype(np.float64), fit.labels
    center = f.mean(axis=0)
    axes = np.linalg.svd(f - center, full_matrices=False)[2][:dims]
    z = (f - center) @ axes.T
    means = np.stack([z[y == c].mean(axis=0) for c in (0, 1)])
    precision = np.linalg.inv(ledoit_wolf(z - means[y])[0])

    def score(s: FeatureSet) -> np.ndarray:
        q = (s.by_output[output] - center) @ axes.T
        return np.min([np.einsum("ij,jk,ik->i", q - m, precision, q - m) for m in means], axis=0)

    return score


def energy(s: FeatureSet) -> np.ndarray:
    """Energy E = -logsumexp(logits) (Liu et al. 2020): higher = less like the training data."""
    return -np.logaddexp(s.logits[:, 0], s.logits[:, 1])


def max_softmax(s: FeatureSet) -> np.ndarray:
    return -1.0 / (1.0 + np.exp(-np.abs(s.log_odds)))


CACHE = Path(__file__).resolve().parents[1] / "var" / "bench" / "features"


def cached(
    cache: Path, model: Model, name: str, make: Callable[[], tuple[FeatureSet, np.ndarray]]
) -> tuple[FeatureSet, np.ndarray]:
    """(features, kinds) of one set, from the cache when this model already computed them."""
    path = cache / f"{model.manifest.sha256[:16]}_{name}.npz"
    if path.exists():
        d = np.load(path)
        outputs = {k[2:]: d[k] for k in d.files if k.startswith("o_")}
        return FeatureSet(outputs, d["logits"], d["labels"], []), d["kinds"]
    fs, kinds = make()
    cache.mkdir(parents=True, exist_ok=True)
    arrays = {f"o_{k}": v for k, v in fs.by_output.items()}
    np.savez(path, logits=fs.logits, labels=fs.labels, kinds=kinds, **arrays)
    return fs, kinds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model", type=Path)
    ap.add_argument("--train", type=Path, required=True)
    ap.add_argument("--heldout", type=Path, required=True)
    ap.add_argument("--test", type=Path, required=True)
    ap.add_argument(
        "--train-count", type=int, default=800, help="balanced sample, as amgs model calibrate takes"
    )
    ap.add_argument("--test-count", type=int, default=400)
    ap.add_argument("--controls", type=int, default=30, help="control images per kind (seed 1)")
    ap.add_argument("--quantile", type=float, default=0.99)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--cache", type=Path, default=CACHE, help="where computed features are kept")
    ap.add_argument(
        "--dims", default="8,32,64,96,128", help="principal axes counts to compare (comma-separated)"
    )
    args = ap.parse_args()

    model = Model(args.model, num_threads=args.threads)
    counts = {"train": args.train_count, "heldout": 10**9, "test": args.test_count}
    sets = {}
    for name, root in (("train", args.train), ("heldout", args.heldout), ("test", args.test)):
        items = _sample(labelled_items(root), counts[name], 0 if name == "train" else 1)
        sets[name] = cached_features(model, items, args.cache)  # the cache amgs model calibrate --cache keeps

    def make_c() -> tuple[FeatureSet, np.ndarray]:
        made = list(make_controls(args.controls, seed=1))
        return model_features(model, [c.pixels for c in made]), np.array([c.kind for c in made])

    controls, kinds = cached(args.cache, model, f"controls_s1_n{args.controls}", make_c)
    fit = sets["train"]
    methods: dict[str, Score] = {}
    for out, short in ((MID_OUTPUT, "mixed5 means"), (FEATURES_OUTPUT, "penultimate")):
        for k in (int(v) for v in args.dims.split(",")):
            methods[f"Mahalanobis PPCA-{k}, {short}"] = ppca(fit, out, k)
        methods[f"Mahalanobis PCA-32+LW, {short}"] = pca_lw(fit, out, 32)
        for k in (1, 10):
            methods[f"kNN k={k}, {short}"] = knn(fit, out, k)
    methods["energy (logits)"] = energy
    methods["max softmax"] = max_softmax
    print(
        f"fit {len(fit.labels)} training faces; threshold = {args.quantile} quantile of {len(sets['heldout'].labels)} "
        f"held-out faces; test {len(sets['test'].labels)} faces; {len(kinds)} controls (seed 1)\n"
    )
    print("| method | test faces unscorable | controls caught | AUROC controls vs held-out | missed kinds |")
    print("| --- | --- | --- | --- | --- |")
    for name, score in methods.items():
        held = score(sets["heldout"])
        t = np.quantile(held, args.quantile)
        c = score(controls)
        auc = metrics.roc_auc(np.r_[np.ones(len(c)), np.zeros(len(held))], np.r_[c, held])
        missed = ", ".join(
            f"{k} {int((c[kinds == k] <= t).sum())}"
            for k in dict.fromkeys(kinds)
            if (c[kinds == k] <= t).any()
        )
        print(
            f"| {name} | {100 * np.mean(score(sets['test']) > t):.2f} % | {100 * np.mean(c > t):.1f} % | {auc:.4f} | {missed or '-'} |"
        )


if __name__ == "__main__":
    main()
