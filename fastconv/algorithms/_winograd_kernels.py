"""Numba kernels of the Winograd algorithm: input tiles to the transform domain and back.

Both walk *tile rows*: unit ``u = n * rows + r`` is tile row ``r`` (a flat index over the
leading spatial dimensions, see ``_winograd_transforms.row_tables``) of sample ``n``. A tile
row holds ``t_last`` tiles along the last axis plus one spare tile (``tw = t_last + 1``
columns): transform-domain arrays are ``(alpha^d, channels, units * tw)``, per transform point a
contiguous (channels x tiles) matrix for the batched matmul between them, and the spare
column, whose values are never read back, lets every pass below run as one long loop.

Every transform is a loop across all tiles of a chunk that writes one row of results from
``alpha`` rows of inputs (one store stream: LLVM vectorises it; several per loop defeat its
alias checks). An input row is first split into its ``m`` phases (``phase[q][j] = row[j*m + q]``),
after which input ``b`` of tile ``j`` is ``phase[b % m][j + b // m]``, a unit-stride row (the
spare column absorbs the ``j + 1`` of the last tile). The leading axes are transformed between
rows of tiles, and on the way back the ``m`` outputs of every tile are computed as rows, then
interleaved into the output. Splitting and interleaving are the only element-wise copies.
Padding is applied by reading zeros, so the input is never copied padded.

The transforms are applied as dense rows of ``_winograd_transforms.matrices`` (passed in the
compute dtype); the entry points fix ``m`` at compile time, so strides and loop bounds are
constants.
"""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(inline="always")
def _combine(m, coef, i, src, taps, shifts, ch, dst, d_row, d_ch, size):  # pragma: no cover - compiled
    """dst[d_row, d_ch, :size] = sum_b coef[i, b] * src[taps[b], ch, shifts[b]:shifts[b] + size] over
    the alpha terms of the 6-tuples ``taps`` (rows) and ``shifts`` (columns). Indexes the arrays
    directly: views would cost reference counting per call, more than the loop on small chunks."""
    r0, r1, r2, r3, r4, r5 = taps
    s0, s1, s2, s3, s4, s5 = shifts
    c0, c1, c2, c3 = coef[i, 0], coef[i, 1], coef[i, 2], coef[i, 3]
    if m == 2:
        for col in range(size):
            dst[d_row, d_ch, col] = (c0 * src[r0, ch, s0 + col] + c1 * src[r1, ch, s1 + col]
                                     + c2 * src[r2, ch, s2 + col] + c3 * src[r3, ch, s3 + col])
    else:
        c4, c5 = coef[i, 4], coef[i, 5]
        for col in range(size):
            dst[d_row, d_ch, col] = (c0 * src[r0, ch, s0 + col] + c1 * src[r1, ch, s1 + col]
                                     + c2 * src[r2, ch, s2 + col] + c3 * src[r3, ch, s3 + col]
                                     + c4 * src[r4, ch, s4 + col] + c5 * src[r5, ch, s5 + col])


@numba.njit(inline="always")
def _rows(first, step):  # pragma: no cover - compiled
    """Row indices first + b*step, b < 6, and column offsets 0: alpha rows of tiles."""
    return ((first, first + step, first + 2 * step, first + 3 * step, first + 4 * step, first + 5 * step),
            (0, 0, 0, 0, 0, 0))


@numba.njit(inline="always")
def _phase_rows(m, k, kk):  # pragma: no cover - compiled
    """Input b of every tile as a row of the phase-split rows: phase b % m of lead position k
    (row (b % m)*kk + k), from column b // m; as :func:`_rows`."""
    if m == 2:
        return (k, kk + k, k, kk + k, k, k), (0, 0, 1, 1, 0, 0)
    return (k, kk + k, 2 * kk + k, 3 * kk + k, k, kk + k), (0, 0, 0, 0, 1, 1)


@numba.njit(inline="always")
def _lead_pass(m, coef, src, s_row0, s_ch, dst, d_row0, d_ch, outer, inner, size):  # pragma: no cover
    """Transform one leading axis: rows s_row0.. of src[:, s_ch] viewed (outer, alpha, inner) into
    rows d_row0.. of dst[:, d_ch] viewed (outer, len(coef), inner); ``size`` tiles per row."""
    alpha = m + 2
    n_out = coef.shape[0]
    for o in range(outer):
        for j in range(inner):
            taps, shifts = _rows(s_row0 + o * alpha * inner + j, inner)
            for i in range(n_out):
                _combine(m, coef, i, src, taps, shifts, s_ch, dst, d_row0 + (o * n_out + i) * inner + j, d_ch, size)


