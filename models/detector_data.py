"""Detector training data: whole frames plus face boxes, from a lab's annotated frames or the generator.

Both sources end as the same arrays, so the trainer never knows which it got:

    images  uint8 [N, S, S, 3]  each frame resized (stretched) to the detector input, through
                                ``amgs.detect.detector_pixels`` (the same resize the device uses)
    boxes   list of float32 [k, 4] per frame: x0, y0, x1, y1 as fractions of the frame (0-1)
    groups  one id per frame (animal or session) for the held-out split

A lab's set is a folder of frames plus ``boxes.json`` in the lab format (``{"img.jpg": [{"AnimalNumber":
"1", "Boundingbox": {"x": "447", "y": "341", "w": "945", "h": "958"}}]}``, numbers as strings), and
optionally ``animals.csv`` (``filename,animal_id[,session,...]``) to split by animal or session.
A frame listed with an empty list is a frame with no face (a useful negative).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from amgs.datasets import DatasetError, load_boxes, load_side_table
from amgs.detect import detector_pixels
from amgs.preprocess import ImageError, open_image
from amgs.synth.dataset import JPEG_COMMENT, SYNTHETIC_NOTICE
from amgs.synth.scenes import SceneStyle, render_cage_scene


@dataclass
class DetectorSet:
    images: np.ndarray
    boxes: list[np.ndarray]
    groups: list[str]
    names: list[str]

    def subset(self, idx: np.ndarray | list[int]) -> DetectorSet:
        idx = list(idx)
        return DetectorSet(
            self.images[idx],
            [self.boxes[i] for i in idx],
            [self.groups[i] for i in idx],
            [self.names[i] for i in idx],
        )

    def __len__(self) -> int:
        return len(self.names)


def _norm(box: tuple[int, int, int, int], size: tuple[int, int]) -> list[float]:
    x, y, w, h = box
    return [x / size[0], y / size[1], (x + w) / size[0], (y + h) / size[1]]


def load_lab_frames(root: Path, size: int, group_by: str = "animal_id") -> DetectorSet:
    """Frames listed in ``root/boxes.json``; groups from ``animals.csv`` column ``group_by`` (else the file)."""
    root = Path(root)
    boxes_file = root / "boxes.json"
    if not boxes_file.is_file():
        raise DatasetError(f"{root}: no boxes.json (face boxes in the lab format) in this folder")
    boxes = load_boxes(boxes_file)
    side = load_side_table(root / "animals.csv") if (root / "animals.csv").exists() else {}
    images, norm, groups, names = [], [], [], []
    for name in sorted(boxes):
        path = root / name
        try:
            img = open_image(path)
        except ImageError as e:
            raise DatasetError(f"{boxes_file}: {e}") from None
        size_wh = img.size
        images.append(detector_pixels(np.asarray(img), (size, size)))
        norm.append(np.array([_norm(b, size_wh) for _, b in boxes[name]], np.float32).reshape(-1, 4))
        meta = side.get(name, {})
        groups.append(meta.get(group_by) or name)
        names.append(name)
    if not names:
        raise DatasetError(f"{boxes_file}: lists no frames")
    return DetectorSet(np.stack(images), norm, groups, names)


def synth_frames(
    n: int, size: int, seed: int, frame: tuple[int, int] = (640, 360), style: SceneStyle | None = None
) -> DetectorSet:
    """``n`` SYNTHETIC cage frames at detector size with their true face boxes (each frame its own group)."""
    rng = np.random.default_rng(seed)
    images, norm = [], []
    for _ in range(n):
        s = render_cage_scene(rng, frame, style or SceneStyle())
        images.append(detector_pixels(np.asarray(s.image), (size, size)))
        norm.append(np.array([_norm(f.box, frame) for f in s.faces], np.float32).reshape(-1, 4))
    names = [f"synth_{seed}_{i:05d}" for i in range(n)]
    return DetectorSet(np.stack(images), norm, names, names)


def save_set(ds: DetectorSet, path: Path) -> None:
    """One .npz cache (rendering thousands of scenes takes minutes; training reads it many times)."""
    flat = np.concatenate([b for b in ds.boxes] or [np.zeros((0, 4), np.float32)])
    counts = np.array([len(b) for b in ds.boxes], np.int64)
    np.savez_compressed(path, images=ds.images, boxes=flat, counts=counts, groups=ds.groups, names=ds.names)


def load_set(path: Path) -> DetectorSet:
    z = np.load(path)
    splits = np.cumsum(z["counts"])[:-1]
    return DetectorSet(
        z["images"],
        list(np.split(z["boxes"], splits)),
        [str(g) for g in z["groups"]],
        [str(n) for n in z["names"]],
    )


def write_lab_scenes(
    out: Path, n: int, seed: int, frame: tuple[int, int] = (1280, 720), n_animals: int = 6
) -> dict[str, list[dict]]:
    """Write SYNTHETIC whole frames in a lab's layout: JPEGs + ``boxes.json`` + ``animals.csv``.

    Used by the tests and the docs to exercise ``amgs model train-detector`` exactly as a lab would.
    """
    out = Path(out)
    (out / "frames").mkdir(parents=True, exist_ok=True)
    (out / "SYNTHETIC.txt").write_text(SYNTHETIC_NOTICE)
    rng = np.random.default_rng(seed)
    boxes: dict[str, list[dict]] = {}
    rows = []
    for i in range(n):
        s = render_cage_scene(rng, frame)
        name = f"frames/cage_{seed}_{i:04d}.jpg"
        s.image.save(out / name, quality=90, comment=JPEG_COMMENT)
        boxes[name] = [
            {
                "AnimalNumber": str(j + 1),
                "Boundingbox": {"x": str(x), "y": str(y), "w": str(w), "h": str(h)},
            }
            for j, (x, y, w, h) in enumerate(f.box for f in s.faces)
        ]
        rows.append(f"{name},A{seed}-{i % n_animals}")
    (out / "boxes.json").write_text(json.dumps(boxes, indent=1))
    (out / "animals.csv").write_text("filename,animal_id\n" + "\n".join(rows) + "\n")
    return boxes


def split_groups(ds: DetectorSet, val_fraction: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Indices (train, validation) with whole groups (animals or sessions) on one side only."""
    groups = sorted(set(ds.groups))
    rng = np.random.default_rng(seed)
    rng.shuffle(groups)
    n_val = max(1, round(len(groups) * val_fraction)) if len(groups) > 1 else 0
    val_groups = set(groups[:n_val])
    val = np.array([i for i, g in enumerate(ds.groups) if g in val_groups], np.int64)
    train = np.array([i for i, g in enumerate(ds.groups) if g not in val_groups], np.int64)
    return train, val
