"""Labelled image sets -> arrays for training and evaluation, through the one preprocessing path.

Every image goes through :func:`amgs.preprocess.load_pixels` (decode, EXIF, crop box, bilinear resize),
so the uint8 pixels a model trains on are the pixels the device will feed it, bit for bit. Arrays are
cached as ``.npz`` keyed by the image list and the size, because decoding thousands of JPEGs on a
small machine costs more than an epoch at low resolution.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from amgs.contract import AU_KEYS
from amgs.datasets import DatasetError, Item, load_dataset
from amgs.preprocess import ImageError, load_pixels

log = logging.getLogger(__name__)


@dataclass
class ArraySet:
    """Images at one size with whatever labels exist (NaN where an image has no AU scores)."""

    pixels: np.ndarray  # N x H x W x 3 uint8, from amgs.preprocess.load_pixels
    labels: np.ndarray  # N int64: 1 pain, 0 no pain
    au: np.ndarray  # N x 5 float32: mean of raters per unit (AU_KEYS order); NaN when unscored
    animals: np.ndarray  # N str: animal id, or "" when unknown
    paths: np.ndarray  # N str: path relative to the dataset root

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def mgs(self) -> np.ndarray:
        """Human MGS per image (mean of units over raters); NaN when unscored."""
        return self.au.mean(axis=1)

    @property
    def has_au(self) -> bool:
        return bool(np.isfinite(self.au).all(axis=1).any())

    def subset(self, idx: Sequence[int] | np.ndarray) -> ArraySet:
        idx = np.asarray(idx, dtype=np.int64)
        return ArraySet(self.pixels[idx], self.labels[idx], self.au[idx], self.animals[idx], self.paths[idx])


def labelled_items(root: Path, pain_cutoff: float = 1.0) -> list[Item]:
    """The images under ``root`` that have a pain / no-pain label (any lab format; see amgs.datasets).

    Images labelled only by action units are pain when their mean human MGS >= ``pain_cutoff``."""
    items = [it for it in load_dataset(Path(root), pain_cutoff) if it.label is not None]
    if not items:
        raise DatasetError(
            f"{root}: no labelled images found. Expected folders 'pain/' and 'no pain/', a labels.csv "
            "(filename,label) or an au_scores.csv with per-rater action units."
        )
    return items


def _cache_key(root: Path, items: list[Item], size: int) -> str:
    h = hashlib.sha256(f"{size}".encode())
    h.update(bytes(it.label or 0 for it in items))  # labels depend on the AU pain cut-off
    for it in items:
        st = it.path.stat()
        h.update(f"{it.path.relative_to(root)}|{st.st_size}|{st.st_mtime_ns}|{it.box}".encode())
    return h.hexdigest()[:16]


def load_arrays(
    root: Path,
    size: int,
    *,
    cache_dir: Path | None = None,
    progress: bool = False,
    pain_cutoff: float = 1.0,
) -> ArraySet:
    """Load every labelled image under ``root`` at ``size`` x ``size``; unreadable images are skipped
    with a warning naming them (they never stop a training run)."""
    root = Path(root)
    items = labelled_items(root, pain_cutoff)
    cache = None
    if cache_dir is not None:
        cache = Path(cache_dir) / f"arrays-{size}-{_cache_key(root, items, size)}.npz"
        if cache.exists():
            with np.load(cache, allow_pickle=False) as z:
                return ArraySet(z["pixels"], z["labels"], z["au"], z["animals"], z["paths"])
    pixels, labels, aus, animals, paths = [], [], [], [], []
    iterator = items
    if progress:
        from tqdm import tqdm

        iterator = tqdm(items, desc=f"loading {root.name} at {size}px", unit="img")
    for it in iterator:
        try:
            px = load_pixels(it.path, (size, size), it.box).pixels
        except ImageError as e:
            log.warning("skipped: %s", e)
            continue
        pixels.append(px)
        labels.append(int(it.label))  # type: ignore[arg-type]
        aus.append([it.au.au[k] for k in AU_KEYS] if it.au else [np.nan] * len(AU_KEYS))
        animals.append(it.animal_id or "")
        paths.append(str(it.path.relative_to(root)))
    if not pixels:
        raise DatasetError(f"{root}: none of the {len(items)} labelled images could be read")
    out = ArraySet(
        np.stack(pixels),
        np.asarray(labels, dtype=np.int64),
        np.asarray(aus, dtype=np.float32),
        np.asarray(animals, dtype=str),
        np.asarray(paths, dtype=str),
    )
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_suffix(".tmp.npz")
        np.savez(tmp, pixels=out.pixels, labels=out.labels, au=out.au, animals=out.animals, paths=out.paths)
        tmp.replace(cache)
    return out


def split_by_animal(
    animals: Sequence[str] | np.ndarray, val_fraction: float, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Indices (train, validation) such that no animal has images on both sides.

    Images without an animal id ("") are each their own group (an image-level split for them).
    Groups are shuffled with ``seed`` and moved to validation until it holds ``val_fraction`` of images.
    """
    if not 0 < val_fraction < 1:
        raise ValueError(f"val_fraction must be between 0 and 1, got {val_fraction}")
    animals = np.asarray(animals, dtype=str)
    groups: dict[str, list[int]] = {}
    for i, a in enumerate(animals):
        groups.setdefault(a if a else f"\0image-{i}", []).append(i)
    keys = sorted(groups)
    if len(keys) < 2:
        raise DatasetError(
            f"cannot split by animal: all {len(animals)} images belong to one animal ({keys[0]!r}); "
            "give images of at least two animals, or an animals.csv"
        )
    rng = np.random.default_rng(seed)
    rng.shuffle(keys)
    want = val_fraction * len(animals)
    val: list[int] = []
    for k in keys:
        if len(val) >= want or len(val) + len(groups[k]) > len(animals) - 1:
            break
        val.extend(groups[k])
    if not val:
        val = list(groups[keys[0]])
    val_set = set(val)
    train = np.array([i for i in range(len(animals)) if i not in val_set], dtype=np.int64)
    return train, np.array(sorted(val_set), dtype=np.int64)
