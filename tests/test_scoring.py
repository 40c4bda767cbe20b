import numpy as np
import pytest

from amgs.scoring import ImageScore, amgs_score, score_from_outputs, summarize


def test_score_formula():
    s = score_from_outputs(np.array([0.2, 0.8]), threshold=0.5, review_threshold=0.65)
    assert (s.p_pain, s.label, s.confidence, s.amgs, s.needs_review) == (0.8, "pain", 0.8, 0.8, False)
    s = score_from_outputs(np.array([0.6, 0.4]), threshold=0.5, review_threshold=0.65)
    assert (s.label, s.confidence, s.amgs, s.needs_review) == ("no pain", 0.6, 0.4, True)
    # int8 softmax outputs do not sum to exactly 1: renormalized
    s = score_from_outputs(np.array([0.25, 0.7421875]), threshold=0.5, review_threshold=0.65)
    assert s.p_pain == pytest.approx(0.7421875 / 0.9921875, abs=1e-6)
    # threshold from the manifest decides the label
    assert score_from_outputs(np.array([0.45, 0.55]), threshold=0.6, review_threshold=0.65).label == "no pain"
    assert amgs_score(1.0000001) == 1.0


def test_au_heads_give_human_scale_mgs():
    s = score_from_outputs(np.array([0.1, 0.9]), 0.5, 0.65, au=np.array([2.0, 1.0, 0.0, 1.0, 2.5]))
    assert s.au == {"ot": 2.0, "nb": 1.0, "cb": 0.0, "ep": 1.0, "wc": 2.0}
    assert s.mgs_au == pytest.approx(1.2)


def _s(a, label):
    return ImageScore(p_pain=a, label=label, confidence=max(a, 1 - a), amgs=a, needs_review=False)


def test_summary_mean_sem_fraction():
    scores = [_s(0.2, "no pain"), _s(0.4, "no pain"), _s(0.9, "pain")]
    s = summarize(scores)
    assert s.n == 3
    assert s.mean_amgs == pytest.approx(0.5)
    assert s.sem_amgs == pytest.approx(np.std([0.2, 0.4, 0.9], ddof=1) / np.sqrt(3))
    assert s.fraction_pain == pytest.approx(1 / 3)
    assert summarize([]).n == 0 and summarize([_s(0.3, "no pain")]).sem_amgs is None
