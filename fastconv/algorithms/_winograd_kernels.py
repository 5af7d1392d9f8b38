"""Numba kernels of the Winograd algorithm: input tiles to the transform domain and back, and
the filters in.

Both walk *tile rows*: unit ``u = n * rows + r`` is tile row ``r`` (a flat index over the
leading spatial dimensions, see ``_winograd_transforms.row_tables``) of sample ``n``. A tile
row holds ``t_last`` tiles along the last axis plus one spare tile (``tw = t_last + 1``
columns): transform-domain arrays are ``(alpha^d, channels, units * tw)``, per transform point a
contiguous (channels x tiles) matrix for the batched matmul between them, and the spare
column, whose values are never read back, lets every pass below run as one long loop.

Every 1-D transform is one pass across all tiles of a chunk that reads ``alpha`` rows of
inputs once and writes all ``alpha`` (or ``m``) rows of results (``_row_maps``, an LLVM intrinsic
with the transform matrix built in). An input row is first split into its ``m`` phases (``phase[q][j] = row[j*m + q]``),
after which input ``b`` of tile ``j`` is ``phase[b % m][j + b // m]``, a unit-stride row (the
spare column absorbs the ``j + 1`` of the last tile). The leading axes are transformed between
rows of tiles, and on the way back the ``m`` outputs of every tile are computed as rows, then
interleaved into the output. Splitting and interleaving are the only copies, done with vector
shuffles (``_simd.phases``).
Padding is applied by reading zeros, so the input is never copied padded.

The entry points fix ``m`` at compile time, so strides and loop bounds are constants.
"""

from __future__ import annotations

import numba
import numpy as np
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

from . import _simd as simd
from . import _winograd_transforms as wt

_u = numba.uint64


def _row_maps(matrices):
    """An intrinsic ``(kind, dst, d_offs, src, s_offs, count)``: ``dst[d_offs[i] + q] = sum_b
    M[i][b] * src[s_offs[b] + q]`` for every row i of the constant ``M = matrices[kind]`` and
    q < count; offsets are flat element indices into the (C-contiguous) arrays, 6-tuples of which
    the first rows/columns of M are used.

    Each column block is loaded once into 64-byte registers and all rows of the matrix are
    computed from them, with its zeros skipped and its +-1 entries as additions, the tail
    masked: numba's own loops could only vectorise one output row per pass over the inputs
    (several store streams defeat LLVM's alias checks), re-reading the inputs for every row.
    Complex arrays are mapped as interleaved real pairs (the matrices are real). ``kind`` picks
    the matrix's loop by a switch.
    """
    matrices = [tuple(tuple(float(v) for v in row) for row in matrix) for matrix in matrices]

    @intrinsic
    def row_map(typingctx, kind, dst, d_offs, src, s_offs, count):
        def codegen(context, builder, signature, args):
            kind_v, dst_v, d_offs_v, src_v, s_offs_v, count_v = args
            scalar, size, lanes, vec, pair = simd.real_vector(context, dst.dtype)
            scale = ir.Constant(simd.I64, pair)
            pointers = [simd.data(context, builder, ty, v, scalar) for ty, v in ((dst, dst_v), (src, src_v))]
            n = builder.mul(count_v, scale)
            fma = simd.fma(builder, vec)

            def address(pointer, offset, q):
                return simd.vector_at(builder, vec, pointer, builder.add(offset, q))

            def rows(matrix, values):
                out = []
                for row in matrix:
                    acc = None
                    for coef, value in zip(row, values):
                        if coef == 0:
                            continue
                        if acc is None:
                            acc = value if coef == 1 else builder.fmul(ir.Constant(vec, [coef] * lanes), value)
                        elif coef == 1:
                            acc = builder.fadd(acc, value)
                        elif coef == -1:
                            acc = builder.fsub(acc, value)
                        else:
                            acc = builder.call(fma, [ir.Constant(vec, [coef] * lanes), value, acc])
                    out.append(acc if acc is not None else ir.Constant(vec, None))
                return out

            def loop(matrix):
                d_offs_l = [builder.mul(builder.extract_value(d_offs_v, i), scale) for i in range(len(matrix))]
                s_offs_l = [builder.mul(builder.extract_value(s_offs_v, b), scale) for b in range(len(matrix[0]))]

                def step(q, load, store):
                    values = [load(address(pointers[1], off, q)) for off in s_offs_l]
                    for off, result in zip(d_offs_l, rows(matrix, values)):
                        store(result, address(pointers[0], off, q))

                simd.vector_loop(builder, vec, size, n, step)

            simd.switch(builder, kind_v, range(len(matrices)), lambda k: loop(matrices[k]), "row_map.kind")
            return context.get_dummy_value()

        return types.void(kind, dst, d_offs, src, s_offs, count), codegen

    return row_map


