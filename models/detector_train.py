"""Train the CenterNet-style face detector (``amgs model train-detector``).

Targets (Zhou et al. 2019): per face, an elliptical Gaussian on the heat map at its centre cell (sigma
from the face size, as in TTFNet), and at that cell the sub-cell offset and the box size as fractions
of the frame. Losses: penalty-reduced focal loss on the heat map, L1 on offset and size at face centres,
both normalised by the number of faces. Augmentation: horizontal flip, zoom-in crops, brightness and
contrast, greyscale. Checkpoints every ``checkpoint_every`` steps; running the same command again resumes.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from amgs.detect import decode
from amgs.models.detector_data import DetectorSet
from amgs.models.detector_metrics import detection_figures

log = logging.getLogger(__name__)


@dataclass
class DetectorTrainConfig:
    size: int = 320
    alpha: float = 0.35
    batch_size: int = 32
    steps: int = 3000
    lr: float = 2e-3
    warmup_steps: int = 100
    size_loss_weight: float = 5.0
    offset_loss_weight: float = 1.0
    checkpoint_every: int = 100
    validate_every: int = 500
    time_budget_min: float | None = None  # CPU minutes of this process (all its threads)
    seed: int = 0
    threshold: float = 0.3


def make_targets(boxes: list[np.ndarray], grid: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Heat [B,G,G,1], regression [B,G,G,4] (off_x, off_y, w, h) and centre mask [B,G,G,1]."""
    b = len(boxes)
    heat = np.zeros((b, grid, grid, 1), np.float32)
    reg = np.zeros((b, grid, grid, 4), np.float32)
    mask = np.zeros((b, grid, grid, 1), np.float32)
    ys, xs = np.mgrid[0:grid, 0:grid].astype(np.float32)
    for i, frame_boxes in enumerate(boxes):
        for x0, y0, x1, y1 in frame_boxes:
            w, h = x1 - x0, y1 - y0
            if w <= 0 or h <= 0:
                continue
            cx, cy = (x0 + x1) / 2 * grid, (y0 + y1) / 2 * grid
            ix, iy = min(grid - 1, int(cx)), min(grid - 1, int(cy))
            sx, sy = max(0.6, 0.54 * w * grid / 6), max(0.6, 0.54 * h * grid / 6)
            g = np.exp(-((xs - ix) ** 2) / (2 * sx**2) - ((ys - iy) ** 2) / (2 * sy**2))
            heat[i, ..., 0] = np.maximum(heat[i, ..., 0], g)
            heat[i, iy, ix, 0] = 1.0
            reg[i, iy, ix] = (cx - ix, cy - iy, w, h)
            mask[i, iy, ix, 0] = 1.0
    return heat, reg, mask


def augment(
    images: np.ndarray, boxes: list[np.ndarray], rng: np.random.Generator
) -> tuple[np.ndarray, list[np.ndarray]]:
    """Flip, zoom-in crop, brightness/contrast, greyscale: cheap numpy/OpenCV on the uint8 batch."""
    import cv2

    out_imgs = np.empty_like(images)
    out_boxes = []
    size = images.shape[1]
    for i, (img, bx) in enumerate(zip(images, boxes, strict=True)):
        bx = bx.copy()
        if rng.random() < 0.5:
            img = img[:, ::-1]
            bx[:, [0, 2]] = 1 - bx[:, [2, 0]]
        if rng.random() < 0.4:
            z = rng.uniform(0.6, 0.95)
            ox, oy = rng.uniform(0, 1 - z), rng.uniform(0, 1 - z)
            x0, y0, cs = int(ox * size), int(oy * size), max(8, int(z * size))
            img = cv2.resize(np.ascontiguousarray(img[y0 : y0 + cs, x0 : x0 + cs]), (size, size))
            nb = (bx - [ox, oy, ox, oy]) / z
            clipped = nb.clip(0, 1)
            area = (nb[:, 2] - nb[:, 0]) * (nb[:, 3] - nb[:, 1])
            carea = (clipped[:, 2] - clipped[:, 0]) * (clipped[:, 3] - clipped[:, 1])
            bx = clipped[carea > 0.5 * np.maximum(area, 1e-9)].astype(np.float32)
        f = img.astype(np.float32)
        if rng.random() < 0.15:
            f = np.repeat(f.mean(axis=2, keepdims=True), 3, axis=2)
        f = (f - 128) * rng.uniform(0.7, 1.3) + 128 + rng.normal(0, 20)
        out_imgs[i] = f.clip(0, 255).astype(np.uint8)
        out_boxes.append(bx.reshape(-1, 4))
    return out_imgs, out_boxes


