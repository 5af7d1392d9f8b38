"""Scratch memory kept between calls, so that its pages stay mapped.

glibc serves allocations above its mmap threshold (128 KiB in a fresh process, adapting up to
32 MiB as large blocks are freed) with fresh mappings, which the kernel zero-fills page by page
on first touch; blocks freed at the top of a worker thread's arena are handed back the same way.
An algorithm that allocated its im2col columns or Winograd tiles anew on every call spent up to
40% of the call in page faults (winograd4 on resnet50.3x3c64 in a fresh process, 2 threads: 17 ms
against 10 ms once the buffers were reused). Scratch buffers therefore come from here and go back
here when a call ends (``_layout.Scratch``); free buffers are held up to the workspace budget
(``fastconv.set_workspace_limit``), and :func:`release_workspace` frees them all.

Thread-safe: a buffer belongs to one caller from :func:`take` until :func:`give_back`.
"""

from __future__ import annotations

import threading

import numpy as np

from . import _config

#: Smaller buffers are served by malloc's heap without page faults; they are not pooled.
MIN_POOLED_BYTES = 256 * 2**10
#: A free buffer serves a request of at least this fraction of its size (no huge buffer for a small need).
MIN_FILL = 0.5
#: Pooled buffers are allocated in multiples of this, so that near sizes share buffers.
GRANULE = 64 * 2**10
#: Bytes of a cache line and of an AVX-512 vector: where buffers start.
ALIGNMENT = 64

_free: list[np.ndarray] = []
_lock = threading.Lock()


def take(nbytes: int) -> np.ndarray:
    """A uint8 buffer of at least ``nbytes`` starting on a cache line, reused when a free one fits."""
    if nbytes < MIN_POOLED_BYTES:
        return aligned_empty(nbytes)
    with _lock:
        fits = [i for i, b in enumerate(_free) if nbytes <= b.nbytes and nbytes >= MIN_FILL * b.nbytes]
        if fits:
            return _free.pop(min(fits, key=lambda i: _free[i].nbytes))
    return aligned_empty(-(-nbytes // GRANULE) * GRANULE)


def aligned_empty(nbytes: int) -> np.ndarray:
    """An uninitialised uint8 array of ``nbytes`` whose first byte starts a 64-byte cache line.

    numpy's buffers start 16 bytes into one (malloc's alignment), so every 64-byte vector the
    kernels load or store from a multiple of 16 floats straddles two lines, which costs a second
    access: the direct kernels' correlations ran 1.75x slower from such a start."""
    raw = np.empty(nbytes + ALIGNMENT, dtype=np.uint8)
    start = -raw.ctypes.data % ALIGNMENT
    return raw[start:start + nbytes]


def give_back(buffer: np.ndarray) -> None:
    """Return a buffer from :func:`take`; the oldest free ones are dropped beyond the workspace budget."""
    if buffer.nbytes < MIN_POOLED_BYTES:
        return
    with _lock:
        _free.append(buffer)
        _trim(_config.workspace_bytes)


def held_bytes() -> int:
    """Bytes of free buffers held for the next calls."""
    with _lock:
        return sum(b.nbytes for b in _free)


def release_workspace() -> None:
    """Free the scratch buffers fastconv keeps between calls (up to the workspace budget).

    Examples
    --------
    >>> import fastconv
    >>> fastconv.release_workspace()
    """
    with _lock:
        _free.clear()


def trim() -> None:
    """Drop free buffers beyond the (possibly lowered) workspace budget."""
    with _lock:
        _trim(_config.workspace_bytes)


def _trim(limit: int) -> None:
    total = sum(b.nbytes for b in _free)
    while _free and total > limit:
        total -= _free.pop(0).nbytes
