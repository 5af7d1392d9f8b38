"""One-axis discrete Fourier transforms, by the FFT library or as a BLAS matrix product.

The FFT library is ``scipy.fft`` (threaded through ``workers``) when installed, else
``numpy.fft``; it is imported lazily so that ``import fastconv`` never loads SciPy. The
matrix method multiplies by the DFT matrix restricted to the stored samples and the
kept outputs, which beats the FFT on short axes (BLAS runs many times faster per
operation than a radix FFT, and the matrix skips zero samples and discarded outputs).

Conventions: a frame of ``length`` samples; forward transforms take the samples stored
at positions ``0 .. n-1`` (or at ``positions``), the rest being zero; a real forward
transform keeps frequencies ``0 .. length//2``; inverse transforms return the first
``keep`` samples.
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
    """The smallest length >= n whose prime factors pocketfft (SciPy's and NumPy's) handles
    with fast passes: 2, 3, 5 for real transforms, also 7 and 11 for complex ones (the rule
    of ``scipy.fft.next_fast_len``, computed here so that planning never imports SciPy)."""
    primes = (2, 3, 5) if real else (2, 3, 5, 7, 11)
    while True:
        m = n
        for p in primes:
            while m % p == 0:
                m //= p
        if m == 1:
            return n
        n += 1


def forward_axis(a: np.ndarray, axis: int, length: int, method: str, real: bool,
                 positions: np.ndarray | None = None) -> np.ndarray:
    """Spectrum of ``a`` along ``axis``; ``positions`` (matrix method only) are the frame
    positions of ``a``'s samples along ``axis`` (default ``0, 1, ...``)."""
    if method == "fft":
        transform = _module().rfft if real else _module().fft
        return transform(a, n=length, axis=axis, **_workers())
    if positions is None:
        positions = np.arange(a.shape[axis])
    return _along(a, _forward_matrix(length, tuple(positions.tolist()), real, a.dtype.char), axis, real)


def inverse_axis(a: np.ndarray, axis: int, length: int, keep: int, method: str, real: bool) -> np.ndarray:
    """First ``keep`` samples of the inverse transform along ``axis`` (real output if ``real``)."""
    if method == "fft":
        transform = _module().irfft if real else _module().ifft
        out = transform(a, n=length, axis=axis, **_workers())
        return out[(slice(None),) * (axis % out.ndim) + (slice(0, keep),)]
    return _along(a, _inverse_matrix(length, a.shape[axis], keep, real, a.dtype.char), axis, real)


def _along(a: np.ndarray, matrix: np.ndarray, axis: int, real: bool) -> np.ndarray:
    """Contract ``a``'s ``axis`` with the rows of ``matrix``. Real transforms (on the last axis)
    run as real products on interleaved (re, im) columns or rows."""
    axis %= a.ndim
    shape = list(a.shape)
    if axis == a.ndim - 1:
        flat = np.ascontiguousarray(a).reshape(-1, shape[-1])
        if real and a.dtype.kind == "c":  # c2r: the matrix rows pair with (re, im)
            flat = flat.view(flat.real.dtype)
        out = flat @ matrix
        if real and a.dtype.kind != "c":  # r2c: the (cos, -sin) column pairs are (re, im)
            out = out.view(np.result_type(out.dtype, np.complex64))
        return out.reshape(*shape[:-1], -1)
    # One large product with the axis in front beats one small product per leading index.
    # Results stay axis-major (a view) so that the next product along this axis copies nothing.
    front = np.ascontiguousarray(np.moveaxis(a, axis, 0)).reshape(shape[axis], -1)
    out = (matrix.T @ front).reshape(-1, *shape[:axis], *shape[axis + 1:])
    return np.moveaxis(out, 0, axis)


@functools.lru_cache(maxsize=256)
def _forward_matrix(length: int, positions: tuple[int, ...], real: bool, char: str) -> np.ndarray:
    """(samples, frequencies) DFT matrix; real: (samples, 2*(length//2+1)) with (cos, -sin) pairs."""
    freqs = np.arange(length // 2 + 1 if real else length)
    angle = -2 * np.pi * (np.outer(positions, freqs) % length) / length
    if real:
        dtype = np.dtype(char).type(0).real.dtype
        return np.stack([np.cos(angle), np.sin(angle)], axis=-1).reshape(len(positions), -1).astype(dtype)
    return np.exp(1j * angle).astype(np.dtype(char))


@functools.lru_cache(maxsize=256)
def _inverse_matrix(length: int, frequencies: int, keep: int, real: bool, char: str) -> np.ndarray:
    """(frequencies, keep) inverse DFT matrix including 1/length; real (c2r): (2*frequencies, keep)
    acting on (re, im) pairs, counting each frequency with its mirror image."""
    angle = 2 * np.pi * (np.outer(np.arange(frequencies), np.arange(keep)) % length) / length
    if not real:
        return (np.exp(1j * angle) / length).astype(np.dtype(char))
    weight = np.full((frequencies, 1), 2.0)
    weight[0] = 1.0
    if length % 2 == 0:
        weight[-1] = 1.0
    pairs = np.stack([weight * np.cos(angle), -weight * np.sin(angle)], axis=1) / length
    return pairs.reshape(2 * frequencies, keep).astype(np.dtype(char).type(0).real.dtype)
