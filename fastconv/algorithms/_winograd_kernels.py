"""Numba kernels of the Winograd algorithm: input tiles to the transform domain and back.

Both walk *tile rows*: unit ``u = n * rows + r`` is tile row ``r`` (a flat index over the
leading spatial dimensions, see ``_winograd_transforms.row_tables``) of sample ``n``; a tile
row holds ``t_last`` tiles along the last (contiguous) axis. Transform-domain arrays are
``(alpha^d, channels, tiles)`` with tile ``p = (u - u0) * t_last + j``, the layout the batched
matmul between them wants.

One parallel iteration handles one channel and a block of tile rows (a few hundred tiles):
the tiles are gathered once into a small cache-resident array whose last axis runs over the
block's tiles, and the 1-D transforms are applied along each tile axis in turn as unrolled
formulas vectorised across tiles (one load per input and one store per output; loops over a
single tile row would be too short for SIMD). Padding is applied by reading zeros, so the
input is never copied padded.

The formulas are those of ``_winograd_transforms.matrices`` (tests check they agree);
constants are built from ``one`` so that float32 arithmetic stays float32.
"""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(inline="always")
def _input_tile(m, one, src, dst, q):  # pragma: no cover - compiled
    """dst[:, q] = BT @ src[:, q] for F(m, 3); src and dst are (alpha, n)."""
    if m == 2:
        a0, a1, a2, a3 = src[0, q], src[1, q], src[2, q], src[3, q]
        dst[0, q] = a0 - a2
        dst[1, q] = a1 + a2
        dst[2, q] = a2 - a1
        dst[3, q] = a1 - a3
    else:
        two = one + one
        four = two + two
        a0, a1, a2, a3, a4, a5 = src[0, q], src[1, q], src[2, q], src[3, q], src[4, q], src[5, q]
        dst[0, q] = four * (a0 - a2) + (a4 - a2)
        dst[1, q] = (a3 + a4) - four * (a1 + a2)
        dst[2, q] = four * (a1 - a2) + (a4 - a3)
        dst[3, q] = two * (a3 - a1) + (a4 - a2)
        dst[4, q] = two * (a1 - a3) + (a4 - a2)
        dst[5, q] = four * (a1 - a3) + (a5 - a3)


@numba.njit(inline="always")
def _output_tile(m, one, src, dst, q):  # pragma: no cover - compiled
    """dst[:, q] = AT @ src[:, q] for F(m, 3); src is (alpha, n), dst (m, n)."""
    if m == 2:
        a0, a1, a2, a3 = src[0, q], src[1, q], src[2, q], src[3, q]
        dst[0, q] = a0 + a1 + a2
        dst[1, q] = a1 - a2 - a3
    else:
        two = one + one
        four = two + two
        eight = four + four
        a0, a1, a2, a3, a4, a5 = src[0, q], src[1, q], src[2, q], src[3, q], src[4, q], src[5, q]
        d12, s12, d34, s34 = a1 - a2, a1 + a2, a3 - a4, a3 + a4
        dst[0, q] = a0 + s12 + s34
        dst[1, q] = d12 + two * d34
        dst[2, q] = s12 + four * s34
        dst[3, q] = d12 + eight * d34 + a5


@numba.njit(inline="always")
def _pass(forward, m, one, src, dst):  # pragma: no cover - compiled
    """Transform every column of src (alpha, n) into dst (alpha or m, n): BT if ``forward``, else AT."""
    if forward:
        for q in range(src.shape[1]):
            _input_tile(m, one, src, dst, q)
    else:
        for q in range(src.shape[1]):
            _output_tile(m, one, src, dst, q)