def predict_grids(model, images: np.ndarray, batch: int = 64) -> np.ndarray:
    """Float model outputs for uint8 frames (the same normalisation the int8 model's input encodes)."""
    outs = []
    for i in range(0, len(images), batch):
        x = (images[i : i + batch].astype(np.float32) - 127.5) / 127.5
        outs.append(np.asarray(model(x, training=False)))
    return np.concatenate(outs)


def evaluate_float(model, ds: DetectorSet, threshold: float) -> dict[str, float | int]:
    grids = predict_grids(model, ds.images)
    dets = [decode(g, 0.05) for g in grids]
    return detection_figures([d[0] for d in dets], [d[1] for d in dets], ds.boxes, threshold)


def learning_rate(cfg: DetectorTrainConfig, step: int, elapsed_s: float) -> float:
    """Linear warm-up, then cosine decay to 2 % over whichever ends first: the steps or the time budget.

    On a shared 2-core machine the step rate is unknown in advance; decaying by elapsed time as well
    means a time-limited run still ends at a low learning rate (the weights settle) instead of mid-way."""
    if step < cfg.warmup_steps:
        return cfg.lr * (0.05 + 0.95 * step / max(1, cfg.warmup_steps))
    progress = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
    if cfg.time_budget_min:
        progress = max(progress, elapsed_s / (cfg.time_budget_min * 60))
    progress = min(1.0, progress)
    return cfg.lr * (0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * progress)))


