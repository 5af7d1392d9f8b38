"""Compiled kernels of Winograd F(m, 3) on channel-blocked layouts (``winograd_blocked``).

Layouts, with ``B = 16`` input channels per block and ``OBW`` output channels per block (two
64-byte vectors), ``alpha = m + 2``, ``P = alpha^2`` transform points and ``T`` tiles per chunk:

* a chunk's packed input ``(CB, rows, Wp, B)``: the input rows its tiles read, packed by
  ``blocked``'s packing (stride 1) in the chunk, zero-padded to whole tiles;
* transformed filters ``U (P, OB, CB, B, OBW)``: per point, the weights of an output block in
  the order ``blocked``'s micro-kernel reads them (one "tap" per input block);
* transformed inputs ``V (P, CB, T, B)``: per point, the chunk's tiles as the micro-kernel's
  pixels, ``B`` channels interleaved;
* products ``(P, OB, T, OBW)``: the micro-kernel's sums, output channels interleaved;
* a chunk's outputs ``(rows, columns, OBW)`` per output block, moved to the (N, O, H, W) output
  by vector transposes.

Every value a transform reads or writes is a vector of ``B`` channels (or of half an output
block), so the transforms run at full width whatever the tile count, and a chunk of a few tile
rows keeps V and the products in L2 from transform to product to transform back.
The transforms are ``_winograd_kernels``'s row maps (the matrices built into the code): rows of
the input tile first, over a whole tile row at once, then each tile's columns.
Imported lazily; compiled once per dtype and cached on disk.
"""

from __future__ import annotations

import numba
import numpy as np

from . import _simd as simd
from . import _winograd_transforms as wt
from ._blocked_kernels import B, VECTORS, _tile, pack_input
from ._winograd_kernels import _row_maps

#: Unsigned indices: numba then skips its negative-index wraparound, which blocks vectorisation.
_U = np.uintp
#: Tiles per register tile of the products (``blocked``'s widest).
_PIXELS = 14
_BT, _AT = 0, 1
_maps_2, _maps_4 = (_row_maps((wt.matrices(m)[0], wt.matrices(m)[2])) for m in (2, 4))


@numba.njit(inline="always")
def _map(m, kind, dst, d_offs, src, s_offs, count):  # pragma: no cover - compiled
    if m == 2:
        _maps_2(kind, dst, d_offs, src, s_offs, count)
    else:
        _maps_4(kind, dst, d_offs, src, s_offs, count)


@numba.njit(inline="always")
def _six(first, step):  # pragma: no cover - compiled
    """Six offsets ``step`` apart from ``first`` (the row maps use the first alpha)."""
    return (first, first + step, first + 2 * step, first + 3 * step, first + 4 * step, first + 5 * step)


@numba.njit(nogil=True, cache=True)
def filter_transform(w, swapped, g, u, cb0, cb1):  # pragma: no cover - compiled
    """U[p, ob, cb] for the computed layer's input blocks cb0 <= cb < cb1: ``g @ f @ g.T`` at
    point p (row-major over alpha x alpha) of the 3x3 filter f of each input channel c and output
    o, which is ``w[o, c]``, or ``w[c, o]`` when ``swapped`` (an input gradient's filters; ``g``
    with its columns reversed flips them); g in u's dtype. A block's filters are first transposed
    a vector square at a time into an L1 buffer of (channel, tap) rows of OBW outputs, as
    ``blocked`` packs its weights. Zero beyond the layer's output channels; channels beyond its
    input channels are left to the caller. u (P, OB, CB, B, OBW)."""
    _, blocks_out, _, _, obw = u.shape
    alpha = g.shape[0]
    lanes = 64 // u.itemsize
    if swapped:
        channels, outputs = w.shape[0], w.shape[1]
    else:
        outputs, channels = w.shape[0], w.shape[1]
    flat, uf = w.reshape(-1), u.reshape(-1)
    taps = simd.aligned_empty(B * 9 * obw, u.dtype)  # (channel, tap) rows of the block's outputs
    half = simd.aligned_empty(alpha * 3 * obw, u.dtype)  # g @ f, (a, l) rows
    for cb in range(cb0, cb1):
        filled = min(B, channels - cb * B)
        for ob in range(blocks_out):
            for v in range(0, obw, lanes):
                rows = max(0, min(lanes, outputs - ob * obw - v))
                if swapped:  # w[c, o:o + lanes] is a run of (output, tap)
                    for i in range(filled):
                        for col in range(0, 9, lanes):
                            simd.transpose(taps, (i * 9 + col) * obw + v, obw, flat,
                                           ((cb * B + i) * outputs + ob * obw + v) * 9 + col, 9, rows, min(lanes, 9 - col), lanes)
                else:  # w[o, c:c + B] is a run of (channel, tap)
                    for col in range(0, filled * 9, lanes):
                        simd.transpose(taps, col * obw + v, obw, flat, ((ob * obw + v) * channels + cb * B) * 9 + col,
                                       channels * 9, rows, min(lanes, filled * 9 - col), lanes)
            for i in range(filled):
                for a in range(alpha):
                    g0, g1, g2 = g[a, 0], g[a, 1], g[a, 2]
                    for l in range(3):
                        at, f = (a * 3 + l) * obw, (i * 9 + l) * obw
                        for j in range(obw):
                            half[_U(at + j)] = (g0 * taps[_U(f + j)] + g1 * taps[_U(f + 3 * obw + j)]
                                                + g2 * taps[_U(f + 6 * obw + j)])
                for a in range(alpha):
                    for b in range(alpha):
                        at = ((((a * alpha + b) * blocks_out + ob) * u.shape[2] + cb) * B + i) * obw
                        h, g0, g1, g2 = a * 3 * obw, g[b, 0], g[b, 1], g[b, 2]
                        for j in range(obw):
                            uf[_U(at + j)] = (half[_U(h + j)] * g0 + half[_U(h + obw + j)] * g1
                                              + half[_U(h + 2 * obw + j)] * g2)