#: The 1-D transforms, named for their matrices: input tiles in (BT, alpha -> alpha), products
#: back to outputs (AT, alpha -> m), output gradients in, that map's adjoint (A, m -> alpha), and
#: filters in (G, 3 -> alpha), or flipped filters (GF: G's columns reversed).
_BT, _AT, _A, _G, _GF = 0, 1, 2, 3, 4
_rows_2, _rows_4 = (_row_maps((bt, at, at.T, g, g[:, ::-1])) for bt, g, at in (wt.matrices(m) for m in (2, 4)))


@numba.njit(inline="always")
def _map_rows(m, kind, dst, d_offs, src, s_offs, count):  # pragma: no cover - compiled
    """The transform ``kind`` of F(m, 3) along one axis over ``count`` columns."""
    if m == 2:
        _rows_2(kind, dst, d_offs, src, s_offs, count)
    else:
        _rows_4(kind, dst, d_offs, src, s_offs, count)


@numba.njit(inline="always")
def _flat_rows(a, row0, step, ch, col=0):  # pragma: no cover - compiled
    """Flat offsets of a[row0 + b*step, ch, col] for b < 6 (a 3-D, C-contiguous)."""
    per_row = a.shape[1] * a.shape[2]
    first = row0 * per_row + ch * a.shape[2] + col
    d = step * per_row
    return (first, first + d, first + 2 * d, first + 3 * d, first + 4 * d, first + 5 * d)


@numba.njit(inline="always")
def _phase_offsets(m, k, kk, width):  # pragma: no cover - compiled
    """Flat offsets in the phase-split rows (``width`` columns each) of input b of every tile:
    phase b % m of lead position k (row (b % m)*kk + k), from column b // m."""
    if m == 2:
        return (k * width, (kk + k) * width, k * width + 1, (kk + k) * width + 1, 0, 0)
    return (k * width, (kk + k) * width, (2 * kk + k) * width, (3 * kk + k) * width, k * width + 1,
            (kk + k) * width + 1)


@numba.njit(inline="always")
def _lead_pass(m, kind, src, s_row0, s_ch, dst, d_row0, d_ch, outer, inner, size, d_col=0):  # pragma: no cover
    """Transform one leading axis: rows s_row0.. of src[:, s_ch] viewed (outer, n_in, inner) into
    rows d_row0.. of dst[:, d_ch, d_col:] viewed (outer, n_out, inner) (alpha, m or 3 each, by
    ``kind``); ``size`` tiles (or filters) per row."""
    alpha = m + 2
    n_in = m if kind == _A else 3 if kind >= _G else alpha
    n_out = m if kind == _AT else alpha
    for o in range(outer):
        for j in range(inner):
            _map_rows(m, kind, dst, _flat_rows(dst, d_row0 + o * n_out * inner + j, inner, d_ch, d_col),
                      src, _flat_rows(src, s_row0 + o * n_in * inner + j, inner, s_ch), size)


@numba.njit(inline="always")
def _split_row(m, ph, offsets, src, at, count, lo, hi):  # pragma: no cover - compiled
    """The row of ``src`` from flat index ``at`` split into its m phases at ``offsets`` in ph, for
    ``count`` tiles (phase q of tile j is element j*m + q), reading only the elements in
    [lo, hi) of the row: zeros elsewhere (padding, or the spare tile beyond the row)."""
    if m == 2:
        simd.split_2(ph, offsets, src, (at, 0, 0, 0, 0, 0), count, lo, hi)
    else:
        simd.split_4(ph, offsets, src, (at, 0, 0, 0, 0, 0), count, lo, hi)


