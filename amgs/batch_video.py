"""Scoring recorded videos (``amgs score video.mp4``): one row per window, a summary and a plot per video.

Each window of sampled frames is handed to the device's own frame selection
(``amgs.device.selection.ViewSelector``: detector or region, quality gate on the model-size crop,
least-motion passing frame, motion energy, stillness over time) exactly as a burst is at the cage;
the chosen crop is scored by the same :class:`amgs.scoring.Scorer`. A window in which no frame has a
usable face is a row with ``status = unscorable`` and the most common reason (no_face, blurry, ...),
never a silent gap: a time course must show where the animal could not be scored.
"""

from __future__ import annotations

import sys
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
from tqdm import tqdm

from amgs.batch import MODEL_COLUMNS, SCORE_COLUMNS, model_columns, score_columns
from amgs.device.config import SelectionSection, ViewSection
from amgs.device.selection import ViewSelector
from amgs.scoring import NO_FACE, QUALITY, UNSCORABLE, Scorer
from amgs.video import VideoInfo, iter_windows, probe, video_time

WINDOW_COLUMNS = [
    "video",
    "window",
    "start_s",
    "end_s",
    "video_time_s",
    "wall_time",
    "status",
    "reason",
    *SCORE_COLUMNS,
    "box_x",
    "box_y",
    "box_w",
    "box_h",
    "det_score",
    "sharpness",
    "motion",
    "asleep",
    "frames",
    *MODEL_COLUMNS,
]
NO_FACE_REJECTS = ("no_face", "no_frames", "region_outside_frame")
"""Window rejection reasons that mean no face was found; every other one (blurry, too dark, ...) is quality."""


@dataclass
class VideoResult:
    info: VideoInfo
    rows: list[dict] = field(default_factory=list)

    @property
    def scored(self) -> list[dict]:
        return [r for r in self.rows if r["status"] == "scored"]


def _iso(t: datetime | None) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z" if t else ""


def score_video(
    path: Path,
    scorer: Scorer,
    detector=None,
    window_s: float = 10.0,
    samples: int = 5,
    selection: SelectionSection | None = None,
    start: datetime | None = None,
    progress: bool = True,
    region: tuple[int, int, int, int] | None = None,
) -> VideoResult:
    """Score one video window by window; the progress bar counts seconds of video."""
    info = probe(Path(path), start)
    view = ViewSection(name="video", source="video", cage_id="video", region=region)
    selector = ViewSelector(view, selection or SelectionSection(), scorer.model.input_size, detector)
    result = VideoResult(info)
    model = model_columns(scorer.manifest)
    bar = tqdm(
        total=round(info.duration_s, 1),
        unit="s",
        desc=info.path.name[-30:],
        disable=not progress,
        file=sys.stderr,
        dynamic_ncols=True,
        bar_format="{l_bar}{bar}| {n:.0f}/{total:.0f} s video [{elapsed}<{remaining}, {rate_fmt}]",
    )
    with bar:
        for win in iter_windows(info, window_s, samples):
            row: dict = dict.fromkeys(WINDOW_COLUMNS)
            row.update(
                video=str(info.path),
                window=win.index,
                start_s=round(win.start_s, 3),
                end_s=round(win.end_s, 3),
                frames=len(win.frames),
                **model,
            )
            outcome = selector.select(win.frames) if win.frames else None
            if outcome is None or outcome.selection is None:
                reason = _reason(outcome.rejected if outcome else Counter({"no_frames": 1}))
                why = NO_FACE if reason in NO_FACE_REJECTS else QUALITY
                row.update(status="unscorable", reason=reason, outcome=UNSCORABLE, unscorable_reason=why)
                if outcome is not None and outcome.motion_energy is not None:
                    row["motion"] = round(outcome.motion_energy, 3)
            else:
                sel = outcome.selection
                c = sel.chosen
                s = scorer.score_pixels(c.pixels)  # the quality gate and the in-domain check included
                t = video_time(c.frame, info)
                row.update(
                    status="scored" if s.scorable else "unscorable",
                    reason=s.unscorable_reason or "",
                    video_time_s=round(t, 3),
                    wall_time=_iso(c.frame.captured_at) if info.start else "",
                    **score_columns(s),
                    box_x=c.box[0],
                    box_y=c.box[1],
                    box_w=c.box[2],
                    box_h=c.box[3],
                    det_score=c.det_score,
                    sharpness=round(c.sharpness, 2),
                    motion=round(sel.motion_energy, 3),
                    asleep=sel.asleep,
                )
            if info.start and not row["wall_time"]:
                row["wall_time"] = _iso(info.start + timedelta(seconds=win.start_s))
            result.rows.append(row)
            bar.update(round(win.end_s - win.start_s, 1))
    return result


