"""SIMULATED raters for the demo, so its agreement page has something to show.

They are programs, not people, and their names say so (``simulated-rater-1``, ``simulated-rater-2``);
the agreement page puts a SIMULATED banner over any figure they contribute to. They score through the
same sessions as a person (``amgs.server.rating.sessions``: random order, opaque tokens, repeats),
but "see" the face by its true grimace level in the synthetic study (the animal's curve at the capture
time), never the model's score: each action unit = that level + the rater's own bias + noise, rounded
to 0/1/2; now and then a unit is "not visible" or the face "not scorable". Agreement with the model is
therefore a real, if synthetic, comparison.
"""

from __future__ import annotations

import numpy as np

from amgs.contract import AU_KEYS

SIMULATED_RATERS = (
    ("simulated-rater-1", 0.0, 0.30),  # name, bias (MGS units), noise SD per unit
    ("simulated-rater-2", 0.12, 0.38),
)


def true_level(animals, surgery_t: float, cage_id: str, t: float) -> float | None:
    """The grimace level (0-2) of the cage's animal at time ``t`` in the demo study."""
    for a in animals:
        if a.cage_id == cage_id:
            return a.curve.level((t - surgery_t) / 3600, a.baseline)
    return None


def simulated_values(rng: np.random.Generator, level: float, bias: float, noise: float) -> tuple[dict, bool]:
    if rng.random() < 0.03:
        return {}, True
    au = {}
    for k in AU_KEYS:
        if rng.random() < 0.03:
            au[k] = None
        else:
            au[k] = int(np.clip(np.rint(level + bias + rng.normal(0, noise)), 0, 2))
    return au, False


def simulate(conn, config, animals, surgery_t: float, now: float, seed: int = 0) -> int:
    """Let every simulated rater score what the pool offers them; returns the ratings made."""
    from amgs.server.rating import sessions

    rng = np.random.default_rng(seed)
    made = 0
    for name, bias, noise in SIMULATED_RATERS:
        for _ in range(1000):  # sessions; stops when nothing is left for this rater
            ref = sessions.open_session(conn, name, config.rating, now)
            if ref is None:
                break
            view = sessions.view(conn, ref)
            while view["token"]:
                cage_id, t = conn.execute(
                    "SELECT i.cage_id, i.t FROM rater_queue q JOIN rating_items i USING (item_id) WHERE q.token = ?",
                    [view["token"]],
                ).fetchone()
                level = true_level(animals, surgery_t, cage_id, t)
                au, unscorable = simulated_values(rng, 0.3 if level is None else level, bias, noise)
                view = sessions.submit(
                    conn,
                    ref,
                    view["token"],
                    au or None,
                    unscorable,
                    int(rng.integers(2000, 6000)),
                    config.rating.raters_per_item,
                    now,
                )
                made += 1
            sessions.end_session(conn, ref, now)
    return made
