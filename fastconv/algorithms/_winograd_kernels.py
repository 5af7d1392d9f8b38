"""Numba kernels of the Winograd algorithm: input tiles to the transform domain and back.

Both walk *tile rows*: unit ``u = n * rows + r`` is tile row ``r`` (a flat index over the
leading spatial dimensions, see ``_winograd_transforms.row_tables``) of sample ``n``; a tile
row holds ``t_last`` tiles along the last (contiguous) axis. Transform-domain arrays are
``(alpha^d, channels, tiles)`` with tile ``p = (u - u0) * t_last + j``: per transform point
a contiguous (channels x tiles) matrix for the batched matmul between them.

One parallel iteration handles one channel and a block of tile rows (a few hundred tiles).
Along the last axis a tile's ``alpha`` inputs (or ``m`` outputs) are adjacent in memory, so
that transform is applied tile by tile while reading the input (writing the output). The
leading axes are transformed in a small cache-resident scratch whose columns are the block's
tiles, as loops across tiles that vectorise. Padding is applied by reading zeros, so the
input is never copied padded.

The formulas are those of ``_winograd_transforms.matrices`` (tests check they agree);
constants are built from ``one`` so that float32 arithmetic stays float32. Values are passed
as 6-tuples (unused tail entries for F(2,3) and for AT) so one code path serves both tile sizes.
"""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(inline="always")
def _bt(m, one, a):  # pragma: no cover - compiled
    """BT @ a[:alpha] of F(m, 3)."""
    a0, a1, a2, a3, a4, a5 = a
    zero = one - one
    if m == 2:
        return a0 - a2, a1 + a2, a2 - a1, a1 - a3, zero, zero
    two = one + one
    four = two + two
    return (four * (a0 - a2) + (a4 - a2), (a3 + a4) - four * (a1 + a2), four * (a1 - a2) + (a4 - a3),
            two * (a3 - a1) + (a4 - a2), two * (a1 - a3) + (a4 - a2), four * (a1 - a3) + (a5 - a3))


@numba.njit(inline="always")
def _at(m, one, a):  # pragma: no cover - compiled
    """AT @ a[:alpha] of F(m, 3)."""
    a0, a1, a2, a3, a4, a5 = a
    zero = one - one
    if m == 2:
        return a0 + a1 + a2, a1 - a2 - a3, zero, zero, zero, zero
    two = one + one
    four = two + two
    eight = four + four
    d12, s12, d34, s34 = a1 - a2, a1 + a2, a3 - a4, a3 + a4
    return a0 + s12 + s34, d12 + two * d34, s12 + four * s34, d12 + eight * d34 + a5, zero, zero


@numba.njit(inline="always")
def _column(m, src, row, step, ch, col):  # pragma: no cover - compiled
    """src[row + b*step, ch, col] for b < alpha, as a 6-tuple."""
    a0, a1 = src[row, ch, col], src[row + step, ch, col]
    a2, a3 = src[row + 2 * step, ch, col], src[row + 3 * step, ch, col]
    if m == 2:
        return a0, a1, a2, a3, a3, a3
    return a0, a1, a2, a3, src[row + 4 * step, ch, col], src[row + 5 * step, ch, col]


@numba.njit(inline="always")
def _put(count, dst, row, step, ch, col, vals):  # pragma: no cover - compiled
    """dst[row + i*step, ch, col] = vals[i] for i < count (2, 4 or 6)."""
    dst[row, ch, col] = vals[0]
    dst[row + step, ch, col] = vals[1]
    if count > 2:
        dst[row + 2 * step, ch, col] = vals[2]
        dst[row + 3 * step, ch, col] = vals[3]
    if count > 4:
        dst[row + 4 * step, ch, col] = vals[4]
        dst[row + 5 * step, ch, col] = vals[5]


