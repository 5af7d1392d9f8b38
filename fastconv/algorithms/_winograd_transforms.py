"""Winograd F(m, 3) transform matrices, their N-d Kronecker forms, and the tile tables the
kernels walk (pure NumPy, cheap to build; the kernels live in ``_winograd_kernels``).

A 1-D tile of ``alpha = m + 2`` inputs ``d`` and a 3-tap filter ``g`` give ``m`` outputs of the
correlation ``y[i] = sum_k d[i + k] g[k]`` as ``y = AT @ ((G @ g) * (BT @ d))`` (Lavin & Gray,
"Fast Algorithms for Convolutional Neural Networks", 2016, interpolation points 0, +-1, (+-2), inf).
N-d tiles apply the same matrices along every axis.
"""

from __future__ import annotations

import functools
import math

import numpy as np

from .._geometry import ConvGeometry

#: m -> (BT (alpha, alpha), G (alpha, 3), AT (m, alpha)).
_MATRICES = {
    2: (
        [[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]],
        [[1, 0, 0], [1 / 2, 1 / 2, 1 / 2], [1 / 2, -1 / 2, 1 / 2], [0, 0, 1]],
        [[1, 1, 1, 0], [0, 1, -1, -1]],
    ),
    4: (
        [[4, 0, -5, 0, 1, 0], [0, -4, -4, 1, 1, 0], [0, 4, -4, -1, 1, 0],
         [0, -2, -1, 2, 1, 0], [0, 2, -1, -2, 1, 0], [0, 4, 0, -5, 0, 1]],
        [[1 / 4, 0, 0], [-1 / 6, -1 / 6, -1 / 6], [-1 / 6, 1 / 6, -1 / 6],
         [1 / 24, 1 / 12, 1 / 6], [1 / 24, -1 / 12, 1 / 6], [0, 0, 1]],
        [[1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -2, 0], [0, 1, 1, 4, 4, 0], [0, 1, -1, 8, -8, 1]],
    ),
}

#: Output tile sizes implemented.
TILE_SIZES = tuple(_MATRICES)


@functools.lru_cache(maxsize=None)
def matrices(m: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(BT, G, AT)`` of F(m, 3) in float64."""
    return tuple(np.array(a, dtype=np.float64) for a in _MATRICES[m])


@functools.lru_cache(maxsize=None)
def kron_power(m: int, which: int, power: int) -> np.ndarray:
    """Kronecker power of ``matrices(m)[which]`` (``[[1.]]`` for power 0): its action on the
    row-major flattened tile of ``power`` axes."""
    out = np.ones((1, 1))
    for _ in range(power):
        out = np.kron(out, matrices(m)[which])
    return out


def weight_transform_adjoint(du: np.ndarray, geom: ConvGeometry, m: int, dw: np.ndarray,
                             columns: tuple[int, int]) -> None:
    """The transpose of the filter transform (``_winograd_kernels.FILTER_TRANSFORM``: the
    Kronecker power of G on each filter) on the filters ``columns`` (a range of O*Cg): U's
    gradient du (alpha^d, O*Cg) -> the filters' gradient dw (O*Cg, 3^d), by the compiled
    ``_winograd_kernels.filter_adjoint`` (complex data, whose vectors it does not shuffle, by a
    BLAS product and a transposing copy)."""
    g_nd = kron_power(m, 1, geom.nd).astype(du.dtype)
    c0, c1 = columns
    if du.dtype.kind == "c":
        dw[c0:c1] = (g_nd.T @ du[:, c0:c1]).T
    else:
        from ._winograd_kernels import filter_adjoint
        filter_adjoint(du, g_nd, dw, c0, c1)


def tiles(geom: ConvGeometry, m: int) -> tuple[int, ...]:
    """Number of m-wide output tiles per spatial dimension (the last one may be partial)."""
    return tuple(-(-o // m) for o in geom.out_size)


@functools.lru_cache(maxsize=256)
def row_tables(geom: ConvGeometry, m: int) -> tuple[np.ndarray, np.ndarray]:
    """Row tables of the leading (all but last) spatial dimensions, flattened row-major.

    Returns ``(src, dst)``: ``src[r, k]`` is the flat input row read by position ``k`` of the
    ``alpha^(d-1)`` leading tile positions of tile row ``r``, ``dst[r, k]`` the flat output row
    written by position ``k`` of its ``m^(d-1)`` outputs; -1 where that falls in the padding or
    beyond the output (kernels skip it). Cached (0.25 ms to build for a 14x14 layer, 3% of a
    call), so callers must not modify them.
    """
    alpha = m + 2
    lead = range(geom.nd - 1)
    t = tiles(geom, m)
    src_axes, dst_axes = [], []
    for q in lead:
        lo, hi = geom.padding[q]
        start = np.arange(t[q])[:, None] * m
        pos = start + np.arange(alpha) - lo  # input index read
        src_axes.append(np.where((pos >= 0) & (pos < geom.in_size[q] + min(hi, 0)), pos, -1))
        out = start + np.arange(m)
        dst_axes.append(np.where(out < geom.out_size[q], out, -1))
    return (_flat_rows(src_axes, geom.in_size[:-1], alpha),
            _flat_rows(dst_axes, geom.out_size[:-1], m))


def _flat_rows(per_axis: list[np.ndarray], sizes: tuple[int, ...], width: int) -> np.ndarray:
    """Per-axis (tiles, width) index tables -> (prod tiles, width^axes) flat row-major indices,
    -1 where any axis is -1."""
    n_axes = len(per_axis)
    flat = np.zeros((1,) * 2 * n_axes, dtype=np.int64)
    valid = np.ones_like(flat, dtype=bool)
    strides = np.cumprod((1,) + sizes[::-1])[-2::-1] if n_axes else ()
    for q, (a, stride) in enumerate(zip(per_axis, strides)):
        shape = [1] * 2 * n_axes
        shape[q], shape[n_axes + q] = a.shape
        a = a.reshape(shape)
        flat, valid = flat + a * stride, valid & (a >= 0)
    n_tiles = math.prod(a.shape[0] for a in per_axis)
    return np.where(valid, flat, -1).reshape(n_tiles, width ** n_axes)
