"""Compiled kernels of Winograd F(m, 3) on channel-blocked layouts (``winograd_blocked``).

Layouts, with ``B = 16`` input channels per block and ``OBW`` output channels per block (two
64-byte vectors), ``alpha = m + 2``, ``P = alpha^d`` transform points and ``T`` tiles per chunk
(a box of tiles: rows of tiles of one tile plane, or a stretch of a 1-D signal):

* a chunk's packed input ``(CB, planes, rows, Wp, B)``: the input its tiles read, packed by
  ``blocked``'s packing (stride 1) in the chunk, zero-padded to whole tiles;
* transformed filters ``U (P, OB, CB, B, OBW)``: per point, the weights of an output block in
  the order ``blocked``'s micro-kernel reads them (one "tap" per input block);
* transformed inputs ``V (P, CB, T, B)``: per point, the chunk's tiles as the micro-kernel's
  pixels, ``B`` channels interleaved;
* products ``(P, OB, T, OBW)``: the micro-kernel's sums, output channels interleaved;
* a chunk's outputs ``(planes, rows, columns, OBW)`` per output block, moved to the (N, O, ...)
  output by vector transposes.

Every value a transform reads or writes is a vector of ``B`` channels (or of half an output
block), so the transforms run at full width whatever the tile count, and a chunk keeps V and the
products in or near L2 from transform to product to transform back.
The transforms are ``_winograd_kernels``'s row maps (the matrices built into the code): the
leading axes of the input tiles first, over a whole row of tiles at once, then each tile's
columns; on the way back each tile's columns first, then its leading axes (a whole row's would
leave L1: 1.1x slower, as was splitting rows into pixel phases to transform a row's columns at once).
Imported lazily; compiled once per dtype and cached on disk.
"""

from __future__ import annotations

import numba
import numpy as np

from . import _simd as simd
from ._blocked_kernels import _U, B, VECTORS, _tile, pack_input
from ._winograd_kernels import _AT, _BT
from ._winograd_kernels import _map_rows as _map

#: Tiles per register tile of the products (``blocked``'s widest).
_PIXELS = 14


@numba.njit(inline="always")
def _six(first, step):  # pragma: no cover - compiled
    """Six offsets ``step`` apart from ``first`` (the row maps use the first alpha)."""
    return (first, first + step, first + 2 * step, first + 3 * step, first + 4 * step, first + 5 * step)


@numba.njit(inline="always")
def _along_axis(g, src, s0, dst, d0, d_step, outer, inner, obw):  # pragma: no cover - compiled
    """``dst[d0 + ((o*alpha + a)*inner + r)*d_step + j] = sum_k g[a, k] * src[s0 + ((o*3 + k)*inner + r)*obw + j]``:
    the filter transform along one axis of (outer, 3, inner) rows of ``obw`` outputs."""
    alpha = g.shape[0]
    for o in range(outer):
        for a in range(alpha):
            g0, g1, g2 = g[a, 0], g[a, 1], g[a, 2]
            for r in range(inner):
                at, f = d0 + ((o * alpha + a) * inner + r) * d_step, s0 + (o * 3 * inner + r) * obw
                for j in range(obw):
                    dst[_U(at + j)] = (g0 * src[_U(f + j)] + g1 * src[_U(f + inner * obw + j)]
                                       + g2 * src[_U(f + 2 * inner * obw + j)])