@numba.njit(inline="always")
def _lead_pass(forward, m, one, src, s_ch, s_col, dst, d_ch, d_col, outer, inner, size):  # pragma: no cover
    """Transform one leading axis of the tile rows of src[:, s_ch] (rows viewed (outer, alpha, inner),
    ``size`` tile columns from ``s_col``) into dst[:, d_ch] (rows (outer, alpha or m, inner), from ``d_col``)."""
    alpha = m + 2
    n_out = alpha if forward else m
    for o in range(outer):
        for i in range(inner):
            s_row = o * alpha * inner + i
            d_row = o * n_out * inner + i
            if forward:
                for q in range(size):
                    vals = _bt(m, one, _column(m, src, s_row, inner, s_ch, s_col + q))
                    _put(alpha, dst, d_row, inner, d_ch, d_col + q, vals)
            else:
                for q in range(size):
                    vals = _at(m, one, _column(m, src, s_row, inner, s_ch, s_col + q))
                    _put(m, dst, d_row, inner, d_ch, d_col + q, vals)


@numba.njit(inline="always")
def _edge_tile(m, one, xrow, w0, col_stop, edge, dst, row, ch, col):  # pragma: no cover - compiled
    """One tile of a row whose columns w0 + (0..alpha-1) may leave [0, col_stop): zeros there."""
    zero = one - one
    for b in range(m + 2):
        w = w0 + b
        edge[b] = xrow[w] if 0 <= w < col_stop else zero
    _put(m + 2, dst, row, 1, ch, col, _bt(m, one, (edge[0], edge[1], edge[2], edge[3], edge[4], edge[5])))


