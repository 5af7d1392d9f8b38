"""Numba kernels of the Winograd algorithm: input tiles to the transform domain and back.

Both walk *tile rows*: unit ``u = n * rows + r`` is tile row ``r`` (a flat index over the
leading spatial dimensions, see ``_winograd_transforms.row_tables``) of sample ``n``; a tile
row holds ``t_last`` tiles along the last (contiguous) axis. The leading axes are transformed
with one Kronecker matrix acting on whole rows (vectorised along the last axis), the last axis
tile by tile. Transform-domain arrays are ``(alpha^d, channels, tiles)`` with tile
``p = (u - u0) * t_last + j``, the layout the batched matmul between them wants.
Padding is applied here, by reading zeros, so the input is never copied padded.
"""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(parallel=True, cache=True)
def input_transform(x, src_rows, lo, col_stop, kb, bt, m, t_last, u0, u1, v):  # pragma: no cover - compiled
    """v[:, c, tiles of units u0..u1] = BT-transformed input tiles of channel c.

    x (N, C, R_in, W_in); src_rows (rows, K) input row per leading tile position (-1: zero);
    input column ``w - lo`` sits at tile-row column ``w``, valid below ``col_stop``;
    kb (K, K) leading-axes transform; bt (alpha, alpha); v (alpha*K, C, >= (u1-u0)*t_last).
    """
    channels = x.shape[1]
    rows, kk = src_rows.shape
    alpha = bt.shape[0]
    width = t_last * m + alpha - m
    w_lo = max(0, lo)
    w_hi = max(w_lo, min(width, col_stop + lo))
    for it in numba.prange((u1 - u0) * channels):
        uu = it // channels
        c = it - uu * channels
        n = (u0 + uu) // rows
        r = (u0 + uu) - n * rows
        buf = np.zeros((kk, width), dtype=v.dtype)
        for k in range(kk):
            s = src_rows[r, k]
            if s >= 0:
                for w in range(w_lo, w_hi):
                    buf[k, w] = x[n, c, s, w - lo]
        lead = np.zeros((kk, width), dtype=v.dtype)
        for i in range(kk):
            for k in range(kk):
                coef = kb[i, k]
                if coef != 0:
                    for w in range(width):
                        lead[i, w] += coef * buf[k, w]
        acc = np.empty(t_last, dtype=v.dtype)
        p0 = uu * t_last
        for i in range(kk):
            for nu in range(alpha):
                acc[:] = 0
                for b in range(alpha):
                    coef = bt[nu, b]
                    if coef != 0:
                        for j in range(t_last):
                            acc[j] += coef * lead[i, j * m + b]
                v[i * alpha + nu, c, p0:p0 + t_last] = acc


@numba.njit(parallel=True, cache=True)
def output_transform(mm, dst_rows, ka, at, t_last, u0, u1, y):  # pragma: no cover - compiled
    """y[n, o, rows of units u0..u1] = AT-transformed products mm (alpha*K, O, tiles).

    dst_rows (rows, Km) output row per leading output position (-1: beyond the output);
    ka (Km, K) leading-axes inverse transform; at (m, alpha); y (N, O, R_out, W_out).
    """
    channels = y.shape[1]
    w_out = y.shape[3]
    rows, km = dst_rows.shape
    kk = ka.shape[1]
    m, alpha = at.shape
    for it in numba.prange((u1 - u0) * channels):
        uu = it // channels
        o = it - uu * channels
        n = (u0 + uu) // rows
        r = (u0 + uu) - n * rows
        p0 = uu * t_last
        last = np.zeros((kk, m, t_last), dtype=y.dtype)
        for i in range(kk):
            for yy in range(m):
                for nu in range(alpha):
                    coef = at[yy, nu]
                    if coef != 0:
                        for j in range(t_last):
                            last[i, yy, j] += coef * mm[i * alpha + nu, o, p0 + j]
        acc = np.empty((m, t_last), dtype=y.dtype)
        for q in range(km):
            d = dst_rows[r, q]
            if d < 0:
                continue
            acc[:] = 0
            for i in range(kk):
                coef = ka[q, i]
                if coef != 0:
                    for yy in range(m):
                        for j in range(t_last):
                            acc[yy, j] += coef * last[i, yy, j]
            for j in range(t_last):
                for yy in range(min(m, w_out - j * m)):
                    y[n, o, d, j * m + yy] = acc[yy, j]
