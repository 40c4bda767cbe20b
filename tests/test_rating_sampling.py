"""Sampling crops into the rating pool (server/rating/sampling.py): per cage and day, stratified across
the model's P(pain) range and light/dark, a random share, flagged images only on request, repeats."""

import datetime as dt
import random
from collections import Counter

import pytest

from amgs.server.config import PhotoperiodConfig
from amgs.server.rating.config import RatingConfig
from amgs.server.rating.sampling import (
    Candidate,
    is_light,
    local_day_bounds,
    sample_cage_day,
    sample_day,
    stratum_of,
)

PP = PhotoperiodConfig(lights_on=dt.time(7), lights_off=dt.time(19), timezone="UTC")
DAY = dt.date(2026, 3, 2)
T0, T1 = local_day_bounds(DAY, "UTC")


def cands(n, cage="c1", seed=0, p=None, flagged_every=0):
    rng = random.Random(seed)
    return [
        Candidate(
            f"{cage}-{i:05d}",
            cage,
            T0 + rng.uniform(0, 86400),
            p(rng) if p else rng.random(),
            bool(flagged_every and i % flagged_every == 0),
        )
        for i in range(n)
    ]


def test_light_dark_and_day_bounds():
    assert is_light(T0 + 8 * 3600, PP) and not is_light(T0 + 20 * 3600, PP) and not is_light(T0 + 3600, PP)
    night_shift = PhotoperiodConfig(lights_on=dt.time(19), lights_off=dt.time(7), timezone="UTC")
    assert not is_light(T0 + 8 * 3600, night_shift) and is_light(T0 + 23 * 3600, night_shift)
    berlin = PhotoperiodConfig(timezone="Europe/Berlin")
    assert is_light(T0 + 6.5 * 3600, berlin)  # 07:30 local in winter = light
    t0, t1 = local_day_bounds(dt.date(2026, 3, 29), "Europe/Berlin")  # spring forward
    assert t1 - t0 == 23 * 3600


def test_every_stratum_gets_its_share_even_when_pain_is_rare():
    cfg = RatingConfig(per_cage_per_day=8, random_share=0, pain_strata=[0, 0.25, 0.5, 0.75, 1])
    # 96 % of images below P(pain) 0.25: a plain random draw of 8 would rarely see any pain image
    pool = cands(2000, p=lambda r: r.uniform(0, 0.25) if r.random() < 0.96 else r.uniform(0.25, 1))
    picks = sample_cage_day(pool, 8, cfg, PP, random.Random(1))
    strata = Counter(p.stratum for p in picks)
    assert len(picks) == 8 and len(strata) == 8 and set(strata.values()) == {1}
    by_id = {c.msg_id: c for c in pool}
    for p in picks:
        assert p.stratum == stratum_of(by_id[p.msg_id], cfg.pain_strata, PP, True)


def test_sparse_strata_leave_their_share_to_the_others_and_no_item_twice():
    cfg = RatingConfig(per_cage_per_day=10, random_share=0)
    pool = cands(30, p=lambda r: r.uniform(0, 0.2)) + [Candidate("hi", "c1", T0 + 9 * 3600, 0.9)]
    picks = sample_cage_day(pool, 10, cfg, PP, random.Random(2))
    assert len(picks) == 10 and len({p.msg_id for p in picks}) == 10
    assert "hi" in {p.msg_id for p in picks}
    assert sample_cage_day(pool[:3], 10, cfg, PP, random.Random(2)).__len__() == 3


def test_flagged_images_only_on_request():
    pool = cands(400, flagged_every=3)
    flagged = {c.msg_id for c in pool if c.flagged}
    off = sample_cage_day(pool, 20, RatingConfig(per_cage_per_day=20), PP, random.Random(3))
    assert not flagged & {p.msg_id for p in off}
    on = sample_cage_day(pool, 20, RatingConfig(unscorable_share=0.5), PP, random.Random(3))
    got = [p for p in on if p.msg_id in flagged]
    assert len(got) == 10 and {p.stratum for p in got} == {"flagged"}


def test_random_and_repeat_shares_hold_over_days():
    cfg = RatingConfig(per_cage_per_day=4, random_share=0.3, repeat_share=0.1)
    n = random_n = repeats = 0
    for d in range(60):
        day = DAY + dt.timedelta(days=d)
        pool = [c for cage in ("a", "b", "c") for c in cands(50, cage, seed=d)]
        picks = sample_day(pool, day, cfg, PP)
        n += len(picks)
        random_n += sum(p.stratum == "random" for p in picks)
        repeats += sum(p.repeat for p in picks)
        assert Counter(p.cage_id for p in picks) == {"a": 4, "b": 4, "c": 4}
    assert n == 60 * 12
    assert random_n / n == pytest.approx(0.3, abs=0.05)
    assert repeats / n == pytest.approx(0.1, abs=0.03)


def test_reproducible_and_skips_what_is_already_pooled():
    cfg = RatingConfig()
    pool = cands(100) + cands(100, "c2")
    first = sample_day(pool, DAY, cfg, PP)
    assert first == sample_day(list(reversed(pool)), DAY, cfg, PP)
    again = sample_day(pool, DAY, cfg, PP, already={p.msg_id for p in first})
    assert not {p.msg_id for p in first} & {p.msg_id for p in again}
    assert sample_day([], DAY, cfg, PP) == []
    assert sample_day(pool, DAY, RatingConfig(per_cage_per_day=0), PP) == []


def test_config_refuses_bad_strata_and_shares():
    with pytest.raises(ValueError):
        RatingConfig(pain_strata=[0.5, 0.2])
    with pytest.raises(ValueError):
        RatingConfig(random_share=0.8, unscorable_share=0.5)
    with pytest.raises(ValueError):
        RatingConfig(surprise=1)