def _reason(rejected: Counter) -> str:
    """The most common rejection reason of a window (ties: the first seen)."""
    if not rejected:
        return "no_frames"
    return rejected.most_common(1)[0][0]


def summarize_video(result: VideoResult) -> dict:
    """Per video: windows, scored, unscorable by reason, mean aMGS +- SEM, fraction pain, asleep share."""
    scored = result.scored
    values = np.array([r["amgs"] for r in scored], float)
    reasons = Counter(r["reason"] for r in result.rows if r["status"] != "scored")
    return {
        "video": str(result.info.path),
        "duration_s": round(result.info.duration_s, 2),
        "fps": round(result.info.fps, 3),
        "start": _iso(result.info.start),
        "start_from": result.info.start_from or "",
        "windows": len(result.rows),
        "scored": len(scored),
        "unscorable": dict(reasons),
        "mean_amgs": round(float(values.mean()), 4) if len(values) else None,
        "sem_amgs": round(float(values.std(ddof=1) / np.sqrt(len(values))), 4) if len(values) > 1 else None,
        "fraction_pain": round(float(np.mean([r["label"] == "pain" for r in scored])), 4) if scored else None,
        "asleep_windows": sum(bool(r["asleep"]) for r in scored),
        "review_windows": sum(bool(r["needs_review"]) for r in scored),
    }


def format_video_summary(s: dict) -> str:
    mean = f"{s['mean_amgs']:.3f}" if s["mean_amgs"] is not None else "-"
    sem = f" +- {s['sem_amgs']:.3f}" if s["sem_amgs"] is not None else ""
    unscorable = ", ".join(f"{k} {v}" for k, v in s["unscorable"].items()) or "none"
    pain = f"{100 * s['fraction_pain']:.0f}%" if s["fraction_pain"] is not None else "-"
    start = f", starts {s['start']} (from {s['start_from']})" if s["start"] else ", wall time unknown"
    return (
        f"{s['video']}: {s['duration_s']:.1f} s at {s['fps']:.2f} fps{start}; {s['windows']} windows, "
        f"{s['scored']} scored (mean aMGS {mean}{sem}, {pain} pain, {s['asleep_windows']} asleep, "
        f"{s['review_windows']} to review), unscorable: {unscorable}"
    )


def plot_video(result: VideoResult, png: Path, synthetic_model: bool = False) -> Path:
    """PNG time course: aMGS per window (open markers: asleep), unscorable windows shaded."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 3.2))
    scored = result.scored
    for r in result.rows:
        if r["status"] != "scored":
            ax.axvspan(r["start_s"], r["end_s"], color="0.85", lw=0)
    if scored:
        t = np.array([r["video_time_s"] for r in scored])
        a = np.array([r["amgs"] for r in scored])
        asleep = np.array([bool(r["asleep"]) for r in scored])
        ax.plot(t, a, "-", color="tab:red", lw=1, alpha=0.6)
        ax.plot(t[~asleep], a[~asleep], "o", color="tab:red", ms=4, label="aMGS (window)")
        if asleep.any():
            ax.plot(t[asleep], a[asleep], "o", mfc="none", color="tab:red", ms=5, label="asleep")
    ax.axhline(0.5, color="k", lw=0.6, ls="--")
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlim(0, max(result.info.duration_s, 1e-3))
    ax.set_xlabel("video time (s)" + (f" from {_iso(result.info.start)}" if result.info.start else ""))
    ax.set_ylabel("aMGS = P(pain)")
    title = f"{result.info.path.name} (grey: unscorable windows)"
    if synthetic_model:
        title += " - SYNTHETIC-trained model"
    ax.set_title(title, fontsize=9)
    if scored:
        ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    png = Path(png)
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=110)
    plt.close(fig)
    return png
