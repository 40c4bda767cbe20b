"""Train an aMGS model: Keras InceptionV3, pain softmax, optional five action-unit heads.

Two recipes:

- ``head`` (the paper's, Tuttle et al. 2018 after TensorFlow's retrain.py): the backbone is frozen
  (normally ImageNet weights) and only the new softmax (and AU heads) learn. Fast; needs good weights.
- ``finetune``: every layer learns. Needed from random weights (no ImageNet download possible here).

What was learned training from random weights on two CPU cores (see docs/models.md): batch-norm moving
statistics lag the weights when steps are few (Keras' default momentum 0.99), so held-out accuracy sits
at chance while training accuracy climbs. Hence a lower BN momentum during training and a "precise BN"
pass after it (:func:`recalibrate_batch_norm`), the AU heads as auxiliary targets, and a cosine-decayed
learning rate. Training is resumable: rerun the same command and it continues from the last epoch.
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from amgs.manifest import InputSpec
from amgs.models.architecture import AU_OUTPUT, PAIN_OUTPUT, build_model
from amgs.models.data import ArraySet, load_arrays

log = logging.getLogger(__name__)

INPUT_MEAN = float(InputSpec.model_fields["mean"].default)
INPUT_STD = float(InputSpec.model_fields["std"].default)


@dataclass
class TrainConfig:
    size: int = 299
    recipe: Literal["head", "finetune"] = "finetune"
    weights: str = (
        "imagenet"  # "imagenet", "none", or a weights file (.weights.h5 / .keras / Keras notop .h5)
    )
    epochs: int = 10
    steps_per_epoch: int | None = None  # None: one pass over the training images
    batch_size: int = 32
    learning_rate: float = 1e-3
    final_lr_fraction: float = 0.02
    warmup_steps: int = 100
    au_heads: bool = True
    au_loss_weight: float = 1.0
    bn_momentum: float = 0.9
    bn_recalibration_batches: int = 20
    augment: bool = True
    crop_fraction: float = 0.10  # random crop removes up to this share of each side length
    brightness: float = 0.10  # +- share of full scale
    contrast: float = 0.15  # contrast factor in 1 +- this
    val_fraction: float = 0.15
    test_fraction: float = 0.15  # held-out test part (by animal), evaluated at the end; 0 = none
    animal_from_name: str | None = None  # regex over file names giving the animal id (animals.csv wins)
    pain_cutoff: float = 1.0  # images with AU scores only: pain when mean human MGS >= this
    validate_every: int = 1  # epochs between validation passes in training (the final check always runs)
    seed: int = 0
    time_budget_s: float | None = None  # stop after the epoch that exceeds it, then finish as usual
    dropout: float = 0.2
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class TrainResult:
    model_path: Path  # full Keras model (.keras), the input of `amgs model quantize`
    weights_path: Path  # weights only, for --weights in a later run (e.g. a 299 px finish)
    history: dict[str, list[float]]
    validation: dict[str, float]
    n_train: int
    n_val: int
    val_animals: list[str]
    n_test: int = 0
    split_by: str = "animal"
    test_report: Path | None = None
    test_figures: dict[str, Any] = field(default_factory=dict)


HEAD_ON_RANDOM = (
    "--recipe head with --weights none trains only the new head on a frozen RANDOM backbone: its features "
    "mean nothing and the model cannot learn faces. Use --weights imagenet (on an offline machine first "
    "`amgs model weights import inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5`), or train "
    "every layer with --recipe finetune (needs thousands of images and hours on a CPU)."
)


def resolve_recipe(recipe: str, weights: str) -> str:
    """``auto``: the paper's ``head`` recipe on ImageNet weights, ``finetune`` from random weights or
    when continuing from a whole aMGS model file."""
    if recipe != "auto":
        return recipe
    if weights == "imagenet":
        return "head"
    if weights not in ("none", "") and Path(weights).is_file():
        from amgs.models.weights import matches_notop

        if matches_notop(Path(weights)):
            return "head"
    return "finetune"


def check_config(cfg: TrainConfig) -> None:
    """Refuse settings that cannot give a useful model, before loading any image."""
    if cfg.recipe == "head" and cfg.weights == "none":
        raise ValueError(HEAD_ON_RANDOM)
    if not 0 <= cfg.test_fraction < 0.9 or cfg.val_fraction + cfg.test_fraction >= 0.95:
        raise ValueError(
            f"val_fraction {cfg.val_fraction} + test_fraction {cfg.test_fraction} leave too little to train on"
        )


def masked_mse(y_true: Any, y_pred: Any) -> Any:
    """Mean squared error over the action units that were scored (NaN = not scored by any rater)."""
    from keras import ops

    mask = ops.isfinite(y_true)
    diff = ops.where(mask, y_pred - ops.where(mask, y_true, 0.0), 0.0)
    n = ops.maximum(ops.sum(ops.cast(mask, "float32"), axis=-1), 1.0)
    return ops.sum(diff * diff, axis=-1) / n


def build_for_training(cfg: TrainConfig) -> Any:
    """The network with weights per ``cfg.weights`` and BN momentum per ``cfg.bn_momentum``."""
    import keras

    from amgs.models.weights import WeightsError, check_notop

    freeze = cfg.recipe == "head"
    file = None if cfg.weights in ("none", "imagenet") else Path(cfg.weights)
    if file is not None and not file.is_file():
        raise FileNotFoundError(f"--weights {file}: no such file (give imagenet, none, or a weights file)")
    backbone_weights = "imagenet" if cfg.weights == "imagenet" else None
    notop_error = None
    if file is not None:
        try:  # Keras' ImageNet notop weights copied to this machine: checked by Keras' own hash
            check_notop(file)
            backbone_weights = str(file)
            file = None
        except WeightsError as e:
            notop_error = e
    try:
        model = build_model(
            cfg.size,
            weights=backbone_weights,
            au_heads=cfg.au_heads,
            dropout=cfg.dropout,
            freeze_backbone=freeze,
        )
    except Exception as e:  # noqa: BLE001 - Keras' download raises a bare Exception when offline
        if backbone_weights != "imagenet":
            raise
        raise ValueError(
            f"--weights imagenet: Keras could not fetch the ImageNet weights ({e}). On an offline machine, copy "
            "inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5 from a machine that has run Keras once "
            "(~/.keras/models/) and run `amgs model weights import FILE` (it checks Keras' hash and puts it "
            "where Keras looks); --weights imagenet then works offline."
        ) from None
    if file is not None:
        try:
            model.load_weights(file)  # a whole aMGS model saved by this tool (any input size)
        except (ValueError, KeyError, OSError) as whole_error:
            raise ValueError(
                f"--weights {file}: not a whole aMGS model saved by `amgs model train` ({whole_error}), and "
                f"not Keras' ImageNet notop weights either: {notop_error}"
            ) from None
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = cfg.bn_momentum
    return model


def _lr_schedule(cfg: TrainConfig, total_steps: int) -> Any:
    import keras

    warmup = min(cfg.warmup_steps, max(total_steps // 10, 1))
    return keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=cfg.learning_rate * 0.1,
        decay_steps=max(total_steps - warmup, 1),
        alpha=cfg.final_lr_fraction,
        warmup_target=cfg.learning_rate,
        warmup_steps=warmup,
    )


def compile_model(model: Any, cfg: TrainConfig, total_steps: int) -> None:
    import keras

    losses: dict[str, Any] = {PAIN_OUTPUT: keras.losses.SparseCategoricalCrossentropy()}
    weights = {PAIN_OUTPUT: 1.0}
    if cfg.au_heads:
        losses[AU_OUTPUT] = masked_mse
        weights[AU_OUTPUT] = cfg.au_loss_weight
    model.compile(
        optimizer=keras.optimizers.Adam(_lr_schedule(cfg, total_steps)),
        loss=losses,
        loss_weights=weights,
        metrics={PAIN_OUTPUT: [keras.metrics.SparseCategoricalAccuracy(name="acc")]},
    )


def _targets(data: ArraySet, au_heads: bool) -> dict[str, np.ndarray]:
    y = {PAIN_OUTPUT: data.labels.astype(np.int32)}
    if au_heads:
        y[AU_OUTPUT] = data.au.astype(np.float32)
    return y


def make_dataset(data: ArraySet, cfg: TrainConfig, *, training: bool) -> Any:
    """tf.data pipeline: uint8 pixels from amgs.preprocess -> (augmented) float in the model's normalization."""
    import tensorflow as tf

    size = cfg.size
    ds = tf.data.Dataset.from_tensor_slices((data.pixels, _targets(data, cfg.au_heads)))

    def normalize(img: Any) -> Any:
        # The same float32 formula as amgs.preprocess.to_float (bit-identical for unaugmented pixels).
        return (tf.cast(img, tf.float32) - INPUT_MEAN) / INPUT_STD

    def augment(img: Any, y: Any) -> Any:
        img = tf.cast(img, tf.float32)
        side = tf.cast(tf.round(size * tf.random.uniform([], 1.0 - cfg.crop_fraction, 1.0)), tf.int32)
        img = tf.image.random_crop(img, tf.stack([side, side, 3]))
        img = tf.image.resize(img, [size, size], method="bilinear")
        img = tf.image.random_flip_left_right(img)
        img = tf.image.random_brightness(img, cfg.brightness * 255.0)
        img = tf.image.random_contrast(img, 1.0 - cfg.contrast, 1.0 + cfg.contrast)
        return normalize(tf.clip_by_value(img, 0.0, 255.0)), y

    if training:
        ds = ds.shuffle(min(len(data), 4096), seed=cfg.seed, reshuffle_each_iteration=True).repeat()
        if cfg.augment:
            ds = ds.map(augment, num_parallel_calls=tf.data.AUTOTUNE)
        else:
            ds = ds.map(lambda x, y: (normalize(x), y), num_parallel_calls=tf.data.AUTOTUNE)
        ds = ds.batch(cfg.batch_size, drop_remainder=True)
    else:
        ds = ds.map(lambda x, y: (normalize(x), y)).batch(cfg.batch_size)
    return ds.prefetch(2)