@numba.njit(inline="always")
def _input_transform(m, x, src_rows, lo, col_stop, nd, t_last, u0, u1, c0, c1, v):  # pragma: no cover
    """v[:, c, tiles of units u0..u1] = transformed input tiles of channels c0 <= c < c1.

    x (N, C, R_in, W_in); src_rows (rows, alpha^(nd-1)) input row per leading tile position
    (-1: zero); input column ``w - lo`` sits at tile-row column ``w``, valid below ``col_stop``;
    v (alpha^nd, C, (u1-u0)*(t_last+1)).
    """
    rows, kk = src_rows.shape
    alpha = m + 2
    tw = t_last + 1
    size = (u1 - u0) * tw
    ph = np.zeros((m * kk, 1, size + 1), dtype=v.dtype)  # phase q of lead position k in row q*kk + k
    # two regions of rows (k, nu) for the passes over the axes; never swapped as variables
    # (numba then loses track of the arrays and the loops stop vectorising)
    region = kk * alpha if nd > 1 else 0
    scratch = simd.aligned_empty(2 * region * size, v.dtype).reshape((2 * region, 1, size))
    for c in range(c0, c1):
        for uu in range(u1 - u0):
            n = (u0 + uu) // rows
            r = (u0 + uu) - n * rows
            base = uu * tw
            for k in range(kk):
                # phase-split the row: element e = j*m + q is input column e - lo, read inside
                # [0, col_stop), zero in the padding; a row of padding (s < 0) reads nothing
                s = src_rows[r, k]
                at = ((n * x.shape[1] + c) * x.shape[2] + max(s, 0)) * x.shape[3] - lo
                _split_row(m, ph, _flat_rows(ph, k, kk, 0, base), x, at, tw, lo, lo + col_stop if s >= 0 else lo)
        # last axis into rows (k, nu): of v itself in 1-D, else of the scratch
        for k in range(kk):
            phases = _phase_offsets(m, k, kk, size + 1)
            if nd == 1:
                _map_rows(m, _BT, v, _flat_rows(v, 0, 1, c), ph, phases, size)
            else:
                _map_rows(m, _BT, scratch, _flat_rows(scratch, k * alpha, 1, 0), ph, phases, size)
        # leading axes, alternating between the regions; the last pass writes into v
        for axis in range(nd - 1):
            inner = alpha ** (nd - 1 - axis)
            here = (axis % 2) * region
            if axis == nd - 2:
                _lead_pass(m, _BT, scratch, here, 0, v, 0, c, alpha ** axis, inner, size)
            else:
                _lead_pass(m, _BT, scratch, here, 0, scratch, region - here, 0, alpha ** axis, inner, size)


@numba.njit(inline="always")
def _output_side(m, nd, t_last, u0, u1, dtype):  # pragma: no cover - compiled
    """What the output transform and its adjoint share for units u0..u1: ``(alpha, tw, size,
    region, last, scratch, rows)``: tiles per tile row (the spare one included), tiles in all,
    rows of the largest intermediate (m * alpha^(nd-1)), the region holding the leading axes'
    result, two regions of scratch rows (as in the input kernel), and m rows of one value per
    tile (phase q of every tile: its output column j*m + q)."""
    alpha = m + 2
    tw = t_last + 1
    size = (u1 - u0) * tw
    region = m * alpha ** (nd - 1) if nd > 1 else 0
    last = ((nd - 2) % 2) * region
    return (alpha, tw, size, region, last, simd.aligned_empty(2 * region * size, dtype).reshape((2 * region, 1, size)),
            simd.aligned_empty(m * size, dtype).reshape((m, 1, size)))