@numba.njit(inline="always")
def _chunk(m, x, x_shape, lo, sizes, n, ty0, ty1, tiles_x, u, y, xp, v, prod, acc, tmp, offs):  # pragma: no cover
    """Output tile rows ty0 <= ty < ty1 of sample n of the flat x of ``x_shape`` (N, C, 1, H, W),
    padded by ``lo`` (3-D, leading 0): their input rows packed to xp, their tiles to V, the
    products, and back to the flat (N, O, Ho, Wo) output ``y``; ``sizes`` = (CB, Wp, O, Ho, Wo)."""
    alpha = m + 2
    points = alpha * alpha
    cb_count, wp, outputs, height, width = sizes[0], sizes[1], sizes[2], sizes[3], sizes[4]
    blocks_out = u.shape[1]
    lanes = 64 // y.itemsize
    obw = VECTORS * lanes
    tiles = (ty1 - ty0) * tiles_x
    rows_in = (ty1 - ty0) * m + 2
    plane = x_shape[1] * x_shape[3] * x_shape[4]
    one, at = x_shape.copy(), lo.copy()  # sample n alone, its padded rows from ty0 * m
    one[0], at[1] = 1, lo[1] - ty0 * m
    pack_input(x[n * plane:(n + 1) * plane], one, xp, at, 1, np.array((cb_count, 1, rows_in, wp), dtype=np.int64),
               0, 0, cb_count)
    row = wp * B
    vp = cb_count * tiles * B  # V's point stride
    # input tiles: rows of a whole tile row first (alpha input rows -> alpha rows), then each tile's columns
    for cb in range(cb_count):
        for ty in range(ty1 - ty0):
            _map(m, _BT, tmp, _six(0, row), xp, _six((cb * rows_in + ty * m) * row, row), row)
            for tx in range(tiles_x):
                t = ty * tiles_x + tx
                for a in range(alpha):
                    _map(m, _BT, v, _six(a * alpha * vp + (cb * tiles + t) * B, vp), tmp,
                         _six(a * row + tx * m * B, B), B)
    # products: per point and output block, the micro-kernel over the tiles, one input block per "tap"
    for cb in range(cb_count):
        offs[cb] = cb * tiles * B
    for p in range(points):
        for ob in range(blocks_out):
            wb = (p * blocks_out + ob) * cb_count * B * obw
            for t0 in range(0, tiles, _PIXELS):
                _tile(min(_PIXELS, tiles - t0), v, p * vp + t0 * B, u, wb, offs, cb_count, prod,
                      ((p * blocks_out + ob) * tiles + t0) * obw, True)
    # back: columns of each tile's points (alpha -> m rows of tmp), then its rows into the chunk's outputs
    columns = tiles_x * m
    pp = blocks_out * tiles * obw  # the products' point stride
    for ob in range(blocks_out):
        for t in range(tiles):
            r, tx = t // tiles_x, t % tiles_x
            for a in range(alpha):
                _map(m, _AT, tmp, _six(a * m * obw, obw), prod, _six(a * alpha * pp + (ob * tiles + t) * obw, pp), obw)
            for b in range(m):
                _map(m, _AT, acc, _six(((r * m) * columns + tx * m + b) * obw, columns * obw), tmp,
                     _six(b * obw, m * obw), obw)
        # the block's outputs to their channel rows, a vector square at a time
        for rr in range(min((ty1 - ty0) * m, height - ty0 * m)):
            at_row = ty0 * m + rr
            for c0 in range(0, width, lanes):
                for j in range(0, min(obw, outputs - ob * obw), lanes):
                    channel = ob * obw + j
                    run = min(lanes, width - c0)
                    simd.transpose(y, ((n * outputs + channel) * height + at_row) * width + c0, height * width,
                                   acc, (rr * columns + c0) * obw + j, obw, run, min(lanes, outputs - channel), run)


@numba.njit(nogil=True, cache=True)
def chunk_2(x, x_shape, lo, sizes, n, ty0, ty1, tiles_x, u, y, xp, v, prod, acc, tmp, offs):  # pragma: no cover
    _chunk(2, x, x_shape, lo, sizes, n, ty0, ty1, tiles_x, u, y, xp, v, prod, acc, tmp, offs)


@numba.njit(nogil=True, cache=True)
def chunk_4(x, x_shape, lo, sizes, n, ty0, ty1, tiles_x, u, y, xp, v, prod, acc, tmp, offs):  # pragma: no cover
    _chunk(4, x, x_shape, lo, sizes, n, ty0, ty1, tiles_x, u, y, xp, v, prod, acc, tmp, offs)


#: m -> the chunk kernel with m a compile-time constant.
CHUNK = {2: chunk_2, 4: chunk_4}
