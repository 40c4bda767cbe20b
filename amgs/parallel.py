"""Batch scoring on several cores: decode + preprocess + invoke in worker threads, results in input order.

JPEG decoding (Pillow), resizing and the LiteRT invoke all release the GIL, so threads scale. Each
worker thread gets its own interpreter (a TFLite interpreter is not safe to share between threads):
``workers`` single-threaded interpreters keep ``workers`` cores busy with whole images, which beats
one interpreter with several threads (the invoke's parallel part is small at batch 1) and overlaps
every image's decode with other images' invokes. Order is preserved with a bounded look-ahead, so
memory stays flat however long the list of files is.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

from amgs.runtime import Model
from amgs.scoring import Scorer

T = TypeVar("T")
R = TypeVar("R")


def ordered_map(
    fn: Callable[[T], R], items: Iterable[T], workers: int, ahead: int | None = None
) -> Iterator[R]:
    """``map(fn, items)`` on ``workers`` threads, yielding in input order with at most ``ahead`` in flight."""
    if workers <= 1:
        yield from map(fn, items)
        return
    ahead = ahead or 2 * workers
    pending: deque[Future[R]] = deque()
    with ThreadPoolExecutor(workers, thread_name_prefix="amgs-score") as pool:
        for item in items:
            pending.append(pool.submit(fn, item))
            if len(pending) >= ahead:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


class ScorerPool:
    """One :class:`Scorer` per worker thread; the first thread reuses the scorer it was given."""

    def __init__(self, scorer: Scorer) -> None:
        self._first = scorer
        self._taken = False
        self._lock = threading.Lock()
        self._local = threading.local()

    def get(self) -> Scorer:
        s = getattr(self._local, "scorer", None)
        if s is None:
            with self._lock:
                if not self._taken:
                    self._taken = True
                    s = self._first
            if s is None:
                m = self._first.model
                s = Scorer(Model(m.path, num_threads=1, backend=m.backend, accelerator=m.accelerator))  # type: ignore[arg-type]
            self._local.scorer = s
        return s
