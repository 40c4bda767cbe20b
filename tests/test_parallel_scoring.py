"""Batch scoring on several worker threads (``amgs.parallel``): the same scores, in file order, bad files in place."""

from __future__ import annotations

import shutil

from amgs.batch import score_paths
from amgs.parallel import ordered_map


def test_ordered_map_keeps_input_order_with_a_bounded_look_ahead():
    import threading
    import time

    in_flight, most = 0, 0
    lock = threading.Lock()

    def slow_first(i: int) -> int:
        nonlocal in_flight, most
        with lock:
            in_flight += 1
            most = max(most, in_flight)
        time.sleep(0.02 if i % 3 == 0 else 0.001)  # later items finish first
        with lock:
            in_flight -= 1
        return i * i

    assert list(ordered_map(slow_first, range(20), workers=3, ahead=4)) == [i * i for i in range(20)]
    assert 1 < most <= 3


def test_two_workers_give_the_scores_of_one_in_the_same_order(scorer, synth_set, tmp_path):
    images = (
        sorted((synth_set / "pain").glob("*.jpg"))[:4] + sorted((synth_set / "no pain").glob("*.jpg"))[:4]
    )
    assert len(images) == 8
    folder = tmp_path / "mixed"
    folder.mkdir()
    for i, src in enumerate(images):
        shutil.copy(src, folder / f"{i:02d}_{src.name}")
    (folder / "03b_corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 not a jpeg")

    one = list(score_paths(scorer, [folder], progress=False, workers=1))
    two = list(score_paths(scorer, [folder], progress=False, workers=2))
    assert [p for p, _ in one] == [p for p, _ in two] == sorted(folder.iterdir())
    for (path, a), (_, b) in zip(one, two, strict=True):
        if path.name == "03b_corrupt.jpg":
            assert isinstance(a, str) and a == b and "03b_corrupt.jpg" in a
            continue
        # each worker has its own interpreter of the same model: bit-identical outputs
        assert (a.p_pain, a.outcome, a.au, a.domain_distance) == (
            b.p_pain,
            b.outcome,
            b.au,
            b.domain_distance,
        )
