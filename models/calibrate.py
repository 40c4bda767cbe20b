"""``amgs model calibrate``: give a packaged model its in-domain check and its temperature.

1. If the ``.tflite`` does not yet expose ``features``, ``features_mixed5`` and ``logits`` (models packaged
   before this step), they are added to its outputs (:mod:`amgs.models.expose`; weights and existing outputs unchanged) and the
   manifest's outputs and sha256 are updated; its earlier evaluations stay, marked in ``notes``.
2. Features of training faces (``fit``) give the in-domain statistics; held-out faces of animals never
   trained on (``heldout``) give the threshold (their ``quantile``) and the temperature.

Both sets go through the one preprocessing path and the same int8 invoke that scores on the device.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from amgs.datasets import Item
from amgs.manifest import Calibration, Manifest, manifest_path_for, read_manifest, sha256_file
from amgs.models import metrics
from amgs.models.data import labelled_items
from amgs.models.expose import MID_OUTPUT, OUTPUTS
from amgs.models.indomain import DEFAULT_DIMS, DEFAULT_QUANTILE, fit_check
from amgs.models.temperature import apply, fit_temperature
from amgs.preprocess import ImageError, load_pixels, to_model_input
from amgs.runtime import Model

log = logging.getLogger(__name__)


@dataclass
class FeatureSet:
    by_output: dict[str, np.ndarray]  # every features output: N x d each
    logits: np.ndarray  # N x 2 (no pain, pain)
    labels: np.ndarray  # N: 1 pain, 0 no pain, -1 unlabelled
    paths: list[str]

    @property
    def features(self) -> np.ndarray:
        """The features the in-domain check reads (:data:`amgs.models.expose.MID_OUTPUT`)."""
        return self.by_output[MID_OUTPUT]

    @property
    def log_odds(self) -> np.ndarray:
        """Pain logit minus no-pain logit: what temperature scaling divides."""
        return self.logits[:, 1] - self.logits[:, 0]


def model_features(model: Model, sources: Sequence[Any], progress: bool = False) -> FeatureSet:
    """Every features output and the logits of images (paths, uint8 arrays, or Items with a box)."""
    m = model.manifest
    feats = [o.name for o in m.outputs if o.kind == "features"]
    logits = m.output_of_kind("logits")
    if MID_OUTPUT not in feats or logits is None:
        raise ValueError(
            f"{model.path.name} lacks the {MID_OUTPUT}/logits outputs: run `amgs model calibrate` on it"
        )
    spec = m.input
    rows: dict[str, list[np.ndarray]] = {name: [] for name in feats}
    odds, labels, paths = [], [], []
    iterator: Any = sources
    if progress:
        from tqdm import tqdm

        iterator = tqdm(sources, unit="img", desc="features")
    for src in iterator:
        path, box, label = (src.path, src.box, src.label) if isinstance(src, Item) else (src, None, -1)
        try:
            pixels = load_pixels(path, (spec.width, spec.height), box).pixels
        except ImageError as e:
            log.warning("skipped %s", e)
            continue
        out = model.run(to_model_input(pixels, spec))
        for name in feats:
            rows[name].append(out[name])
        odds.append(out[logits.name])
        labels.append(-1 if label is None else int(label))
        paths.append(str(path) if not isinstance(path, np.ndarray) else "<array>")
    return FeatureSet(
        {name: np.array(v, np.float32).reshape(len(v), -1) for name, v in rows.items()},
        np.array(odds, np.float64).reshape(len(odds), 2),
        np.array(labels),
        paths,
    )


def cached_features(
    model: Model, items: Sequence[Item], cache: Path | None, progress: bool = False
) -> FeatureSet:
    """:func:`model_features` of ``items``, kept in ``cache`` (npz keyed by the model's sha256 and the image
    list), so re-fitting with other --dims or --quantile does not run the model again."""
    if cache is None:
        return model_features(model, items, progress)
    key = hashlib.sha1("\n".join(str(Path(it.path).resolve()) for it in items).encode()).hexdigest()[:16]
    path = Path(cache) / f"{model.manifest.sha256[:16]}_{key}.npz"
    if path.exists():
        d = np.load(path)
        outputs = {k[2:]: d[k] for k in d.files if k.startswith("o_")}
        return FeatureSet(outputs, d["logits"], d["labels"], [str(it.path) for it in items])
    fs = model_features(model, items, progress)
    if len(fs.labels) == len(items):  # nothing skipped: the cache maps one to one onto the list
        Path(cache).mkdir(parents=True, exist_ok=True)
        arrays = {f"o_{k}": v for k, v in fs.by_output.items()}
        np.savez(path, logits=fs.logits, labels=fs.labels, **arrays)
    return fs


def ensure_exposed(model_path: Path) -> bool:
    """Add the :data:`~amgs.models.expose.OUTPUTS` to an older model in place (and to its manifest);
    True if changed."""
    from amgs.models.expose import expose_outputs
    from amgs.models.quantize import describe_tflite

    mpath = manifest_path_for(model_path)
    manifest = read_manifest(mpath)
    if set(OUTPUTS) <= {o.name for o in manifest.outputs}:
        return False
    old_sha = manifest.sha256
    if not expose_outputs(model_path, model_path):
        log.info("%s already exposes its features; only the manifest is updated", model_path.name)
    _, outputs = describe_tflite(model_path)
    note = (
        f"{', '.join(OUTPUTS)} outputs added to the graph of sha256 {old_sha[:16]}... (no retraining; weights "
        "and the pain/au outputs unchanged bit for bit): earlier evaluations describe the same network"
    )
    updated = manifest.model_copy(
        update={
            "outputs": outputs,
            "sha256": sha256_file(model_path),
            "notes": "; ".join(filter(None, [manifest.notes, note])),
        }
    )
    mpath.write_text(updated.to_json())
    return True


def split_items(
    train_root: Path,
    heldout_root: Path | None,
    val_animals: Sequence[str],
    animal_from_name: str | None = None,
) -> tuple[list[Item], list[Item], str]:
    """(fit items, held-out items, how the held-out set was chosen). ``animal_from_name``: the regex the
    training run took animal ids from (`amgs model train --animal-from-name`), for images animals.csv lacks."""
    items = labelled_items(train_root)
    if heldout_root is not None:
        return items, labelled_items(heldout_root), f"{heldout_root}"
    if animal_from_name:
        from amgs.models.split import animals_from_names

        rel = [str(it.path.relative_to(train_root)) for it in items]
        ids, _ = animals_from_names(rel, [it.animal_id or "" for it in items], animal_from_name)
        for it, a in zip(items, ids, strict=True):
            it.animal_id = it.animal_id or (str(a) or None)
    held = [it for it in items if it.animal_id and it.animal_id in set(val_animals)]
    if not held:
        raise ValueError(
            f"no held-out faces: {train_root} has no images of the training run's validation animals. "
            "Give --heldout DIR: labelled faces of animals the model never trained on."
        )
    fit = [it for it in items if it not in held]
    return fit, held, f"{train_root}, validation animals {', '.join(sorted(set(val_animals)))}"


def _sample(items: list[Item], count: int, seed: int) -> list[Item]:
    """Up to ``count`` items, balanced over the two classes, in a seeded random order."""
    rng = np.random.default_rng(seed)
    out: list[Item] = []
    for c in (0, 1):
        group = [it for it in items if it.label == c]
        take = min(len(group), max(1, count // 2))
        out += [group[i] for i in sorted(rng.choice(len(group), take, replace=False))] if group else []
    return out


@dataclass
class Calibrated:
    manifest: Manifest
    exposed: bool
    heldout_distances: np.ndarray
    ece_before: float
    ece_after: float


def calibrate(
    model_path: Path,
    train_root: Path,
    heldout_root: Path | None = None,
    *,
    val_animals: Sequence[str] = (),
    animal_from_name: str | None = None,
    fit_count: int = 1500,
    heldout_count: int = 1000,
    dims: int = DEFAULT_DIMS,
    quantile: float = DEFAULT_QUANTILE,
    threads: int = 1,
    progress: bool = False,
    seed: int = 0,
    cache: Path | None = None,
) -> Calibrated:
    """Fit and write the model's in-domain check and temperature (see module docstring)."""
    model_path = Path(model_path)
    exposed = ensure_exposed(model_path)
    fit_items, held_items, held_desc = split_items(
        Path(train_root), heldout_root, val_animals, animal_from_name
    )
    fit_items, held_items = _sample(fit_items, fit_count, seed), _sample(held_items, heldout_count, seed + 1)
    model = Model(model_path, num_threads=threads)
    fit = cached_features(model, fit_items, cache, progress)
    held = cached_features(model, held_items, cache, progress)
    check, distances = fit_check(
        fit.features,
        fit.labels,
        held.features,
        fitted_on=f"{train_root}: {len(fit.labels)} labelled faces (balanced sample, seed {seed})",
        heldout=f"{held_desc}: {len(held.labels)} faces",
        dims=dims,
        quantile=quantile,
        output=MID_OUTPUT,
    )
    temperature = fit_temperature(held.log_odds, held.labels)
    before = metrics.reliability(held.labels, apply(held.log_odds, 1.0)).ece
    after = metrics.reliability(held.labels, apply(held.log_odds, temperature)).ece
    calibration = Calibration(
        temperature=round(temperature, 4),
        source="logits",
        fitted_on=check.heldout,
        n=len(held.labels),
        ece_before=round(float(before), 4),
        ece_after=round(float(after), 4),
    )
    mpath = manifest_path_for(model_path)
    manifest = read_manifest(mpath).model_copy(update={"domain_check": check, "calibration": calibration})
    mpath.write_text(manifest.to_json())
    read_manifest(mpath)  # the written manifest must load (shapes checked against the outputs)
    return Calibrated(manifest, exposed, distances, float(before), float(after))


def val_animals_of(train_dir: Path | None) -> list[str]:
    """The validation animals a training run recorded in its train.json (none when there is no record)."""
    if train_dir is None or not (Path(train_dir) / "train.json").exists():
        return []
    return list(json.loads((Path(train_dir) / "train.json").read_text()).get("val_animals", []))
