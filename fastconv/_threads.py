"""How many threads fastconv computes with: its worker threads and the BLAS behind ``matmul``.

One number governs both, ``set_num_threads(n)`` or ``$FASTCONV_NUM_THREADS``; by default
every core the process may run on. Every algorithm parallelises the same way
(``algorithms._gemm_parallel``): ``n`` worker threads (the caller among them) take items of
work and run serial, GIL-free numba kernels and single-threaded BLAS on them, so at most ``n``
threads compute at any moment (no oversubscription) and none spins once a call is over. A call
made without workers (too small to share) uses BLAS with ``n`` threads. Algorithm authors keep
it that way: no numba ``prange`` (its OpenMP threads spin after each call).

Nothing is imported at ``import fastconv`` (it must stay fast): :func:`sync` runs before every
planned call and applies an explicit setting to BLAS, process-wide through threadpoolctl when
installed (without it, BLAS keeps its own default and the algorithms run on one worker).
"""

from __future__ import annotations

import functools
import operator
import os

_ENV = "FASTCONV_NUM_THREADS"


@functools.lru_cache(maxsize=1)
def available_cores() -> int:
    """The cores this process may run on (its CPU affinity where the OS reports one), read once:
    every call asks for the thread count several times, at ~2 us per read of the affinity."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def _validated(n, source: str) -> int:
    if isinstance(n, str) and n.strip().isdigit():
        n = int(n)
    try:
        if isinstance(n, bool):
            raise TypeError
        n = operator.index(n)
    except TypeError:
        raise TypeError(f"set_num_threads: n={n!r} ({source}) must be an int or None") from None
    if n < 1:
        raise ValueError(f"set_num_threads: n={n!r} ({source}) must be a whole number >= 1 "
                         f"(this machine has {available_cores()} cores)")
    return min(n, available_cores())


#: The explicit setting, or None for "every core".
_requested: int | None = _validated(os.environ[_ENV], f"${_ENV}") if os.environ.get(_ENV) else None
#: The count BLAS was last limited to (None: never limited).
_blas_limit: int | None = None


def get_num_threads() -> int:
    """The number of threads fastconv computes with."""
    return _requested if _requested is not None else available_cores()


def set_num_threads(n: int | None) -> None:
    """Use ``n`` threads for fastconv's kernels and BLAS (None: every core, the default).

    Also settable with ``$FASTCONV_NUM_THREADS``. Values above the available cores are capped
    at that number. Applies to BLAS process-wide (through threadpoolctl, when installed).

    Examples
    --------
    >>> import fastconv
    >>> fastconv.set_num_threads(1)
    >>> fastconv.get_num_threads()
    1
    >>> fastconv.set_num_threads(None)
    """
    global _requested
    _requested = None if n is None else _validated(n, "argument")
    sync()


def _limit_blas(n: int) -> None:
    global _blas_limit
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return
    threadpool_limits(limits=n, user_api="blas")
    _blas_limit = n


def sync() -> None:
    """Apply the setting to BLAS; free when nothing changed."""
    n = get_num_threads()
    if _blas_limit != n and (_requested is not None or _blas_limit is not None):
        _limit_blas(n)
