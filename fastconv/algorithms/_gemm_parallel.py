"""Tile-level parallelism for the GEMM algorithms.

Each worker thread takes whole tiles from a shared queue and packs, multiplies and scatters them
itself, with single-threaded BLAS and the serial compiled kernels (both release the GIL). Workers
never meet inside a tile, so a core that is busy elsewhere delays only its own tiles, and each
tile stays in its core's cache from packing to product. OpenBLAS's own threads, by contrast, meet
at barriers inside every product: on the reference machine under load (11 runnable processes
on 2 cores) resnet50.3x3c128s2 ran 4-7x slower with two BLAS threads than with one.

BLAS is held to one thread for the duration of every call that multiplies matrices, through
threadpoolctl, also when the call is too small to share: OpenBLAS's own threads spin for ~0.1 s
after a product, and on two cores that spinning halved the speed of the calls that followed (ours
or another library's).
Without threadpoolctl, tiles run in the calling thread and BLAS keeps its own threads.
"""

from __future__ import annotations

import contextlib
import functools
import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, TypeVar

from .. import _threads
from ._layout import Scratch

if TYPE_CHECKING:
    from concurrent.futures import ThreadPoolExecutor

Item = TypeVar("Item")

#: Multiply-adds below which a call runs in the calling thread (a hand-off costs ~50 us).
PARALLEL_MIN_MACS = 4_000_000

#: Ranges per worker that :func:`shares` cuts work into.
SHARES_PER_WORKER = 4

_pool: ThreadPoolExecutor | None = None
_pool_size = 0
_pool_lock = threading.Lock()


def workers(macs: int) -> int:
    """Threads a call of ``macs`` multiply-adds should use: fastconv's thread setting when the call
    is big enough and BLAS can be held to one thread, else 1."""
    n = _threads.get_num_threads()
    return n if n > 1 and macs >= PARALLEL_MIN_MACS and _blas_controller() is not None else 1


def for_each(items: Sequence[Item], task: Callable[[Item, Scratch], None], n: int, dtype, *,
             blas: bool = True) -> list[Scratch]:
    """Run ``task(item, scratch)`` for every item on ``n`` workers (the caller is one), each with its
    own :class:`Scratch`, released at the end; returns the scratches, where tasks may keep
    per-worker accumulators. ``blas=False`` says the tasks run compiled kernels only: BLAS's
    threads are then left as they are (holding them costs ~6 us a call)."""
    scratches = [Scratch(dtype) for _ in range(max(1, min(n, len(items))))]
    try:
        with _single_threaded_blas() if blas else contextlib.nullcontext():
            _run(items, task, scratches)
    finally:
        for scratch in scratches:
            scratch.release()
    return scratches


def run_steps(steps: Sequence[Callable[[], None]], n: int, dtype, *, blas: bool = True) -> None:
    """Run prepared, independent steps (``functools.partial`` of kernels) on ``n`` workers:
    :func:`for_each` without per-worker scratch, for work of several kinds in one hand-off."""
    for_each(steps, lambda step, _: step(), n, dtype, blas=blas)


def _run(items: Sequence[Item], task: Callable[[Item, Scratch], None], scratches: list[Scratch]) -> None:
    if len(scratches) == 1:
        for item in items:
            task(item, scratches[0])
    else:
        _run_on_workers(items, task, scratches)


def _run_on_workers(items: Sequence[Item], task: Callable[[Item, Scratch], None], scratches: list[Scratch]) -> None:
    queue = iter(items)
    lock = threading.Lock()

    def work(scratch: Scratch) -> None:
        while True:
            with lock:
                item = next(queue, queue)
            if item is queue:
                return
            task(item, scratch)

    futures = [_executor(len(scratches) - 1).submit(work, s) for s in scratches[1:]]
    try:
        work(scratches[0])
    finally:
        for future in futures:
            future.result()


def split(count: int, parts: int) -> list[tuple[int, int]]:
    """``[start, stop)`` ranges cutting ``count`` into at most ``parts`` near-equal non-empty pieces."""
    parts = max(1, min(parts, count))
    return [(count * i // parts, count * (i + 1) // parts) for i in range(parts)]  # integers: linspace cost 14-22 us


def shares(count: int, n: int) -> list[tuple[int, int]]:
    """``count`` cut into ``SHARES_PER_WORKER`` ranges per worker (one range when ``n`` is 1), for
    :func:`for_each`'s queue to balance: cores run at different speeds (on the reference machine
    one vCPU ran the same product 1.5x slower than the other for minutes), and an even split
    leaves the faster one idle while the slower finishes its half."""
    return split(count, SHARES_PER_WORKER * n) if n > 1 else [(0, count)]


@functools.lru_cache(maxsize=1)
def _blas_controller():
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:
        return None
    return ThreadpoolController()


@contextlib.contextmanager
def _single_threaded_blas():
    """BLAS at one thread for the enclosed work, then as it was. Calls the BLAS libraries' own
    setters (a few us) rather than threadpoolctl's ``limit`` (~18 us, which re-inspects them):
    this runs several times in every call."""
    controller = _blas_controller()
    libraries = [lib for lib in controller.lib_controllers if lib.user_api == "blas"] if controller else []
    saved = [lib.get_num_threads() for lib in libraries]
    for lib in libraries:
        lib.set_num_threads(1)
    try:
        yield
    finally:
        for lib, n in zip(libraries, saved):
            lib.set_num_threads(n)


def _executor(size: int) -> ThreadPoolExecutor:
    # not at import: concurrent.futures is slow to load
    from concurrent.futures import ThreadPoolExecutor
    global _pool, _pool_size
    with _pool_lock:
        if _pool is None or _pool_size < size:
            _pool, _pool_size = ThreadPoolExecutor(max_workers=size, thread_name_prefix="fastconv-gemm"), size
        return _pool