@numba.njit(inline="always")
def _input_transform(m, x, src_rows, lo, col_stop, nd, t_last, u0, u1, v):  # pragma: no cover - compiled
    """v[:, c, tiles of units u0..u1] = transformed input tiles of every channel c.

    x (N, C, R_in, W_in); src_rows (rows, alpha^(nd-1)) input row per leading tile position
    (-1: zero); input column ``w - lo`` sits at tile-row column ``w``, valid below ``col_stop``;
    v (alpha^nd, C, >= (u1-u0)*t_last).
    """
    channels = x.shape[1]
    rows, kk = src_rows.shape
    alpha = m + 2
    one = v.dtype.type(1)
    zero = one - one
    size = (u1 - u0) * t_last
    # tiles j whose alpha columns j*m - lo + (0..alpha-1) all lie in [0, col_stop)
    j_in = min(max(0, -(-lo // m)), t_last)
    j_out = max(j_in, min(t_last, (col_stop + lo - alpha) // m + 1))
    edge = np.zeros(6, dtype=v.dtype)
    # the last axis goes straight from x into rows (k, nu): of v itself in 1-D, else of a scratch
    scratch = np.empty((kk * alpha, 1, size if nd > 1 else 0), dtype=v.dtype)
    spare = np.empty((kk * alpha, 1, size if nd > 2 else 0), dtype=v.dtype)
    for c in range(channels):
        dst, ch = (scratch, 0) if nd > 1 else (v, c)
        for uu in range(u1 - u0):
            n = (u0 + uu) // rows
            r = (u0 + uu) - n * rows
            p = uu * t_last
            for k in range(kk):
                s = src_rows[r, k]
                if s < 0:
                    for nu in range(alpha):
                        for j in range(t_last):
                            dst[k * alpha + nu, ch, p + j] = zero
                    continue
                xrow = x[n, c, s]
                for j in range(j_in, j_out):  # interior tiles: no bounds to check
                    w = j * m - lo
                    vals = _bt(m, one, (xrow[w], xrow[w + 1], xrow[w + 2], xrow[w + 3],
                                        xrow[w + min(4, alpha - 1)], xrow[w + alpha - 1]))
                    _put(alpha, dst, k * alpha, 1, ch, p + j, vals)
                for j in range(j_in):  # tiles reaching into the padding
                    _edge_tile(m, one, xrow, j * m - lo, col_stop, edge, dst, k * alpha, ch, p + j)
                for j in range(j_out, t_last):
                    _edge_tile(m, one, xrow, j * m - lo, col_stop, edge, dst, k * alpha, ch, p + j)
        # leading axes; the last pass writes into v
        src, other = scratch, spare
        for axis in range(nd - 1):
            inner = alpha ** (nd - 1 - axis)
            if axis == nd - 2:
                _lead_pass(True, m, one, src, 0, 0, v, c, 0, alpha ** axis, inner, size)
            else:
                _lead_pass(True, m, one, src, 0, 0, other, 0, 0, alpha ** axis, inner, size)
                src, other = other, src


@numba.njit(inline="always")
def _output_transform(m, prod, dst_rows, nd, t_last, u0, u1, y):  # pragma: no cover - compiled
    """y[n, o, rows of units u0..u1] = inverse-transformed products prod (alpha^nd, O, tiles).

    dst_rows (rows, m^(nd-1)) output row per leading output position (-1: beyond the output);
    y (N, O, R_out, W_out).
    """
    channels = y.shape[1]
    w_out = y.shape[3]
    rows, km = dst_rows.shape
    alpha = m + 2
    one = y.dtype.type(1)
    size = (u1 - u0) * t_last
    j_full = min(t_last, w_out // m)  # tiles whose m outputs all lie in the output
    lead = m * alpha ** (nd - 2) * alpha if nd > 1 else 0
    scratch = np.empty((lead, 1, size), dtype=y.dtype)
    spare = np.empty((lead if nd > 2 else 0, 1, size), dtype=y.dtype)
    for o in range(channels):
        # leading axes first, alpha -> m each, rows (m,)*axis + (alpha,)*(nd-axis)
        src, ch, dst, other = prod, o, scratch, spare
        for axis in range(nd - 1):
            _lead_pass(False, m, one, src, ch, 0, dst, 0, 0, m ** axis, alpha ** (nd - 1 - axis), size)
            src, ch = dst, 0
            dst, other = other, dst
        # last axis, tile by tile into the output rows
        for qq in range(km):
            for uu in range(u1 - u0):
                n = (u0 + uu) // rows
                r = (u0 + uu) - n * rows
                d = dst_rows[r, qq]
                if d < 0:
                    continue
                yrow = y[n, o, d]
                p = uu * t_last
                for j in range(t_last):
                    vals = _at(m, one, _column(m, src, qq * alpha, 1, ch, p + j))
                    if j < j_full:
                        yrow[j * m] = vals[0]
                        yrow[j * m + 1] = vals[1]
                        if m == 4:
                            yrow[j * m + 2] = vals[2]
                            yrow[j * m + 3] = vals[3]
                    else:
                        for yy in range(min(m, w_out - j * m)):
                            yrow[j * m + yy] = vals[yy]


# Entry points with the tile size a compile-time constant (strides and formulas specialised);
# serial and GIL-free: callers run chunks on worker threads.
@numba.njit(nogil=True, cache=True)
def _input_transform_2(x, src_rows, lo, col_stop, nd, t_last, u0, u1, v):  # pragma: no cover
    _input_transform(2, x, src_rows, lo, col_stop, nd, t_last, u0, u1, v)


@numba.njit(nogil=True, cache=True)
def _input_transform_4(x, src_rows, lo, col_stop, nd, t_last, u0, u1, v):  # pragma: no cover
    _input_transform(4, x, src_rows, lo, col_stop, nd, t_last, u0, u1, v)


@numba.njit(nogil=True, cache=True)
def _output_transform_2(prod, dst_rows, nd, t_last, u0, u1, y):  # pragma: no cover
    _output_transform(2, prod, dst_rows, nd, t_last, u0, u1, y)


@numba.njit(nogil=True, cache=True)
def _output_transform_4(prod, dst_rows, nd, t_last, u0, u1, y):  # pragma: no cover
    _output_transform(4, prod, dst_rows, nd, t_last, u0, u1, y)


#: m -> input / output transform kernel.
INPUT_TRANSFORM = {2: _input_transform_2, 4: _input_transform_4}
OUTPUT_TRANSFORM = {2: _output_transform_2, 4: _output_transform_4}