@numba.njit(inline="always")
def _along_axis(forward, m, one, src, dst, outer):  # pragma: no cover - compiled
    """Transform axis 1 of the contiguous src viewed (outer, alpha, inner) into dst viewed
    (outer, alpha or m, inner)."""
    alpha = m + 2
    inner = src.size // (outer * alpha)
    s3 = src.reshape((outer, alpha, inner))
    d3 = dst.reshape((outer, dst.size // (outer * inner), inner))
    for o in range(outer):
        _pass(forward, m, one, s3[o], d3[o])


@numba.njit(parallel=True, cache=True)
def input_transform(x, src_rows, lo, col_stop, nd, m, t_last, u0, u1, block, v):  # pragma: no cover
    """v[:, c, tiles of units u0..u1] = transformed input tiles of channel c.

    x (N, C, R_in, W_in); src_rows (rows, alpha^(nd-1)) input row per leading tile position
    (-1: zero); input column ``w - lo`` sits at tile-row column ``w``, valid below ``col_stop``;
    v (alpha^nd, C, >= (u1-u0)*t_last); ``block`` tile rows per parallel iteration.
    """
    channels = x.shape[1]
    rows, kk = src_rows.shape
    alpha = m + 2
    width = t_last * m + 2
    w_lo = max(0, lo)
    w_hi = max(w_lo, min(width, col_stop + lo))
    one = v.dtype.type(1)
    n_blocks = -(-(u1 - u0) // block)
    for it in numba.prange(channels * n_blocks):
        c = it // n_blocks
        b0 = (it - c * n_blocks) * block
        b1 = min(b0 + block, u1 - u0)
        size = (b1 - b0) * t_last
        row = np.zeros(width, dtype=v.dtype)  # stays zero outside [w_lo, w_hi)
        tile = np.zeros((kk, alpha, size), dtype=v.dtype)
        spare = np.empty((kk, alpha, size), dtype=v.dtype)
        for uu in range(b0, b1):
            n = (u0 + uu) // rows
            r = (u0 + uu) - n * rows
            p = (uu - b0) * t_last
            for k in range(kk):
                s = src_rows[r, k]
                if s < 0:
                    continue
                for w in range(w_lo, w_hi):
                    row[w] = x[n, c, s, w - lo]
                for j in range(t_last):
                    for b in range(alpha):
                        tile[k, b, p + j] = row[j * m + b]
        for axis in range(nd - 1):  # leading axes, in place of the Kronecker product
            _along_axis(True, m, one, tile, spare, alpha ** axis)
            tile, spare = spare, tile
        p0 = b0 * t_last
        for k in range(kk):  # last axis, straight into v
            _pass(True, m, one, tile[k], v[k * alpha:(k + 1) * alpha, c, p0:p0 + size])


@numba.njit(parallel=True, cache=True)
def output_transform(prod, dst_rows, nd, m, t_last, u0, u1, block, y):  # pragma: no cover - compiled
    """y[n, o, rows of units u0..u1] = inverse-transformed products prod (alpha^nd, O, tiles).

    dst_rows (rows, m^(nd-1)) output row per leading output position (-1: beyond the output);
    y (N, O, R_out, W_out).
    """
    channels = y.shape[1]
    w_out = y.shape[3]
    rows, km = dst_rows.shape
    alpha = m + 2
    kk = alpha ** (nd - 1)
    one = y.dtype.type(1)
    n_blocks = -(-(u1 - u0) // block)
    for it in numba.prange(channels * n_blocks):
        o = it // n_blocks
        b0 = (it - o * n_blocks) * block
        b1 = min(b0 + block, u1 - u0)
        size = (b1 - b0) * t_last
        p0 = b0 * t_last
        out = np.empty((kk, m, size), dtype=y.dtype)
        spare = np.empty((kk, m, size), dtype=y.dtype)
        for k in range(kk):  # last axis, straight from prod: (alpha,)*(nd-1) + (m, size)
            _pass(False, m, one, prod[k * alpha:(k + 1) * alpha, o, p0:p0 + size], out[k])
        for axis in range(nd - 2, -1, -1):  # leading axes, innermost first: alpha -> m each
            inner = m ** (nd - 1 - axis) * size
            used = alpha ** (axis + 1) * inner
            _along_axis(False, m, one, out.reshape(-1)[:used], spare.reshape(-1)[:used // alpha * m], alpha ** axis)
            out, spare = spare, out
        flat = out.reshape(-1)[:km * m * size].reshape((km, m, size))
        for qq in range(km):
            for uu in range(b0, b1):
                n = (u0 + uu) // rows
                r = (u0 + uu) - n * rows
                d = dst_rows[r, qq]
                if d < 0:
                    continue
                p = (uu - b0) * t_last
                for j in range(t_last):
                    for yy in range(min(m, w_out - j * m)):
                        y[n, o, d, j * m + yy] = flat[qq, yy, p + j]