def train_detector(train: DetectorSet, val: DetectorSet | None, out: Path, cfg: DetectorTrainConfig) -> dict:
    """Train (or resume) in ``out``; writes ``model.keras``, ``history.csv`` and ``train.json``."""
    import keras
    import tensorflow as tf

    from amgs.models.detector_arch import build_detector

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    keras.utils.set_random_seed(cfg.seed)
    model = build_detector(cfg.size, cfg.alpha)
    grid = int(model.output.shape[1])
    opt = keras.optimizers.Adam(cfg.lr)
    ckpt = tf.train.Checkpoint(
        model=model,
        optimizer=opt,
        step=tf.Variable(0, dtype=tf.int64),
        elapsed=tf.Variable(0.0, dtype=tf.float64),
    )
    manager = tf.train.CheckpointManager(ckpt, str(out / "checkpoints"), max_to_keep=2)
    if manager.latest_checkpoint:
        ckpt.restore(manager.latest_checkpoint)
        log.warning("resumed from %s at step %d", manager.latest_checkpoint, int(ckpt.step))

    @tf.function
    def step(x, heat, reg, mask):
        with tf.GradientTape() as tape:
            pred = model(x, training=True)
            p = tf.clip_by_value(pred[..., :1], 1e-4, 1 - 1e-4)
            pos = tf.cast(heat >= 1.0, tf.float32)
            n = tf.maximum(tf.reduce_sum(mask), 1.0)
            focal = -(
                pos * tf.math.log(p) * (1 - p) ** 2 + (1 - pos) * tf.math.log(1 - p) * p**2 * (1 - heat) ** 4
            )
            l_heat = tf.reduce_sum(focal) / n
            diff = tf.abs(pred[..., 1:] - reg) * mask
            l_off = tf.reduce_sum(diff[..., :2]) / n
            l_size = tf.reduce_sum(diff[..., 2:]) / n
            loss = l_heat + cfg.offset_loss_weight * l_off + cfg.size_loss_weight * l_size
        grads = tape.gradient(loss, model.trainable_variables)
        opt.apply_gradients(zip(grads, model.trainable_variables, strict=True))
        return loss, l_heat, l_off, l_size

    rng = np.random.default_rng(cfg.seed + int(ckpt.step))
    history_path = out / "history.csv"
    new_history = not history_path.exists()
    hist = open(history_path, "a", newline="")  # noqa: SIM115 - kept open through the loop
    writer = csv.writer(hist)
    if new_history:
        writer.writerow(["step", "loss", "heat", "offset", "size", "lr", "seconds", "val_ap50", "val_recall"])
    t0 = time.monotonic()
    c0 = time.process_time()  # the budget is CPU time: on a shared machine wall time says little
    elapsed_before = float(ckpt.elapsed)  # training time of earlier (interrupted) runs
    start_step = int(ckpt.step)
    acc = np.zeros(4)
    n_acc = 0
    stopped_early = False
    while int(ckpt.step) < cfg.steps:
        opt.learning_rate.assign(
            learning_rate(cfg, int(ckpt.step), elapsed_before + time.process_time() - c0)
        )
        idx = rng.integers(0, len(train), cfg.batch_size)
        imgs, bxs = augment(train.images[idx], [train.boxes[i] for i in idx], rng)
        heat, reg, mask = make_targets(bxs, grid)
        x = (imgs.astype(np.float32) - 127.5) / 127.5
        losses = step(tf.constant(x), tf.constant(heat), tf.constant(reg), tf.constant(mask))
        acc += [float(v) for v in losses]
        n_acc += 1
        ckpt.step.assign_add(1)
        s = int(ckpt.step)
        val_row = ["", ""]
        if val is not None and len(val) and (s % cfg.validate_every == 0 or s == cfg.steps):
            fig = evaluate_float(model, val, cfg.threshold)
            val_row = [fig["ap50"], fig["recall"]]
            log.warning("step %d validation: %s", s, fig)
        if s % cfg.checkpoint_every == 0 or s == cfg.steps or val_row[0] != "":
            mean = acc / max(n_acc, 1)
            lr = float(opt.learning_rate.numpy())
            writer.writerow(
                [s, *(round(v, 5) for v in mean), f"{lr:.6f}", round(time.monotonic() - t0, 1), *val_row]
            )
            hist.flush()
            ckpt.elapsed.assign(elapsed_before + time.process_time() - c0)
            manager.save()
            log.warning("step %d loss %.4f (heat %.4f off %.4f size %.4f) lr %.5f", s, *mean, lr)
            acc[:] = 0
            n_acc = 0
        if cfg.time_budget_min and elapsed_before + time.process_time() - c0 > cfg.time_budget_min * 60:
            stopped_early = s < cfg.steps
            ckpt.elapsed.assign(elapsed_before + time.process_time() - c0)
            manager.save()
            break
    hist.close()
    model.save(out / "model.keras")
    record = {
        "config": asdict(cfg),
        "train_frames": len(train),
        "train_faces": int(sum(len(b) for b in train.boxes)),
        "val_frames": len(val) if val is not None else 0,
        "val_groups": sorted(set(val.groups)) if val is not None and len(set(val.groups)) < 200 else None,
        "steps_done": int(ckpt.step),
        "steps_this_run": int(ckpt.step) - start_step,
        "seconds_this_run": round(time.monotonic() - t0, 1),
        "cpu_seconds_total": round(elapsed_before + time.process_time() - c0, 1),
        "stopped_by_time_budget": stopped_early,
        "grid": grid,
    }
    if val is not None and len(val):
        record["val_float"] = evaluate_float(model, val, cfg.threshold)
    (out / "train.json").write_text(json.dumps(record, indent=2, default=_json_default) + "\n")
    return record


def _json_default(o):
    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    if isinstance(o, float) and math.isnan(o):
        return None
    raise TypeError(type(o))