@numba.njit(nogil=True, cache=True)
def filter_transform(w, swapped, g, u, cb0, cb1):  # pragma: no cover - compiled
    """U[p, ob, cb] for the computed layer's input blocks cb0 <= cb < cb1: ``g`` applied along
    every axis (the Kronecker power of g; p row-major over the alpha^d points) of the 3-tap
    (3x3, 3x3x3) filter f of each input channel c and output o, which is ``w[o, c]``, or ``w[c, o]`` when
    ``swapped`` (an input gradient's filters; ``g`` with its columns reversed flips them); g in
    u's dtype. A block's filters are first transposed a vector square at a time into an L1
    buffer of (channel, tap) rows of OBW outputs, as ``blocked`` packs its weights. Zero beyond
    the layer's output channels; channels beyond its input channels are left to the caller.
    u (P, OB, CB, B, OBW)."""
    points, blocks_out, cb_count, _, obw = u.shape
    alpha = g.shape[0]
    nd = 1 if points == alpha else 2 if points == alpha * alpha else 3
    taps = 3 ** nd
    lanes = 64 // u.itemsize
    if swapped:
        channels, outputs = w.shape[0], w.shape[1]
    else:
        outputs, channels = w.shape[0], w.shape[1]
    flat, uf = w.reshape(-1), u.reshape(-1)
    block = simd.aligned_empty(B * taps * obw, u.dtype)  # (channel, tap) rows of the block's outputs
    first = simd.aligned_empty(alpha * 9 * obw, u.dtype)  # after the first axis
    second = simd.aligned_empty(alpha * alpha * 3 * obw, u.dtype)  # after the second (3-D)
    point_step = blocks_out * cb_count * B * obw
    for cb in range(cb0, cb1):
        filled = min(B, channels - cb * B)
        for ob in range(blocks_out):
            for v in range(0, obw, lanes):
                rows = max(0, min(lanes, outputs - ob * obw - v))
                if swapped:  # w[c, o:o + lanes] is a run of (output, tap)
                    for i in range(filled):
                        for col in range(0, taps, lanes):
                            simd.transpose(block, (i * taps + col) * obw + v, obw, flat,
                                           ((cb * B + i) * outputs + ob * obw + v) * taps + col, taps, rows,
                                           min(lanes, taps - col), lanes)
                else:  # w[o, c:c + B] is a run of (channel, tap)
                    for col in range(0, filled * taps, lanes):
                        simd.transpose(block, col * obw + v, obw, flat,
                                       ((ob * obw + v) * channels + cb * B) * taps + col, channels * taps, rows,
                                       min(lanes, filled * taps - col), lanes)
            for i in range(filled):
                at = ((ob * cb_count + cb) * B + i) * obw  # point 0 in u
                if nd == 1:
                    _along_axis(g, block, i * taps * obw, uf, at, point_step, 1, 1, obw)
                elif nd == 2:
                    _along_axis(g, block, i * taps * obw, first, 0, obw, 1, 3, obw)
                    _along_axis(g, first, 0, uf, at, point_step, alpha, 1, obw)
                else:
                    _along_axis(g, block, i * taps * obw, first, 0, obw, 1, 9, obw)
                    _along_axis(g, first, 0, second, 0, obw, alpha, 3, obw)
                    _along_axis(g, second, 0, uf, at, point_step, alpha * alpha, 1, obw)