def recalibrate_batch_norm(model: Any, pixels: np.ndarray, batches: int, batch_size: int = 32) -> int:
    """ "Precise BN": replace each trainable BN layer's moving mean/variance by the average of batch
    statistics over ``batches`` training batches (forward passes in training mode, no weight updates).

    Moving averages lag when training is short; this makes inference use the statistics of the final
    weights. Returns the number of batches used.
    """
    import keras
    import tensorflow as tf

    bns = [
        layer
        for layer in model.layers
        if isinstance(layer, keras.layers.BatchNormalization) and layer.trainable
    ]
    if not bns or batches <= 0:
        return 0
    saved = [layer.momentum for layer in bns]
    rng = np.random.default_rng(0)
    order = rng.permutation(len(pixels))
    used = 0
    try:
        for i in range(batches):
            idx = order[i * batch_size : (i + 1) * batch_size]
            if len(idx) < 2:
                break
            for layer in bns:
                layer.momentum = i / (i + 1)  # running average: batch i weighs 1/(i+1)
            x = (tf.cast(pixels[idx], tf.float32) - INPUT_MEAN) / INPUT_STD
            model(x, training=True)
            used += 1
    finally:
        for layer, m in zip(bns, saved, strict=True):
            layer.momentum = m
    return used


def predict_arrays(model: Any, pixels: np.ndarray, size: int, batch_size: int = 32) -> dict[str, np.ndarray]:
    """Float model outputs for uint8 pixels, normalized exactly as amgs.preprocess.to_float does."""
    import tensorflow as tf

    outs: dict[str, list[np.ndarray]] = {}
    for i in range(0, len(pixels), batch_size):
        x = (tf.cast(pixels[i : i + batch_size], tf.float32) - INPUT_MEAN) / INPUT_STD
        for k, v in model(x, training=False).items():
            outs.setdefault(k, []).append(np.asarray(v))
    return {k: np.concatenate(v) for k, v in outs.items()}


