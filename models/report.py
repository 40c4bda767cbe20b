"""The evaluation report: markdown + PNG plots (matplotlib with the Agg backend: no display needed)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from amgs.manifest import Manifest
from amgs.models import metrics

if TYPE_CHECKING:
    from amgs.models.evaluate import Predictions


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    _plt().close(fig)
    return path


def plot_roc(out: Path, labels: np.ndarray, p: np.ndarray) -> Path:
    plt = _plt()
    fpr, tpr = metrics.roc_curve(labels, p)
    fig, ax = plt.subplots(figsize=(4, 4))
    ax.plot(fpr, tpr, lw=2, label=f"AUC {metrics.roc_auc(labels, p):.3f}")
    ax.plot([0, 1], [0, 1], "k:", lw=1)
    ax.set(
        xlabel="1 - specificity",
        ylabel="sensitivity",
        title="ROC (pain = positive)",
        xlim=(0, 1),
        ylim=(0, 1),
    )
    ax.legend(loc="lower right")
    return _save(fig, out / "roc.png")


def plot_reliability(out: Path, labels: np.ndarray, p: np.ndarray) -> Path:
    plt = _plt()
    rel = metrics.reliability(labels, p)
    ok = rel.counts > 0
    fig, ax = plt.subplots(figsize=(4, 4))
    ax.plot([0, 1], [0, 1], "k:", lw=1)
    ax.plot(rel.mean_predicted[ok], rel.observed[ok], "o-", label=f"ECE {rel.ece:.3f}")
    ax.set(
        xlabel="mean predicted P(pain)",
        ylabel="observed pain fraction",
        title="Reliability",
        xlim=(0, 1),
        ylim=(0, 1),
    )
    ax.legend(loc="upper left")
    return _save(fig, out / "reliability.png")


def plot_confusion(out: Path, c: metrics.Confusion) -> Path:
    plt = _plt()
    m = c.matrix()
    fig, ax = plt.subplots(figsize=(3.6, 3.2))
    ax.imshow(m, cmap="Blues")
    for (i, j), v in np.ndenumerate(m):
        ax.text(j, i, str(v), ha="center", va="center", color="black" if v < m.max() / 2 else "white")
    ax.set_xticks([0, 1], ["no pain", "pain"])
    ax.set_yticks([0, 1], ["no pain", "pain"])
    ax.set(xlabel="predicted", ylabel="true", title="Confusion matrix")
    return _save(fig, out / "confusion.png")


def plot_mgs(out: Path, pred: Predictions) -> Path | None:
    ok = np.isfinite(pred.human_mgs)
    if ok.sum() < 3:
        return None
    plt = _plt()
    panels = 2 if pred.au_int8 is not None else 1
    fig, axes = plt.subplots(1, panels, figsize=(4 * panels, 4), squeeze=False)
    ax = axes[0][0]
    ax.scatter(pred.human_mgs[ok], pred.p_int8[ok], s=6, alpha=0.5)
    ax.set(
        xlabel="human MGS (mean of raters, 0-2)",
        ylabel="aMGS = P(pain)",
        title=f"r = {metrics.pearson_r(pred.p_int8, pred.human_mgs):.3f}",
    )
    if pred.au_int8 is not None:
        mgs = pred.au_int8.mean(axis=1)
        ax = axes[0][1]
        ax.scatter(pred.human_mgs[ok], mgs[ok], s=6, alpha=0.5)
        ax.plot([0, 2], [0, 2], "k:", lw=1)
        ax.set(
            xlabel="human MGS (0-2)",
            ylabel="model MGS from AU heads (0-2)",
            title=f"r = {metrics.pearson_r(mgs, pred.human_mgs):.3f}",
        )
    return _save(fig, out / "mgs_scatter.png")


def plot_animals(out: Path, animals: list[dict[str, Any]]) -> Path:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(max(4, 0.35 * len(animals) + 1.5), 3.5))
    x = np.arange(len(animals))
    ax.bar(x, [a["mean_amgs"] for a in animals], yerr=[a["sem_amgs"] or 0 for a in animals], capsize=2)
    ax.plot(x, [a["fraction_labelled_pain"] for a in animals], "r_", ms=12, label="labelled pain fraction")
    ax.set_xticks(x, [a["animal"] for a in animals], rotation=90, fontsize=7)
    ax.set(ylabel="mean aMGS (+- SEM)", ylim=(0, 1), title="Per animal")
    ax.legend(loc="upper right", fontsize=7)
    return _save(fig, out / "per_animal.png")


def plot_agreement(out: Path, p_float: np.ndarray, p_int8: np.ndarray) -> Path:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(4, 4))
    ax.scatter(p_float, p_int8, s=6, alpha=0.5)
    ax.plot([0, 1], [0, 1], "k:", lw=1)
    a = metrics.agreement(p_float, p_int8)
    ax.set(
        xlabel="P(pain), float model",
        ylabel="P(pain), int8 model",
        xlim=(0, 1),
        ylim=(0, 1),
        title=f"same decision {100 * a.identical_decisions:.1f} %, mean |dP| {a.mean_abs_dp:.4f}",
    )
    return _save(fig, out / "float_vs_int8.png")


def write_report(
    out: Path,
    manifest: Manifest,
    pred: Predictions,
    figs: dict[str, float | int | None],
    animals: list[dict[str, Any]],
    dataset: str,
) -> tuple[Path, list[Path]]:
    c = metrics.confusion(pred.labels, pred.p_int8, manifest.threshold)
    plots = [
        plot_roc(out, pred.labels, pred.p_int8),
        plot_reliability(out, pred.labels, pred.p_int8),
        plot_confusion(out, c),
        plot_animals(out, animals),
    ]
    mgs = plot_mgs(out, pred)
    if mgs:
        plots.append(mgs)
    if pred.p_float is not None:
        plots.append(plot_agreement(out, pred.p_float, pred.p_int8))
    lines = [
        f"# Evaluation: {manifest.name} {manifest.version} on {dataset}",
        "",
        f"- model file: `{manifest.file}` (sha256 `{manifest.sha256[:16]}...`, {manifest.quantization})",
        f"- images: {len(pred.paths)} scored, {len(pred.unreadable)} unreadable; animals: {len(animals)}",
        f"- decision threshold P(pain) >= {manifest.threshold}",
    ]
    if pred.outcome is not None:
        n_out = int((~pred.scorable).sum())
        lines.append(
            f"- unscorable: {n_out} of {len(pred.paths)} (in-domain check: "
            + ("none in the manifest" if manifest.domain_check is None else "on")
            + "); `scorable_*` figures leave them out, the others cover every image"
        )
    if manifest.synthetic:
        lines.append("- **the model was trained on SYNTHETIC faces: not validated on real mice**")
    lines += ["", "| figure | value |", "| --- | --- |"]
    lines += [f"| {k} | {'n/a' if v is None else v} |" for k, v in figs.items()]
    lines += [
        "",
        "Confusion matrix (rows true, columns predicted):",
        "",
        "| | no pain | pain |",
        "| --- | --- | --- |",
        f"| no pain | {c.tn} | {c.fp} |",
        f"| pain | {c.fn} | {c.tp} |",
        "",
    ]
    lines += [
        "## Per animal",
        "",
        "| animal | n | mean aMGS | SEM | called pain | labelled pain | human MGS |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for a in animals:
        sem = "" if a["sem_amgs"] is None else f"{a['sem_amgs']:.3f}"
        human = "" if a["mean_human_mgs"] is None else f"{a['mean_human_mgs']:.2f}"
        lines.append(
            f"| {a['animal']} | {a['n']} | {a['mean_amgs']:.3f} | {sem} | "
            f"{a['fraction_called_pain']:.2f} | {a['fraction_labelled_pain']:.2f} | {human} |"
        )
    lines += ["", "## Plots", ""] + [f"![{p.stem}]({p.name})" for p in plots]
    if pred.unreadable:
        lines += ["", "## Unreadable images", ""] + [f"- {u}" for u in pred.unreadable]
    report = out / "report.md"
    report.write_text("\n".join(lines) + "\n")
    return report, plots
