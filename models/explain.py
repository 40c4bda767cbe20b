"""``amgs model explain``: occlusion sensitivity on the deployed (int8) model.

A grey patch slides over the face; where hiding a region lowers P(pain) most, that region drove the
score. Only forward passes are needed, so it works on the int8 model a device actually runs (no
gradients, no TensorFlow), on exactly the pixels amgs.preprocess produces.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from amgs.preprocess import Box, ImageSource, load_pixels, to_model_input
from amgs.scoring import Scorer


@dataclass(frozen=True)
class Occlusion:
    pixels: np.ndarray  # HxWx3 uint8: what the model saw
    p_pain: float  # unoccluded
    heat: np.ndarray  # HxW float: P(pain) - P(pain with the patch here), averaged over covering patches
    patch: int
    stride: int

    def top_region(self) -> tuple[int, int, int, int]:
        """(x, y, w, h) of the patch-sized region whose occlusion changed P(pain) most (either sign)."""
        y, x = np.unravel_index(int(np.argmax(np.abs(self.heat))), self.heat.shape)
        half = self.patch // 2
        x0, y0 = max(0, x - half), max(0, y - half)
        return (
            int(x0),
            int(y0),
            int(min(self.patch, self.heat.shape[1] - x0)),
            int(min(self.patch, self.heat.shape[0] - y0)),
        )


def occlusion_map(
    scorer: Scorer,
    source: ImageSource,
    patch: int = 48,
    stride: int = 24,
    box: Box | None = None,
    fill: int = 128,
) -> Occlusion:
    """Slide a ``patch`` x ``patch`` grey square with ``stride``; one int8 inference per position."""
    spec = scorer.manifest.input
    pixels = load_pixels(source, (spec.width, spec.height), box).pixels
    base = scorer.score_input(to_model_input(pixels, spec)).p_pain
    h, w = pixels.shape[:2]
    if patch < 2 or patch > min(h, w) or stride < 1:
        raise ValueError(
            f"patch must be 2..{min(h, w)} pixels and stride >= 1 (got patch {patch}, stride {stride})"
        )
    total = np.zeros((h, w), dtype=np.float64)
    count = np.zeros((h, w), dtype=np.float64)
    ys = sorted(set(list(range(0, h - patch + 1, stride)) + [h - patch]))
    xs = sorted(set(list(range(0, w - patch + 1, stride)) + [w - patch]))
    for y in ys:
        for x in xs:
            occluded = pixels.copy()
            occluded[y : y + patch, x : x + patch] = fill
            p = scorer.score_input(to_model_input(occluded, spec)).p_pain
            total[y : y + patch, x : x + patch] += base - p
            count[y : y + patch, x : x + patch] += 1
    return Occlusion(pixels, base, total / np.maximum(count, 1), patch, stride)


def save_overlay(occ: Occlusion, path: Path, title: str = "") -> Path:
    """The face with the heat map over it (red: hiding it lowers P(pain); blue: hiding it raises P(pain))."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lim = max(float(np.abs(occ.heat).max()), 1e-6)
    fig, axes = plt.subplots(1, 2, figsize=(8, 4.2))
    axes[0].imshow(occ.pixels)
    axes[0].set_title(f"P(pain) = {occ.p_pain:.3f}")
    axes[1].imshow(occ.pixels)
    im = axes[1].imshow(occ.heat, cmap="bwr", vmin=-lim, vmax=lim, alpha=0.55)
    axes[1].set_title("drop in P(pain) when hidden")
    for ax in axes:
        ax.axis("off")
    fig.colorbar(im, ax=axes[1], fraction=0.046)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
