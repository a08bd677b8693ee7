"""Requests sent at once from real threads, as clients on many phones (or one phone sending
again while its first request is in flight) send them."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def run_at_once(count: int, work: Callable[[int], T]) -> list[T]:
    """`work(i)` for each i below `count`, all released together by a barrier; the answers
    in the order they came."""
    answers: list[T] = []
    lock = threading.Lock()
    barrier = threading.Barrier(count)

    def one(index: int) -> None:
        barrier.wait()
        answer = work(index)
        with lock:
            answers.append(answer)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return answers