@numba.njit(inline="always")
def _output_transform(m, prod, dst_rows, nd, t_last, u0, u1, o0, o1, per_group, y):  # pragma: no cover
    """y[n, o, rows of units u0..u1] = inverse-transformed products prod (alpha^nd, O, (u1-u0)*(t_last+1))
    for the channels whose index within their group of ``per_group``, ``o % per_group``, is in [o0, o1).

    dst_rows (rows, m^(nd-1)) output row per leading output position (-1: beyond the output);
    y (N, O, R_out, W_out).
    """
    channels, w_out = y.shape[1], y.shape[3]
    rows, km = dst_rows.shape
    alpha, tw, size, region, last, scratch, out = _output_side(m, nd, t_last, u0, u1, y.dtype)
    j_full = min(t_last, w_out // m)  # tiles whose m outputs all lie in the output
    for o in range(channels):
        if not o0 <= o % per_group < o1:
            continue
        # leading axes first, alpha -> m each: rows (m,)*(axis+1) + (alpha,)*(nd-1-axis) after a pass
        for axis in range(nd - 1):
            inner = alpha ** (nd - 1 - axis)
            here = (axis % 2) * region
            if axis == 0:
                _lead_pass(m, _AT, prod, 0, o, scratch, 0, 0, 1, inner, size)
            else:
                _lead_pass(m, _AT, scratch, region - here, 0, scratch, here, 0, m ** axis, inner, size)
        for qq in range(km):
            # last axis for all tiles as m rows, then interleaved into the output rows
            if nd == 1:
                _map_rows(m, _AT, out, _flat_rows(out, 0, 1, 0), prod, _flat_rows(prod, 0, 1, o), size)
            else:
                _map_rows(m, _AT, out, _flat_rows(out, 0, 1, 0), scratch,
                          _flat_rows(scratch, last + qq * alpha, 1, 0), size)
            for uu in range(u1 - u0):
                n = (u0 + uu) // rows
                r = (u0 + uu) - n * rows
                d = dst_rows[r, qq]
                if d < 0:
                    continue
                yrow = y[n, o, d]
                base = uu * tw
                at = ((n * channels + o) * y.shape[2] + d) * w_out
                offsets = _flat_rows(out, 0, 1, 0, base)
                if m == 2:  # the m phases of every tile interleaved into the output row
                    simd.merge_2(y, (at, 0, 0, 0, 0, 0), out, offsets, j_full)
                else:
                    simd.merge_4(y, (at, 0, 0, 0, 0, 0), out, offsets, j_full)
                for j in range(j_full, t_last):
                    for yy in range(w_out - j * m):
                        yrow[j * m + yy] = out[yy, 0, base + j]


@numba.njit(inline="always")
def _output_adjoint(m, dy, dst_rows, nd, t_last, u0, u1, o0, o1, dprod):  # pragma: no cover - compiled
    """dprod[:, o, tiles of units u0..u1] = the output transform's adjoint applied to dy, for
    channels o0 <= o < o1: every tile's m^nd values of dy (zero beyond the output and in the spare
    tile) mapped by A along every axis, the output transform's steps in reverse order.

    dy (N, O, R_out, W_out) and dst_rows as ``_output_transform``'s y and dst_rows;
    dprod (alpha^nd, O, (u1-u0)*(t_last+1)).
    """
    channels, w_out = dy.shape[1], dy.shape[3]
    rows, km = dst_rows.shape
    alpha, tw, size, region, last, scratch, ph = _output_side(m, nd, t_last, u0, u1, dprod.dtype)
    for o in range(o0, o1):
        for qq in range(km):
            for uu in range(u1 - u0):
                n = (u0 + uu) // rows
                r = (u0 + uu) - n * rows
                # the row's phases, zero beyond the output (the partial and spare tiles) and in rows
                # beyond it (d < 0)
                d = dst_rows[r, qq]
                at = ((n * channels + o) * dy.shape[2] + max(d, 0)) * w_out
                _split_row(m, ph, _flat_rows(ph, 0, 1, 0, uu * tw), dy, at, tw, 0, w_out if d >= 0 else 0)
            # last axis, m -> alpha: into dprod in 1-D, else into rows (qq, nu) of the scratch
            if nd == 1:
                _map_rows(m, _A, dprod, _flat_rows(dprod, 0, 1, o), ph, _flat_rows(ph, 0, 1, 0), size)
            else:
                _map_rows(m, _A, scratch, _flat_rows(scratch, last + qq * alpha, 1, 0), ph,
                          _flat_rows(ph, 0, 1, 0), size)
        # leading axes, last first, m -> alpha each; the pass of axis 0 writes into dprod
        for axis in range(nd - 2, -1, -1):
            inner = alpha ** (nd - 1 - axis)
            here = (axis % 2) * region
            if axis == 0:
                _lead_pass(m, _A, scratch, here, 0, dprod, 0, o, 1, inner, size)
            else:
                _lead_pass(m, _A, scratch, here, 0, scratch, region - here, 0, m ** axis, inner, size)


#: Filters per block of the filter transform: a block's rows (3^d taps, then alpha^k * 3^(d-k)
#: after k axes) stay in L1/L2 while every axis is transformed.
_FILTER_BLOCK = 256


@numba.njit(inline="always")
def _filter_transform(m, kind, w, nd, f0, f1, u):  # pragma: no cover - compiled
    """u[p, 0, f] = transform point p of filter w[f] (G along every axis; of the flipped filter
    with ``kind`` _GF) for f0 <= f < f1; w (filters, 3^nd), u (alpha^nd, 1, filters).

    Each block of filters is transposed into rows of taps (a column per filter), then the axes are
    transformed as passes over rows, as the input transform's leading axes are; the last pass
    writes into u. (One BLAS product by the Kronecker power of G runs 1.2-2x slower: depth 3^nd.)
    """
    alpha = m + 2
    taps = w.shape[1]
    region = 3 * alpha ** (nd - 1)  # rows after any pass but the last
    scratch = simd.aligned_empty(2 * region * _FILTER_BLOCK, u.dtype).reshape((2 * region, 1, _FILTER_BLOCK))
    rows, filters = scratch.reshape(-1), w.reshape(-1)  # flat, unsigned indices: the copy vectorises
    for b0 in range(f0, f1, _FILTER_BLOCK):
        nb = min(_FILTER_BLOCK, f1 - b0)
        for t in range(_u(taps)):
            for j in range(_u(nb)):
                rows[t * _u(_FILTER_BLOCK) + j] = filters[(_u(b0) + j) * _u(taps) + t]
        for axis in range(nd):
            here = (axis % 2) * region
            inner = 3 ** (nd - 1 - axis)
            if axis == nd - 1:
                _lead_pass(m, kind, scratch, here, 0, u, 0, 0, alpha ** axis, inner, nb, b0)
            else:
                _lead_pass(m, kind, scratch, here, 0, scratch, region - here, 0, alpha ** axis, inner, nb)


@numba.njit(nogil=True, cache=True, fastmath={"contract"})
def filter_adjoint(du, g, dw, f0, f1):  # pragma: no cover - compiled
    """dw[f, k] = sum over p of g[p, k] * du[p, f] for f0 <= f < f1: the filter transform's
    transpose (g its matrix, the Kronecker power of G, (alpha^nd, 3^nd)) on U's gradient du
    (alpha^nd, filters) into dw (filters, 3^nd). A block of filters' sums are vectors along the
    filters, skipping g's zeros (half of F(2, 3)'s), then go to dw's rows by in-register
    transposes: 0.9 ms for 256x256 filters on one core, where BLAS's (3^nd x alpha^nd) @
    (alpha^nd x filters) and the transposing copy of its result took 2.6 ms."""
    points, taps = g.shape
    filters, lanes = du.shape[1], 64 // dw.itemsize
    sums = simd.aligned_empty(taps * _FILTER_BLOCK, dw.dtype)
    flat, out = du.reshape(-1), dw.reshape(-1)
    for b0 in range(f0, f1, _FILTER_BLOCK):
        nb = min(_FILTER_BLOCK, f1 - b0)
        sums[:] = 0
        for p in range(points):
            for k in range(taps):
                weight = g[p, k]
                if weight != 0:
                    row, at = _u(p * filters + b0), _u(k * _FILTER_BLOCK)
                    for j in range(_u(nb)):
                        sums[at + j] += weight * flat[row + j]
        for j0 in range(0, nb, lanes):  # (taps x filters) squares transposed into dw's rows
            for k0 in range(0, taps, lanes):
                held = min(lanes, taps - k0)
                simd.transpose(out, (b0 + j0) * taps + k0, taps, sums, k0 * _FILTER_BLOCK + j0, _FILTER_BLOCK, held,
                               min(lanes, nb - j0), held)


#: Rows of ``a`` and vectors of columns in a register block of :func:`products_nt` (6 x 4 sums
#: in 24 registers, 4 more for a row of ``b``), and the depth of the ``b`` panel it keeps in L1.
_PRODUCT_ROWS, _PRODUCT_VECTORS, _PRODUCT_DEPTH = 6, 4, 64


@intrinsic
def _outer_block(typingctx, a, a0, a_pitch, rows, bt, b0, bt_pitch, vectors, depth, out, o0, o_pitch, width, first):
    """``out[o0 + i*o_pitch + j] (= if first, else +=) sum over t < depth of a[a0 + i*a_pitch + t] *
    bt[b0 + t*bt_pitch + j]`` for i < rows (1 to ``_PRODUCT_ROWS``) and j below ``vectors`` (1 to
    ``_PRODUCT_VECTORS``) vectors of columns, only the columns j < width stored (``bt``'s rows
    padded to whole vectors): outer products of a column of ``a`` (broadcast) and a row of the
    panel ``bt`` (64-byte aligned rows) into sums
    held in registers, from zero (a panel's sums are added to out as one term, so rounding grows
    with the panel's depth, not the product's). A switch picks the block's shape, each unrolled."""
    def codegen(context, builder, signature, args):
        (a_v, a0_v, ap_v, rows_v, bt_v, b0_v, bp_v, vectors_v, depth_v, out_v, o0_v, op_v, width_v,
         first_v) = args
        scalar, size, lanes, vec = simd.vector(context, out.dtype)
        a_p, b_p, o_p = (simd.data(context, builder, ty, v, scalar) for ty, v in ((a, a_v), (bt, bt_v), (out, out_v)))
        fma = simd.fma(builder, vec)
        i64 = simd.I64
        starting = builder.icmp_signed("!=", first_v, ir.Constant(first_v.type, 0))

        def at(row, v):
            return simd.vector_at(builder, vec, o_p, builder.add(row, ir.Constant(i64, v * lanes)))

        def block(nr, nv):
            masks = [simd.tail_mask(builder, lanes, builder.trunc(builder.sub(width_v, ir.Constant(i64, v * lanes)),
                                                                   simd.I32)) for v in range(nv)]
            rows_at = [builder.add(o0_v, builder.mul(op_v, ir.Constant(i64, i))) for i in range(nr)]
            a_at = [builder.add(a0_v, builder.mul(ap_v, ir.Constant(i64, i))) for i in range(nr)]
            sums = [cgutils.alloca_once_value(builder, ir.Constant(vec, None)) for _ in range(nr * nv)]
            with cgutils.for_range(builder, depth_v) as loop:
                row = builder.add(b0_v, builder.mul(loop.index, bp_v))
                bs = [builder.load(simd.vector_at(builder, vec, b_p, builder.add(row, ir.Constant(i64, v * lanes))),
                                   align=64) for v in range(nv)]
                for i in range(nr):
                    xs = simd.splat(builder, vec, builder.load(builder.gep(a_p, [builder.add(a_at[i], loop.index)])))
                    for v in range(nv):
                        cell = sums[i * nv + v]
                        builder.store(builder.call(fma, [xs, bs[v], builder.load(cell)]), cell)
            for i in range(nr):  # a block of sums of its own added to out: rounding grows with depth
                for v in range(nv):
                    total, old = builder.load(sums[i * nv + v]), simd.masked_load(builder, vec, size, at(rows_at[i], v),
                                                                                    masks[v])
                    simd.masked_store(builder, vec, size, builder.select(starting, total, builder.fadd(old, total)),
                                      at(rows_at[i], v), masks[v])

        simd.switch(builder, rows_v, range(1, _PRODUCT_ROWS + 1), lambda nr: simd.switch(
            builder, vectors_v, range(1, _PRODUCT_VECTORS + 1), lambda nv: block(nr, nv), f"outer.{nr}"), "outer")
        return context.get_dummy_value()

    return types.void(a, a0, a_pitch, rows, bt, b0, bt_pitch, vectors, depth, out, o0, o_pitch, width, first), codegen


@numba.njit(nogil=True, cache=True)
def products_nt(a, b, out, q0, q1, add):  # pragma: no cover - compiled
    """``out[q] (+ if add)= a[q] @ b[q].T`` for q0 <= q < q1; a (Q, R, T), b (Q, S, T) and out
    (Q, R, S) C-contiguous and real: the weight gradient's products, per transform point and
    group the output gradient's tiles against the input's, summed over the tiles.

    As a GEMM does: ``_PRODUCT_DEPTH`` tiles of b at a time are transposed (in registers) into a
    panel (16 KiB for 64 rows of b: in L1), and every block of a's rows takes its outer products
    with it, the sums in registers. OpenBLAS ran these short, deep products (64 x 64 from 105 to
    840 tiles, 256 x 256 from 224) at half to two thirds of its rate on large ones."""
    _, rows_a, count = a.shape
    rows_b = b.shape[1]
    lanes = 64 // out.itemsize
    pitch = -(-rows_b // lanes) * lanes
    panel = simd.aligned_empty(_PRODUCT_DEPTH * pitch, out.dtype)
    af, bf, of = a.reshape(-1), b.reshape(-1), out.reshape(-1)
    for q in range(q0, q1):
        for t0 in range(0, count, _PRODUCT_DEPTH):
            depth = min(_PRODUCT_DEPTH, count - t0)
            for s0 in range(0, rows_b, lanes):
                for t in range(0, depth, lanes):
                    simd.transpose(panel, t * pitch + s0, pitch, bf, (q * rows_b + s0) * count + t0 + t, count,
                                   min(lanes, rows_b - s0), min(lanes, depth - t), lanes)
            first = 1 if t0 == 0 and not add else 0
            for s0 in range(0, rows_b, _PRODUCT_VECTORS * lanes):
                vectors = min(_PRODUCT_VECTORS, -(-(rows_b - s0) // lanes))
                for r0 in range(0, rows_a, _PRODUCT_ROWS):
                    _outer_block(af, (q * rows_a + r0) * count + t0, count, min(_PRODUCT_ROWS, rows_a - r0), panel,
                                 s0, pitch, vectors, depth, of, (q * rows_a + r0) * rows_b + s0, rows_b, rows_b - s0,
                                 first)


# Entry points with the tile size a compile-time constant (strides and loop bounds specialised);
# serial and GIL-free: callers run chunks on worker threads.
@numba.njit(nogil=True, cache=True, fastmath={"contract"})
def _input_transform_2(x, src_rows, lo, col_stop, nd, t_last, u0, u1, c0, c1, v):  # pragma: no cover
    _input_transform(2, x, src_rows, lo, col_stop, nd, t_last, u0, u1, c0, c1, v)


@numba.njit(nogil=True, cache=True, fastmath={"contract"})
def _input_transform_4(x, src_rows, lo, col_stop, nd, t_last, u0, u1, c0, c1, v):  # pragma: no cover
    _input_transform(4, x, src_rows, lo, col_stop, nd, t_last, u0, u1, c0, c1, v)


@numba.njit(nogil=True, cache=True, fastmath={"contract"})
def _output_transform_2(prod, dst_rows, nd, t_last, u0, u1, o0, o1, per_group, y):  # pragma: no cover
    _output_transform(2, prod, dst_rows, nd, t_last, u0, u1, o0, o1, per_group, y)


@numba.njit(nogil=True, cache=True, fastmath={"contract"})
def _output_transform_4(prod, dst_rows, nd, t_last, u0, u1, o0, o1, per_group, y):  # pragma: no cover
    _output_transform(4, prod, dst_rows, nd, t_last, u0, u1, o0, o1, per_group, y)


@numba.njit(nogil=True, cache=True, fastmath={"contract"})
def _output_adjoint_2(dy, dst_rows, nd, t_last, u0, u1, o0, o1, dprod):  # pragma: no cover
    _output_adjoint(2, dy, dst_rows, nd, t_last, u0, u1, o0, o1, dprod)


@numba.njit(nogil=True, cache=True, fastmath={"contract"})
def _output_adjoint_4(dy, dst_rows, nd, t_last, u0, u1, o0, o1, dprod):  # pragma: no cover
    _output_adjoint(4, dy, dst_rows, nd, t_last, u0, u1, o0, o1, dprod)


@numba.njit(nogil=True, cache=True, fastmath={"contract"})
def _filter_transform_2(w, nd, flipped, f0, f1, u):  # pragma: no cover - compiled
    _filter_transform(2, _GF if flipped else _G, w, nd, f0, f1, u)


@numba.njit(nogil=True, cache=True, fastmath={"contract"})
def _filter_transform_4(w, nd, flipped, f0, f1, u):  # pragma: no cover - compiled
    _filter_transform(4, _GF if flipped else _G, w, nd, f0, f1, u)


#: m -> input / output transform kernel, the output transform's adjoint (weight gradients), and the
#: filter transform.
INPUT_TRANSFORM = {2: _input_transform_2, 4: _input_transform_4}
OUTPUT_TRANSFORM = {2: _output_transform_2, 4: _output_transform_4}
OUTPUT_ADJOINT = {2: _output_adjoint_2, 4: _output_adjoint_4}
FILTER_TRANSFORM = {2: _filter_transform_2, 4: _filter_transform_4}