class _TimeBudget:
    """Stop training at the end of the first epoch that ends past the budget (the run then finishes
    normally: BN recalibration, held-out check, saved model)."""

    def __new__(cls, seconds: float, log_fn: Any) -> Any:
        import keras

        class TimeBudget(keras.callbacks.Callback):
            def on_train_begin(self, logs: Any = None) -> None:
                self._t0 = time.monotonic()

            def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
                if time.monotonic() - self._t0 > seconds:
                    log_fn(f"time budget of {seconds:.0f} s used: stopping after epoch {epoch + 1}")
                    self.model.stop_training = True

        return TimeBudget()


class _EpochLog:
    """One log line per epoch (for background runs); Keras' progress bar covers interactive runs."""

    def __new__(cls, log_fn: Any) -> Any:
        import keras

        class EpochLog(keras.callbacks.Callback):
            def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
                self._t0 = time.monotonic()

            def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
                figures = " ".join(f"{k}={v:.4f}" for k, v in sorted((logs or {}).items()))
                log_fn(f"epoch {epoch + 1}: {figures} ({time.monotonic() - self._t0:.0f} s)")

        return EpochLog()


def _validation_epochs(cfg: TrainConfig) -> list[int]:
    """1-based epochs to validate during training (the held-out check after BN recalibration always runs)."""
    return list(range(max(cfg.validate_every, 1), cfg.epochs + 1, max(cfg.validate_every, 1)))


