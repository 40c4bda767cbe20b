"""Which stored crops go into the rating pool: per cage and local day, stratified, plus a random share.

For each cage and complete local day (``photoperiod.timezone``) with stored crops, ``per_cage_per_day``
items are drawn:

1. ``unscorable_share`` from images the model or the device flagged (``needs_review``, ``asleep``, or an
   ``unscorable`` outcome: out of the model's domain, no face, poor quality): faces the lab may want
   scored on request; 0 by default, so such images are never drawn.
2. ``random_share`` at random from the other images (an unbiased check of the whole range).
3. the rest spread evenly across strata: the model's P(pain) bins (``pain_strata``) crossed with light
   and dark (``by_phase``). Each round gives one item to every stratum that still has images, in random
   order, so rare high-P(pain) images are not swamped by the many low ones; a stratum with too few
   images leaves its share to the others.

Shares are rounded stochastically (2.5 expected items = 2 or 3, half the time each), so a small daily
sample keeps the configured proportions over days. The draw is reproducible: its generator is seeded with
the cage and the day. ``repeat_share`` of each day's picks (over all cages) are marked to be shown twice
to every rater, for intra-rater agreement.
"""

from __future__ import annotations

import datetime as dt
import math
import random
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from zoneinfo import ZoneInfo


@dataclass(frozen=True)
class Candidate:
    msg_id: str
    cage_id: str
    t: float
    p_pain: float
    flagged: bool = False  # needs_review, asleep or unscorable: out of the model's domain


@dataclass(frozen=True)
class Pick:
    msg_id: str
    cage_id: str
    stratum: str  # "p0.25-0.5/light", "random" or "flagged"
    repeat: bool = False


def is_light(t: float, photoperiod) -> bool:
    """Whether Unix time ``t`` falls in the light phase of ``photoperiod`` (lights_on, lights_off, tz)."""
    local = dt.datetime.fromtimestamp(t, ZoneInfo(photoperiod.timezone)).time()
    on, off = photoperiod.lights_on, photoperiod.lights_off
    return on <= local < off if on < off else not (off <= local < on)


def local_day_bounds(day: dt.date, timezone: str) -> tuple[float, float]:
    """[start, end) of a local calendar day in Unix seconds (23 or 25 h long across DST changes)."""
    tz = ZoneInfo(timezone)
    start = dt.datetime.combine(day, dt.time(0), tz)
    end = dt.datetime.combine(day + dt.timedelta(days=1), dt.time(0), tz)
    return start.timestamp(), end.timestamp()


def local_day(t: float, timezone: str) -> dt.date:
    return dt.datetime.fromtimestamp(t, ZoneInfo(timezone)).date()


def stratum_of(c: Candidate, edges: Sequence[float], photoperiod, by_phase: bool) -> str:
    k = len(edges) - 2
    for i in range(len(edges) - 1):
        if c.p_pain < edges[i + 1]:
            k = i
            break
    k = max(0, k)
    name = f"p{edges[k]:g}-{edges[k + 1]:g}"
    if by_phase and photoperiod is not None:
        name += "/light" if is_light(c.t, photoperiod) else "/dark"
    return name


def _stochastic_round(x: float, rng: random.Random) -> int:
    whole = math.floor(x)
    return whole + (1 if rng.random() < x - whole else 0)


def sample_cage_day(
    candidates: Sequence[Candidate], n: int, cfg, photoperiod, rng: random.Random
) -> list[Pick]:
    """Draw up to ``n`` items of one cage-day (``cfg`` is a :class:`RatingConfig`)."""
    if n <= 0 or not candidates:
        return []
    flagged = [c for c in candidates if c.flagged]
    usable = [c for c in candidates if not c.flagged]
    n_flagged = min(len(flagged), _stochastic_round(n * cfg.unscorable_share, rng))
    n_random = _stochastic_round(n * cfg.random_share, rng)
    n_strat = max(0, n - n_flagged - n_random)
    picks = [Pick(c.msg_id, c.cage_id, "flagged") for c in rng.sample(flagged, n_flagged)]

    strata: dict[str, list[Candidate]] = defaultdict(list)
    for c in usable:
        strata[stratum_of(c, cfg.pain_strata, photoperiod, cfg.by_phase)].append(c)
    for members in strata.values():
        rng.shuffle(members)
    names = sorted(strata)
    rng.shuffle(names)
    taken: set[str] = set()
    while n_strat > 0 and any(strata[s] for s in names):
        for s in names:
            if n_strat == 0:
                break
            if strata[s]:
                c = strata[s].pop()
                picks.append(Pick(c.msg_id, c.cage_id, s))
                taken.add(c.msg_id)
                n_strat -= 1
    rest = [c for c in usable if c.msg_id not in taken]
    n_random = min(len(rest), n_random + n_strat)  # what the strata could not fill goes to random
    picks += [Pick(c.msg_id, c.cage_id, "random") for c in rng.sample(rest, n_random)]
    return picks


def sample_day(
    candidates: Iterable[Candidate], day: dt.date, cfg, photoperiod, already: set[str] | None = None
) -> list[Pick]:
    """The pool picks of one local day over every cage (``already``: msg_ids already in the pool)."""
    per_cage: dict[str, list[Candidate]] = defaultdict(list)
    for c in candidates:
        if not already or c.msg_id not in already:
            per_cage[c.cage_id].append(c)
    picks: list[Pick] = []
    for cage in sorted(per_cage):
        rng = random.Random(f"amgs-rating|{day.isoformat()}|{cage}")
        cands = sorted(per_cage[cage], key=lambda c: c.msg_id)
        picks += sample_cage_day(cands, cfg.per_cage_per_day, cfg, photoperiod, rng)
    rng = random.Random(f"amgs-rating-repeat|{day.isoformat()}")
    n_repeat = _stochastic_round(len(picks) * cfg.repeat_share, rng)
    repeat = set(rng.sample(range(len(picks)), min(n_repeat, len(picks))))
    return [Pick(p.msg_id, p.cage_id, p.stratum, i in repeat) for i, p in enumerate(picks)]
