"""``amgs model explain``: occlusion sensitivity on the deployed (int8) model.

A grey patch slides over the face; where hiding a region lowers P(pain) most, that region drove the
score. The same passes also map the model's MGS (mean of the AU heads) and each action unit: a very
confident P(pain) hardly moves when one region is hidden, while the graded AU outputs still show which
region carries, say, orbital tightening. Only forward passes are needed, so it works on the int8 model a device actually runs (no
gradients, no TensorFlow), on exactly the pixels amgs.preprocess produces.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from amgs.preprocess import Box, ImageSource, load_pixels, to_model_input
from amgs.scoring import ImageScore, Scorer


@dataclass(frozen=True)
class Occlusion:
    pixels: np.ndarray  # HxWx3 uint8: what the model saw
    base: dict[str, float]  # unoccluded outputs: "pain" = P(pain), "mgs" and each AU key when present
    heats: dict[str, np.ndarray]  # per output: HxW, value - value with the patch here (mean over patches)
    patch: int
    stride: int

    @property
    def p_pain(self) -> float:
        return self.base["pain"]

    @property
    def heat(self) -> np.ndarray:
        """The P(pain) map."""
        return self.heats["pain"]

    def top_region(self, target: str = "pain") -> tuple[int, int, int, int]:
        """(x, y, w, h) of the patch-sized region whose occlusion changed ``target`` most (either sign)."""
        heat = self.heats[target]
        y, x = np.unravel_index(int(np.argmax(np.abs(heat))), heat.shape)
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
    base = _values(scorer.score_input(to_model_input(pixels, spec)))
    h, w = pixels.shape[:2]
    if patch < 2 or patch > min(h, w) or stride < 1:
        raise ValueError(
            f"patch must be 2..{min(h, w)} pixels and stride >= 1 (got patch {patch}, stride {stride})"
        )
    total = {k: np.zeros((h, w), dtype=np.float64) for k in base}
    count = np.zeros((h, w), dtype=np.float64)
    ys = sorted(set(list(range(0, h - patch + 1, stride)) + [h - patch]))
    xs = sorted(set(list(range(0, w - patch + 1, stride)) + [w - patch]))
    for y in ys:
        for x in xs:
            occluded = pixels.copy()
            occluded[y : y + patch, x : x + patch] = fill
            values = _values(scorer.score_input(to_model_input(occluded, spec)))
            for k, v in values.items():
                total[k][y : y + patch, x : x + patch] += base[k] - v
            count[y : y + patch, x : x + patch] += 1
    heats = {k: t / np.maximum(count, 1) for k, t in total.items()}
    return Occlusion(pixels, base, heats, patch, stride)


def _values(s: ImageScore) -> dict[str, float]:
    out = {"pain": s.p_pain}
    if s.au is not None and s.mgs_au is not None:
        out["mgs"] = s.mgs_au
        out.update(s.au)
    return out


def save_overlay(occ: Occlusion, path: Path, title: str = "") -> Path:
    """The face, then heat maps for P(pain) and (with AU heads) the model's MGS. Red: hiding the region
    lowers the value (it pushed towards pain); blue: hiding it raises the value."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    targets = [t for t in ("pain", "mgs") if t in occ.heats]
    fig, axes = plt.subplots(1, 1 + len(targets), figsize=(4 * (1 + len(targets)), 4.2))
    axes[0].imshow(occ.pixels)
    axes[0].set_title(
        f"P(pain) = {occ.p_pain:.3f}" + (f", MGS {occ.base['mgs']:.2f}" if "mgs" in occ.base else "")
    )
    for ax, t in zip(axes[1:], targets, strict=True):
        heat = occ.heats[t]
        lim = max(float(np.abs(heat).max()), 1e-6)
        ax.imshow(occ.pixels)
        im = ax.imshow(heat, cmap="bwr", vmin=-lim, vmax=lim, alpha=0.55)
        ax.set_title("drop in P(pain) when hidden" if t == "pain" else "drop in model MGS (0-2) when hidden")
        fig.colorbar(im, ax=ax, fraction=0.046)
    for ax in axes:
        ax.axis("off")
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
