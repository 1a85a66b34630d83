"""Small concurrency helpers: work ahead in a background thread, and an order-keeping thread pool.

Threads (not processes) suffice for what the pipeline runs in parallel: ffmpeg decodes in its own
process, and OpenCV's decoders and detectors and torch's kernels release the GIL.
"""

from __future__ import annotations

import queue
import threading
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Iterable, Iterator, TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")


def prefetch(items: Iterator[Item], depth: int) -> Iterator[Item]:
    """Run ``items`` in a background thread, ``depth`` items ahead; its exceptions re-raise here."""
    results: queue.Queue = queue.Queue(maxsize=max(1, depth))
    stop = threading.Event()
    done = object()

    def work() -> None:
        try:
            for item in items:
                while not stop.is_set():
                    try:
                        results.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            results.put(done)
        except BaseException as error:  # handed to the consumer, which re-raises it
            results.put(error)

    thread = threading.Thread(target=work, name="prefetch", daemon=True)
    thread.start()
    try:
        while (item := results.get()) is not done:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        thread.join()


def ordered_map(function: Callable[[Item], Result], items: Iterable[Item], workers: int,
                ahead: int | None = None) -> Iterator[Result]:
    """``map(function, items)`` on ``workers`` threads, results in input order, at most ``ahead`` in flight.

    ``workers`` <= 1 runs in the calling thread. An exception of ``function`` re-raises when its
    item's turn comes, so a caller that wants to record and skip failures catches them inside
    ``function``. Items are consumed lazily: a long list of clips is never all in memory at once.
    """
    if workers <= 1:
        yield from map(function, items)
        return
    limit = ahead or 2 * workers
    with ThreadPoolExecutor(max_workers=workers) as pool:
        running: deque = deque()
        for item in items:
            running.append(pool.submit(function, item))
            if len(running) >= limit:
                yield running.popleft().result()
        while running:
            yield running.popleft().result()


def per_thread(factory: Callable[[], Result]) -> Callable[[], Result]:
    """A getter that builds one object per thread with ``factory`` (e.g. a detector that is not thread-safe)."""
    local = threading.local()

    def get() -> Result:
        if not hasattr(local, "value"):
            local.value = factory()
        return local.value

    return get
