"""Explicit padding (reflect / replicate / circular) and its adjoint, for layers' backward pass.

Each padding mode is a gather: padded position ``i`` (``-lo <= i < n + hi``) reads input
position ``source_index(...)[i + lo]``. Its adjoint is the matching scatter-add, so the
gradient that reached a padded border position flows back onto the input element it copied.
"""

from __future__ import annotations

import numpy as np

MODES = ("reflect", "replicate", "circular")


def source_index(n: int, lo: int, hi: int, mode: str) -> np.ndarray:
    """Input index read by each of the ``lo + n + hi`` padded positions of one dimension.

    Matches ``numpy.pad`` modes reflect / edge / wrap, i.e. torch's reflect / replicate / circular.

    Examples
    --------
    >>> source_index(4, 2, 2, "reflect").tolist()
    [2, 1, 0, 1, 2, 3, 2, 1]
    >>> source_index(4, 2, 2, "replicate").tolist()
    [0, 0, 0, 1, 2, 3, 3, 3]
    >>> source_index(4, 2, 2, "circular").tolist()
    [2, 3, 0, 1, 2, 3, 0, 1]
    """
    i = np.arange(-lo, n + hi)
    if mode == "replicate":
        return np.clip(i, 0, n - 1)
    if mode == "circular":
        return i % n
    if mode == "reflect":
        period = max(2 * (n - 1), 1)  # n == 1 allows no reflect padding; index 0 only
        j = i % period
        return np.where(j < n, j, period - j)
    raise ValueError(f"padding_mode={mode!r} is not one of {MODES}")


def pad(x: np.ndarray, padding: tuple[tuple[int, int], ...], mode: str) -> np.ndarray:
    """Pad the spatial axes (2, 3, ...) of a batched ``x`` by ``(lo, hi)`` pairs in ``mode``."""
    for axis, (lo, hi) in enumerate(padding, start=2):
        if lo or hi:
            x = np.take(x, source_index(x.shape[axis], lo, hi, mode), axis=axis)
    return x


def pad_adjoint(grad: np.ndarray, padding: tuple[tuple[int, int], ...], mode: str) -> np.ndarray:
    """Adjoint of :func:`pad`: fold the gradient of the padded array back onto the input.

    The interior maps one-to-one; each border slice is added onto the input slice it copied.
    """
    for axis, (lo, hi) in enumerate(padding, start=2):
        if lo or hi:
            g = np.moveaxis(grad, axis, 0)
            n = g.shape[0] - lo - hi
            folded = g[lo:lo + n].copy()
            border = np.r_[0:lo, lo + n:lo + n + hi]
            np.add.at(folded, source_index(n, lo, hi, mode)[border], g[border])
            grad = np.moveaxis(folded, 0, axis)
    return grad