@numba.njit(inline="always")
def _chunk(m, nd, x, x_shape, lo, sizes, n, tz, ty0, ty1, tx0, tx1, u, y, xp, v, prod, acc, tmp,
           offs):  # pragma: no cover - compiled
    """The tiles of tile plane tz (3-D; else 0), rows ty0 <= ty < ty1 (2-D, 3-D; else 0 to 1) and
    columns tx0 <= tx < tx1 of sample n of the flat x of ``x_shape`` (N, C, D, H, W; D, H = 1 where
    absent), padded by ``lo`` (d, h, w): the input they read packed to xp, their tiles to V, the
    products, and back to the flat output ``y``; ``sizes`` = (CB, O, output depth, height, width)."""
    alpha = m + 2
    points = alpha ** nd
    lines = alpha ** (nd - 1)  # tile lines along W: (i, j) in 3-D, i in 2-D, one in 1-D
    cb_count, outputs, depth, height, width = sizes[0], sizes[1], sizes[2], sizes[3], sizes[4]
    blocks_out = u.shape[1]
    lanes = 64 // y.itemsize
    obw = VECTORS * lanes
    rows, tiles_x = ty1 - ty0, tx1 - tx0
    tiles = rows * tiles_x
    wp = tiles_x * m + 2
    row = wp * B
    # the input the chunk reads: alpha planes (3-D) of rows (2-D, 3-D) from ty0 * m, columns from tx0 * m
    volume_in = x_shape[1] * x_shape[2] * x_shape[3] * x_shape[4]
    one, at = x_shape.copy(), lo.copy()
    one[0], at[0], at[1] = 1, lo[0] - tz * m, lo[1] - ty0 * m
    planes_in = alpha if nd == 3 else 1
    rows_in = rows * m + 2 if nd > 1 else 1
    pack_input(x[n * volume_in:(n + 1) * volume_in], one, xp, at, 1,
               np.array((cb_count, planes_in, rows_in, wp), dtype=np.int64), tx0 * m, 0, cb_count)
    vp = cb_count * tiles * B  # V's point stride
    # input tiles: the leading axes over whole rows of tiles (alpha input rows -> alpha rows, per
    # axis), then each tile's columns
    second = lines * row  # tmp's second region (3-D)
    for cb in range(cb_count):
        for a in range(rows):
            if nd == 1:
                for tx in range(tiles_x):
                    _map(m, _BT, v, _six((cb * tiles + tx) * B, vp), xp, _six(cb * row + tx * m * B, B), B)
                continue
            if nd == 3:
                first_row = cb * planes_in * rows_in + a * m
                for j in range(alpha):  # depth: planes i -> lines (i', j)
                    _map(m, _BT, tmp, _six(j * row, alpha * row), xp, _six((first_row + j) * row, rows_in * row), row)
                for i in range(alpha):  # height: lines (i', j) -> (i', j')
                    _map(m, _BT, tmp, _six(second + i * alpha * row, row), tmp, _six(i * alpha * row, row), row)
                source = second
            else:
                _map(m, _BT, tmp, _six(0, row), xp, _six((cb * rows_in + a * m) * row, row), row)
                source = 0
            for tx in range(tiles_x):
                t = a * tiles_x + tx
                for q in range(lines):
                    _map(m, _BT, v, _six(q * alpha * vp + (cb * tiles + t) * B, vp), tmp,
                         _six(source + q * row + tx * m * B, B), B)
    # products: per point and output block, the micro-kernel over the tiles, one input block per "tap"
    for cb in range(cb_count):
        offs[cb] = cb * tiles * B
    for p in range(points):
        for ob in range(blocks_out):
            wb = (p * blocks_out + ob) * cb_count * B * obw
            for t0 in range(0, tiles, _PIXELS):
                _tile(min(_PIXELS, tiles - t0), v, p * vp + t0 * B, u, wb, offs, cb_count, prod,
                      ((p * blocks_out + ob) * tiles + t0) * obw, True)
    # back: each tile's columns (alpha -> m), then its leading axes, into the chunk's outputs
    # (m planes in 3-D, rows * m in 2-D and 3-D, tiles_x * m, OBW)
    columns, heights = tiles_x * m, rows * m if nd > 1 else 1
    pp = blocks_out * tiles * obw  # the products' point stride
    second = lines * m * obw
    for ob in range(blocks_out):
        for t in range(tiles):
            a, tx = t // tiles_x, t % tiles_x
            corner = (a * m * columns + tx * m) * obw
            if nd == 1:
                _map(m, _AT, acc, _six(corner, obw), prod, _six((ob * tiles + t) * obw, pp), obw)
                continue
            for q in range(lines):
                _map(m, _AT, tmp, _six(q * m * obw, obw), prod, _six(q * alpha * pp + (ob * tiles + t) * obw, pp), obw)
            if nd == 3:
                for i in range(alpha):  # height: lines (i, j) -> (i, j')
                    for c in range(m):
                        _map(m, _AT, tmp, _six(second + (i * m * m + c) * obw, m * obw), tmp,
                             _six((i * alpha * m + c) * obw, m * obw), obw)
                for bb in range(m):  # depth: (i, j') -> (i', j')
                    for c in range(m):
                        _map(m, _AT, acc, _six(corner + (bb * columns + c) * obw, heights * columns * obw), tmp,
                             _six(second + (bb * m + c) * obw, m * m * obw), obw)
            else:
                for c in range(m):
                    _map(m, _AT, acc, _six(corner + c * obw, columns * obw), tmp, _six(c * obw, m * obw), obw)
        # the block's outputs to their channel rows, a vector square at a time
        volume = depth * height * width
        for dd in range(min(m if nd == 3 else 1, depth - tz * m)):
            for hh in range(min(heights, height - ty0 * m)):
                at_row = ((tz * m + dd) * height + ty0 * m + hh) * width + tx0 * m
                from_row = (dd * heights + hh) * columns * obw
                written = min(columns, width - tx0 * m)  # the chunk's output columns
                for c0 in range(0, written, lanes):
                    for j in range(0, min(obw, outputs - ob * obw), lanes):
                        channel = ob * obw + j
                        run = min(lanes, written - c0)
                        simd.transpose(y, (n * outputs + channel) * volume + at_row + c0, volume, acc,
                                       from_row + c0 * obw + j, obw, run, min(lanes, outputs - channel), run)


def _entry(m, nd):
    """``_chunk`` compiled with m and nd constants (loop bounds and branches folded)."""
    def chunk(x, x_shape, lo, sizes, n, tz, ty0, ty1, tx0, tx1, u, y, xp, v, prod, acc, tmp, offs):  # pragma: no cover
        _chunk(m, nd, x, x_shape, lo, sizes, n, tz, ty0, ty1, tx0, tx1, u, y, xp, v, prod, acc, tmp, offs)
    return numba.njit(nogil=True, cache=True)(chunk)  # cached per (m, nd): numba keys closures by their values


#: (m, spatial dimensions) -> the chunk kernel with both compile-time constants.
CHUNK = {(m, nd): _entry(m, nd) for m in (2, 4) for nd in (1, 2, 3)}
