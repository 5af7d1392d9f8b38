"""im2col + BLAS matmul, one matrix product per group and tile.

Compiled kernels (``_gemm_kernels``) build the im2col columns of a tile straight from the
unpadded input (zero in the padding) and scatter them back; BLAS does the arithmetic. Tiles
cover several whole samples or a slice of one sample's output positions, so the scratch
stays within the workspace budget (a 3-D layer never materialises its full im2col). Each
product is oriented the way BLAS runs it fastest (measured on the reference machine; see
``_cost_model``):

* forward, channels-last: the input slab of a tile is transposed to channels-last, so each
  (kd, kh) of a receptive field is one contiguous run; ``cols (positions, K*C) @ W^T`` gives
  ``(positions, O)``, transposed into the channels-first output. Fastest when O is small.
* forward, channel rows: ``W (O, C*K) @ cols (C*K, positions)`` lands directly in the output;
  used for 1x1 kernels (the columns are then just a strided subsample) and wide layers.
  A 1x1 stride-1 unpadded convolution is a plain matmul on the input, no copy at all.
* input gradient: ``W^T @ dy`` per tile, then a col2im scatter-add (no multiplications by the
  zeros a strided transposed convolution would insert).
* weight gradient: ``cols (C*K, positions) @ dy^T (positions, O)`` accumulated over tiles.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np

from .. import _config
from .._geometry import ConvGeometry
from ._base import Algorithm
from ._layout import Scratch, Tile, as5d, input_planes, position_tiles, spatial3d

#: Columns per output channel (Cg*K / Og) from which the channels-last forward beats channel rows:
#: BLAS gains on long thin products (same.5x5c32: 1.22x, unet3d.3x3x3c32: 1.12x, c3d: 1.07x on
#: the reference machine), while below it the two transposes cost more (stem7x7s2: 0.8x,
#: 3x3c64: 0.9x, wavenet k2: 0.56x).
CHANNELS_LAST_MIN_DEPTH = 12
#: Output positions per sample from which each sample of a multi-sample tile gets its own product
#: written in place; below it one product over the tile and a scatter beat thin products.
PER_SAMPLE_MIN_POSITIONS = 512
#: Scratch per tile, below the workspace budget: buffers beyond ~32 MB are fresh mmaps whose page
#: faults cost more than the extra calls of smaller tiles (same.5x5c32: 16 MiB tiles 1.3x faster
#: than 256 MiB ones on the reference machine).
TILE_BYTES = 16 * 2**20


class Gemm(Algorithm):
    name = "gemm"
    native_ops = ("forward", "input_grad", "weight_grad")

    def supports(self, geom, dtype, op):
        if geom.nd > 3:
            return f"gemm: {geom.nd} spatial dimensions; the compiled im2col handles 1 to 3"
        return None

    def cost(self, geom, dtype, op):
        from .._cost_model import gemm_seconds
        per_sample, og, depth = math.prod(geom.out_size), geom.out_per_group, geom.in_per_group * geom.kernel_volume
        positions = geom.batch * per_sample
        # elements packed, scattered or transposed besides the product
        if geom.is_pointwise:
            moved = 0
        elif op == "forward":
            moved = positions * _rows(geom)
            if _channels_last(geom):
                moved += math.prod(geom.input_shape) + positions * geom.out_channels
        elif op == "input_grad":
            moved = positions * _rows(geom) + math.prod(geom.input_shape)
        else:
            moved = positions * (_rows(geom) + geom.out_channels)
        # (m, k, n) of the product: the contraction is Cg*K, Og or the positions
        shape = {"forward": (og, depth, per_sample), "input_grad": (depth, og, per_sample),
                 "weight_grad": (depth, positions, og)}[op]
        return gemm_seconds(geom.macs, *shape, moved, np.dtype(dtype).itemsize)

    def forward(self, x, w, geom):
        y = np.empty(geom.output_shape, dtype=x.dtype)
        if geom.is_pointwise:
            np.matmul(_weight_matrix(w, geom), _flat(x, geom, geom.in_per_group),
                      out=_flat(y, geom, geom.out_per_group))
        elif _channels_last(geom):
            _forward_channels_last(x, w, geom, y)
        else:
            _forward_channel_rows(x, w, geom, y)
        return y

    def input_grad(self, dy, w, geom):
        wt = np.swapaxes(_weight_matrix(w, geom), -1, -2)  # (G, Cg*K, Og)
        dyf = _flat(dy, geom, geom.out_per_group)
        if geom.is_pointwise:
            return (wt @ dyf).reshape(geom.input_shape)
        from ._gemm_kernels import col2im_add
        s3 = spatial3d(geom)
        dx = np.zeros((geom.batch, geom.in_channels, *s3.in_size), dtype=dy.dtype)
        scratch = Scratch(dy.dtype)
        for tile in _tiles(geom, dy.dtype, _rows(geom) + geom.out_channels):
            dcols = scratch.get("cols", (geom.groups, _rows(geom) // geom.groups, tile.nt * tile.lt))
            np.matmul(wt, _gather_samples(dyf, tile), out=dcols)
            col2im_add(dcols.reshape(-1, tile.nt, tile.lt), dx, tile.n0, tile.l0, *s3[1:])
        return dx.reshape(geom.input_shape)

    def weight_grad(self, x, dy, geom):
        g, og = geom.groups, geom.out_per_group
        dw_t = np.zeros((g, geom.in_per_group * geom.kernel_volume, og), dtype=x.dtype)
        if geom.is_pointwise:
            xf, dyf = _flat(x, geom, geom.in_per_group), _flat(dy, geom, og)
            for n in range(geom.batch):
                dw_t += xf[n] @ np.swapaxes(dyf[n], -1, -2)
        else:
            dy3 = np.ascontiguousarray(dy).reshape(geom.batch, geom.out_channels, -1)
            scratch = Scratch(dy.dtype)
            for tile, cols in packed_tiles(x, geom, geom.out_channels, scratch):
                dy_t = scratch.get("dy_t", (tile.nt * tile.lt, geom.out_channels))
                _to_position_rows(dy3, tile.n0, tile.nt, tile.l0, tile.lt, dy_t)
                dw_t += cols @ dy_t.reshape(-1, g, og).transpose(1, 0, 2)
        return np.swapaxes(dw_t, 1, 2).reshape(geom.weight_shape)


def packed_tiles(x: np.ndarray, geom: ConvGeometry, extra_rows: int = 0,
                 scratch: Scratch | None = None) -> Iterator[tuple[Tile, np.ndarray]]:
    """The im2col columns of ``x`` tile by tile, as ``(tile, cols)`` with cols ``(G, Cg*K, nt*lt)``
    (rows ordered channel, then tap, as the weight ``(O, Cg, *k)``).

    ``cols`` is a reused buffer: consume it before the next tile. ``extra_rows`` reserves
    workspace for the caller's per-position scratch (e.g. a product or a transposed operand).
    """
    from ._gemm_kernels import im2col
    s3 = spatial3d(geom)
    x5 = as5d(x, s3.in_size)
    scratch = scratch or Scratch(x.dtype)
    for tile in _tiles(geom, x.dtype, _rows(geom) + extra_rows):
        cols = scratch.get("cols", (_rows(geom), tile.nt, tile.lt))
        im2col(x5, cols, tile.n0, tile.l0, *s3[1:])
        yield tile, cols.reshape(geom.groups, -1, tile.nt * tile.lt)


def _channels_last(geom: ConvGeometry) -> bool:
    """Whether the forward pass runs channels-last (see CHANNELS_LAST_MIN_DEPTH)."""
    return geom.kernel_volume > 1 and geom.in_per_group * geom.kernel_volume >= CHANNELS_LAST_MIN_DEPTH * geom.out_per_group


def _forward_channel_rows(x: np.ndarray, w: np.ndarray, geom: ConvGeometry, y: np.ndarray) -> None:
    wm = _weight_matrix(w, geom)
    yf = _flat(y, geom, geom.out_per_group)
    for tile, cols in packed_tiles(x, geom, geom.out_channels):
        if tile.nt == 1 or tile.lt >= PER_SAMPLE_MIN_POSITIONS:
            for i in range(tile.nt):
                np.matmul(wm, cols[:, :, i * tile.lt:(i + 1) * tile.lt],
                          out=yf[tile.n0 + i, :, :, tile.l0:tile.l0 + tile.lt])
        else:
            _scatter_samples(wm @ cols, yf, tile)


def _forward_channels_last(x: np.ndarray, w: np.ndarray, geom: ConvGeometry, y: np.ndarray) -> None:
    from ._gemm_kernels import im2col_channels_last
    s3 = spatial3d(geom)
    g, og, cg, taps = geom.groups, geom.out_per_group, geom.in_per_group, geom.kernel_volume
    # (O, Cg, *k) -> (G, K*Cg, Og): rows in the (tap, channel) order of the channels-last columns
    w_t = w.reshape(g, og, cg, taps).transpose(0, 3, 2, 1).reshape(g, taps * cg, og)
    x3 = as5d(x, s3.in_size).reshape(geom.batch, geom.in_channels, -1)
    y3 = y.reshape(geom.batch, geom.out_channels, -1)
    plane, sample = x3.shape[2] // s3.in_size[0], x3.shape[2]
    itemsize = x.dtype.itemsize
    # The input goes channels-last a whole sample at a time when that fits beside the tiles, else a
    # slab of planes per tile (re-transposing the halo planes). Tiles of whole samples hold their own.
    whole = sample * geom.in_channels * itemsize <= _config.workspace_bytes // 2
    halo = s3.dilation[0] * (s3.kernel[0] - 1) + s3.stride[0]
    fixed = (sample if whole else halo * plane) * geom.in_channels
    per_position = geom.in_channels * (taps + math.ceil(sample / math.prod(geom.out_size))) + geom.out_channels
    scratch = Scratch(x.dtype)
    held = None  # the sample x_cl holds, when whole
    for tile in _tiles(geom, x.dtype, per_position, fixed):
        if tile.lt < math.prod(geom.out_size) and whole:
            start, stop = 0, s3.in_size[0]
            x_cl = scratch.get("x_cl", (1, *s3.in_size, geom.in_channels))
            if held != tile.n0:
                _to_position_rows(x3, tile.n0, 1, 0, sample, x_cl)
                held = tile.n0
        else:
            start, stop = input_planes(geom, s3, tile.l0, tile.lt)
            x_cl = scratch.get("x_cl", (tile.nt, stop - start, *s3.in_size[1:], geom.in_channels))
            _to_position_rows(x3, tile.n0, tile.nt, start * plane, (stop - start) * plane, x_cl)
        cols = scratch.get("cols", (tile.nt * tile.lt, taps * geom.in_channels))
        im2col_channels_last(x_cl, cols, start, tile.l0, g, s3.in_size, *s3[1:])
        y_t = scratch.get("y_t", (tile.nt * tile.lt, geom.out_channels))
        np.matmul(cols.reshape(-1, g, taps * cg).transpose(1, 0, 2), w_t,
                  out=y_t.reshape(-1, g, og).transpose(1, 0, 2))
        _from_position_rows(y_t, y3, tile.n0, tile.nt, tile.l0, tile.lt)


def _to_position_rows(a3: np.ndarray, n0: int, nt: int, start: int, count: int, out: np.ndarray) -> None:
    """out (nt*count, R) = a3[n0:n0+nt, :, start:start+count] transposed; a3 (N, R, L) C-contiguous."""
    from ._gemm_kernels import transpose
    _, r, length = a3.shape
    transpose(a3, out, nt, r, count, n0 * r * length + start, r * length, length, 0, count * r, r)


def _from_position_rows(rows: np.ndarray, a3: np.ndarray, n0: int, nt: int, start: int, count: int) -> None:
    """Inverse of :func:`_to_position_rows`: a3[n0:n0+nt, :, start:start+count] = rows transposed."""
    from ._gemm_kernels import transpose
    _, r, length = a3.shape
    transpose(rows, a3, nt, count, r, 0, count * r, r, n0 * r * length + start, r * length, length)


def _rows(geom: ConvGeometry) -> int:
    """Rows of the columns matrix: (channel, tap) pairs."""
    return geom.in_channels * geom.kernel_volume


def _tiles(geom: ConvGeometry, dtype, values_per_position: int, fixed_values: int = 0) -> Iterator[Tile]:
    """Tiles of the output positions whose scratch (``values_per_position`` each, plus
    ``fixed_values`` per tile) fits the workspace."""
    itemsize = np.dtype(dtype).itemsize
    budget = min(_config.workspace_bytes - fixed_values * itemsize, TILE_BYTES)
    return position_tiles(geom.batch, math.prod(geom.out_size), values_per_position * itemsize, max(budget, 0))


def _weight_matrix(w: np.ndarray, geom: ConvGeometry) -> np.ndarray:
    """(O, Cg, *k) -> (G, Og, Cg*K)."""
    return w.reshape(geom.groups, geom.out_per_group, geom.in_per_group * geom.kernel_volume)


def _flat(a: np.ndarray, geom: ConvGeometry, per_group: int) -> np.ndarray:
    """(N, C, *spatial) -> (N, G, C/G, L)."""
    return a.reshape(a.shape[0], geom.groups, per_group, -1)


def _gather_samples(af: np.ndarray, tile: Tile) -> np.ndarray:
    """The tile of a flat (N, G, R, L) array as (G, R, nt*lt): a view for one sample, a copy for several."""
    if tile.nt == 1:
        return af[tile.n0, :, :, tile.l0:tile.l0 + tile.lt]
    part = af[tile.n0:tile.n0 + tile.nt]
    return part.transpose(1, 2, 0, 3).reshape(part.shape[1], part.shape[2], -1)


def _scatter_samples(result: np.ndarray, af: np.ndarray, tile: Tile) -> None:
    """Inverse of :func:`_gather_samples` for a multi-sample tile: (G, R, nt*L) into af[n0:n0+nt]."""
    g, r = result.shape[:2]
    af[tile.n0:tile.n0 + tile.nt] = result.reshape(g, r, tile.nt, -1).transpose(2, 0, 1, 3)