@numba.njit(inline="always")
def _split_edge(m, x, n, c, s, j, lo, col_stop, ph, k, kk, base):  # pragma: no cover - compiled
    """Phases of tile j of input row x[n, c, s] where its columns may leave [0, col_stop): zeros there."""
    for q in range(m):
        w = j * m + q - lo
        ph[q * kk + k, 0, base + j] = x[n, c, s, w] if 0 <= w < col_stop else ph.dtype.type(0)


@numba.njit(inline="always")
def _input_transform(m, x, src_rows, lo, col_stop, nd, t_last, u0, u1, c0, c1, bt, v):  # pragma: no cover
    """v[:, c, tiles of units u0..u1] = transformed input tiles of channels c0 <= c < c1.

    x (N, C, R_in, W_in); src_rows (rows, alpha^(nd-1)) input row per leading tile position
    (-1: zero); input column ``w - lo`` sits at tile-row column ``w``, valid below ``col_stop``;
    bt (alpha, alpha); v (alpha^nd, C, (u1-u0)*(t_last+1)).
    """
    rows, kk = src_rows.shape
    alpha = m + 2
    zero = v.dtype.type(0)
    tw = t_last + 1
    size = (u1 - u0) * tw
    # phase q of a row holds input columns j*m + q - lo; tiles j_all_lo <= j < j_all_hi read
    # real columns, in [0, col_stop), in every phase
    j_all_lo = min(max(0, -(-lo // m)), tw)
    j_all_hi = max(j_all_lo, min(tw, (col_stop + lo - m) // m + 1))
    ph = np.zeros((m * kk, 1, size + 1), dtype=v.dtype)  # phase q of lead position k in row q*kk + k
    # two regions of rows (k, nu) for the passes over the axes; never swapped as variables
    # (numba then loses track of the arrays and the loops stop vectorising)
    region = kk * alpha if nd > 1 else 0
    scratch = np.empty((2 * region, 1, size), dtype=v.dtype)
    for c in range(c0, c1):
        for uu in range(u1 - u0):
            n = (u0 + uu) // rows
            r = (u0 + uu) - n * rows
            base = uu * tw
            for k in range(kk):
                s = src_rows[r, k]
                # phase-split the row (explicit loops: numba's slice assignments and views cost more
                # than these short rows)
                if s < 0:
                    for q in range(m):
                        for j in range(tw):
                            ph[q * kk + k, 0, base + j] = zero
                    continue
                for j in range(j_all_lo, j_all_hi):  # tiles whose m columns all lie in the input
                    for q in range(m):
                        ph[q * kk + k, 0, base + j] = x[n, c, s, j * m + q - lo]
                for j in range(j_all_lo):  # the others, reaching into the padding
                    _split_edge(m, x, n, c, s, j, lo, col_stop, ph, k, kk, base)
                for j in range(j_all_hi, tw):
                    _split_edge(m, x, n, c, s, j, lo, col_stop, ph, k, kk, base)
        # last axis into rows (k, nu): of v itself in 1-D, else of the scratch
        for k in range(kk):
            taps, shifts = _phase_rows(m, k, kk)
            for nu in range(alpha):
                if nd == 1:
                    _combine(m, bt, nu, ph, taps, shifts, 0, v, nu, c, size)
                else:
                    _combine(m, bt, nu, ph, taps, shifts, 0, scratch, k * alpha + nu, 0, size)
        # leading axes, alternating between the regions; the last pass writes into v
        for axis in range(nd - 1):
            inner = alpha ** (nd - 1 - axis)
            here = (axis % 2) * region
            if axis == nd - 2:
                _lead_pass(m, bt, scratch, here, 0, v, 0, c, alpha ** axis, inner, size)
            else:
                _lead_pass(m, bt, scratch, here, 0, scratch, region - here, 0, alpha ** axis, inner, size)


@numba.njit(inline="always")
def _output_transform(m, prod, dst_rows, nd, t_last, u0, u1, o0, o1, per_group, at, y):  # pragma: no cover
    """y[n, o, rows of units u0..u1] = inverse-transformed products prod (alpha^nd, O, (u1-u0)*(t_last+1))
    for the channels whose index within their group of ``per_group``, ``o % per_group``, is in [o0, o1).

    dst_rows (rows, m^(nd-1)) output row per leading output position (-1: beyond the output);
    at (m, alpha); y (N, O, R_out, W_out).
    """
    channels = y.shape[1]
    w_out = y.shape[3]
    rows, km = dst_rows.shape
    alpha = m + 2
    tw = t_last + 1
    size = (u1 - u0) * tw
    j_full = min(t_last, w_out // m)  # tiles whose m outputs all lie in the output
    region = m * alpha ** (nd - 1) if nd > 1 else 0  # rows of the largest intermediate
    scratch = np.empty((2 * region, 1, size), dtype=y.dtype)  # two regions, as in the input kernel
    out = np.empty((m, 1, size), dtype=y.dtype)
    last = ((nd - 2) % 2) * region  # region holding the leading axes' result
    for o in range(channels):
        if not o0 <= o % per_group < o1:
            continue
        # leading axes first, alpha -> m each: rows (m,)*(axis+1) + (alpha,)*(nd-1-axis) after a pass
        for axis in range(nd - 1):
            inner = alpha ** (nd - 1 - axis)
            here = (axis % 2) * region
            if axis == 0:
                _lead_pass(m, at, prod, 0, o, scratch, 0, 0, 1, inner, size)
            else:
                _lead_pass(m, at, scratch, region - here, 0, scratch, here, 0, m ** axis, inner, size)
        for qq in range(km):
            # last axis for all tiles as m rows, then interleaved into the output rows
            for yy in range(m):
                if nd == 1:
                    taps, shifts = _rows(0, 1)
                    _combine(m, at, yy, prod, taps, shifts, o, out, yy, 0, size)
                else:
                    taps, shifts = _rows(last + qq * alpha, 1)
                    _combine(m, at, yy, scratch, taps, shifts, 0, out, yy, 0, size)
            for uu in range(u1 - u0):
                n = (u0 + uu) // rows
                r = (u0 + uu) - n * rows
                d = dst_rows[r, qq]
                if d < 0:
                    continue
                yrow = y[n, o, d]
                base = uu * tw
                for j in range(j_full):
                    for yy in range(m):
                        yrow[j * m + yy] = out[yy, 0, base + j]
                for j in range(j_full, t_last):
                    for yy in range(w_out - j * m):
                        yrow[j * m + yy] = out[yy, 0, base + j]


# Entry points with the tile size a compile-time constant (strides and loop bounds specialised);
# serial and GIL-free: callers run chunks on worker threads.
@numba.njit(nogil=True, cache=True, fastmath={"contract"})
def _input_transform_2(x, src_rows, lo, col_stop, nd, t_last, u0, u1, c0, c1, bt, v):  # pragma: no cover
    _input_transform(2, x, src_rows, lo, col_stop, nd, t_last, u0, u1, c0, c1, bt, v)


@numba.njit(nogil=True, cache=True, fastmath={"contract"})
def _input_transform_4(x, src_rows, lo, col_stop, nd, t_last, u0, u1, c0, c1, bt, v):  # pragma: no cover
    _input_transform(4, x, src_rows, lo, col_stop, nd, t_last, u0, u1, c0, c1, bt, v)


@numba.njit(nogil=True, cache=True, fastmath={"contract"})
def _output_transform_2(prod, dst_rows, nd, t_last, u0, u1, o0, o1, per_group, at, y):  # pragma: no cover
    _output_transform(2, prod, dst_rows, nd, t_last, u0, u1, o0, o1, per_group, at, y)


@numba.njit(nogil=True, cache=True, fastmath={"contract"})
def _output_transform_4(prod, dst_rows, nd, t_last, u0, u1, o0, o1, per_group, at, y):  # pragma: no cover
    _output_transform(4, prod, dst_rows, nd, t_last, u0, u1, o0, o1, per_group, at, y)


#: m -> input / output transform kernel.
INPUT_TRANSFORM = {2: _input_transform_2, 4: _input_transform_4}
OUTPUT_TRANSFORM = {2: _output_transform_2, 4: _output_transform_4}
