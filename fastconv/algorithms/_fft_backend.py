"""The FFT library: ``scipy.fft`` (threaded through ``workers``) when installed, else ``numpy.fft``.

Imported lazily so that ``import fastconv`` never loads SciPy. Both keep float32 data in
complex64 (NumPy >= 2).
"""

from __future__ import annotations

import functools

import numpy as np


@functools.cache
def _module():
    try:
        import scipy.fft as module
    except ImportError:  # the optional extra `fft` is not installed
        import numpy.fft as module
    return module


def _workers() -> dict:
    if _module() is np.fft:
        return {}
    from .. import _threads
    return {"workers": _threads.get_num_threads()}


@functools.lru_cache(maxsize=4096)
def next_fast_len(n: int, real: bool) -> int:
    """The smallest length >= n the FFT library transforms quickly (5-smooth without SciPy)."""
    module = _module()
    if module is not np.fft:
        return module.next_fast_len(n, real=real)
    while True:
        m = n
        for p in (2, 3, 5):
            while m % p == 0:
                m //= p
        if m == 1:
            return n
        n += 1


def forward(a: np.ndarray, axes: tuple[int, ...], complex_: bool) -> np.ndarray:
    """Spectrum over ``axes``; real data keeps the half spectrum of the last axis."""
    module = _module()
    return (module.fftn if complex_ else module.rfftn)(a, axes=axes, **_workers())


def inverse_head(spectrum: np.ndarray, axes: tuple[int, ...], lengths: tuple[int, ...], keep: tuple[int, ...],
                 complex_: bool) -> np.ndarray:
    """Inverse transform over ``axes`` (full lengths ``lengths``), keeping the first ``keep[i]``
    samples of each: one axis at a time, cropping before the next so no discarded sample
    reaches a later transform."""
    module, workers = _module(), _workers()
    out = spectrum
    for i, (axis, length, k) in enumerate(zip(axes, lengths, keep)):
        index = [slice(None)] * out.ndim
        index[axis] = slice(0, k)
        if i == len(axes) - 1 and not complex_:
            out = module.irfft(out, n=length, axis=axis, **workers)
        else:
            out = module.ifft(out, n=length, axis=axis, **workers)
        out = out[tuple(index)]
    return out