def _quick_validation(model: Any, val: ArraySet, cfg: TrainConfig) -> dict[str, float]:
    out = predict_arrays(model, val.pixels, cfg.size, cfg.batch_size)
    p = out[PAIN_OUTPUT][:, 1]
    figures = {"val_accuracy": float(np.mean((p >= 0.5) == (val.labels == 1)))}
    if AU_OUTPUT in out and val.has_au:
        ok = np.isfinite(val.mgs)
        figures["val_pearson_r_au"] = float(np.corrcoef(out[AU_OUTPUT][ok].mean(axis=1), val.mgs[ok])[0, 1])
    return figures


def train(
    data_root: Path,
    out_dir: Path,
    cfg: TrainConfig,
    *,
    verbose: int = 2,
    log_fn: Any = print,
    cache_dir: Path | None = None,
) -> TrainResult:
    """Train per ``cfg`` on the labelled images under ``data_root``; write everything into ``out_dir``.

    ``out_dir`` gets ``model.keras``, ``model.weights.h5``, ``history.csv``, ``train.json`` (config,
    split, validation figures) and, while running, ``backup/`` from which an interrupted run resumes.
    """
    import keras

    from amgs.datasets import DatasetError
    from amgs.models.split import animals_from_names, read_split, split_three, write_split

    check_config(cfg)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    keras.utils.set_random_seed(cfg.seed)
    data = load_arrays(
        data_root,
        cfg.size,
        cache_dir=cache_dir or out_dir / "cache",
        progress=verbose == 1,
        pain_cutoff=cfg.pain_cutoff,
    )
    if cfg.animal_from_name:
        animals, missed = animals_from_names(data.paths, data.animals, cfg.animal_from_name)
        if len(missed) == len(data):
            raise DatasetError(
                f"--animal-from-name {cfg.animal_from_name!r} matched none of the {len(data)} file names "
                f"(e.g. {missed[0]!r}); the animal id is the group named 'animal', else group 1, else the match"
            )
        if missed:
            log_fn(
                f"--animal-from-name matched no animal in {len(missed)} file names (split image by image), "
                f"e.g. {', '.join(missed[:3])}"
            )
        data.animals = animals
    split_file = out_dir / "split.csv"
    if split_file.exists():
        split = read_split(split_file, data.paths, data.animals)
        log_fn(f"using the split recorded in {split_file}")
    else:
        split = split_three(data.animals, cfg.val_fraction, cfg.test_fraction, cfg.seed)
        write_split(split_file, data.paths, data.animals, split)
    tr, va, te = data.subset(split.train), data.subset(split.val), data.subset(split.test)
    if cfg.au_heads and not tr.has_au:
        log_fn("no per-AU scores (au_scores.csv) found: training without the AU heads")
        cfg.au_heads = False
    log_fn(f"{len(data)} images at {cfg.size}px, {split.describe(data.animals)} (list: {split_file})")
    steps = cfg.steps_per_epoch or max(len(tr) // cfg.batch_size, 1)
    model = build_for_training(cfg)
    compile_model(model, cfg, steps * cfg.epochs)
    model.build((None, cfg.size, cfg.size, 3))
    backup = out_dir / "backup"
    if backup.exists():
        log_fn(f"resuming from {backup}")
    callbacks = [
        keras.callbacks.BackupAndRestore(str(backup)),
        keras.callbacks.CSVLogger(str(out_dir / "history.csv"), append=True),
    ]
    if verbose != 1:
        callbacks.append(_EpochLog(log_fn))
    if cfg.time_budget_s:
        callbacks.append(_TimeBudget(cfg.time_budget_s, log_fn))
    hist = model.fit(
        make_dataset(tr, cfg, training=True),
        validation_data=make_dataset(va, cfg, training=False),
        epochs=cfg.epochs,
        steps_per_epoch=steps,
        callbacks=callbacks,
        validation_freq=_validation_epochs(cfg),
        verbose=1 if verbose == 1 else 0,
    )
    if cfg.recipe == "finetune" and cfg.bn_recalibration_batches > 0:
        n = recalibrate_batch_norm(model, tr.pixels, cfg.bn_recalibration_batches, cfg.batch_size)
        log_fn(f"batch-norm statistics re-estimated on {n} training batches")
    validation = _quick_validation(model, va, cfg)
    held = {"animal": "held-out animals", "animal+image": "held-out animals and images"}.get(
        split.by, "held-out images (split BY IMAGE: no animal ids)"
    )
    log_fn(f"validation, {held}: " + " ".join(f"{k}={v:.4f}" for k, v in validation.items()))
    model_path, weights_path = out_dir / "model.keras", out_dir / "model.weights.h5"
    model.save(model_path)
    model.save_weights(weights_path)
    test_report, test_figures = None, {}
    if len(te):
        from amgs.models.holdout import evaluate_holdout

        test_report, test_figures = evaluate_holdout(
            model,
            model_path,
            te,
            data_root,
            out_dir / "test",
            size=cfg.size,
            split_by=split.by,
            batch_size=cfg.batch_size,
        )
        headline = ("accuracy", "sensitivity", "specificity", "roc_auc", "pearson_r_au_vs_human_mgs")
        log_fn(
            f"test part ({len(te)} images, {held.replace('held-out ', '')}): "
            + " ".join(f"{k}={test_figures[k]}" for k in headline if k in test_figures)
            + f"; report: {test_report}"
        )
    record = {
        "config": asdict(cfg),
        "data": str(data_root),
        "split_by": split.by,
        "n_train": len(tr),
        "n_val": len(va),
        "n_test": len(te),
        "val_animals": sorted(set(va.animals) - {""}),
        "test_animals": sorted(set(te.animals) - {""}),
        "validation": validation,
        "test": test_figures,
    }
    (out_dir / "train.json").write_text(json.dumps(record, indent=2) + "\n")
    history = {k: [float(x) for x in v] for k, v in hist.history.items() if all(math.isfinite(x) for x in v)}
    return TrainResult(
        model_path,
        weights_path,
        history,
        validation,
        len(tr),
        len(va),
        record["val_animals"],
        n_test=len(te),
        split_by=split.by,
        test_report=test_report,
        test_figures=test_figures,
    )


def load_keras(path: Path) -> Any:
    """Load a model saved by :func:`train` (inference only; no optimizer state)."""
    import keras

    return keras.models.load_model(path, compile=False, custom_objects={"masked_mse": masked_mse})
