"""im2col + BLAS matmul, one matrix product per group and tile.

The columns ``(C*K, positions)`` of a tile hold, for each output position, the receptive
field of every input channel (zero in the padding); a compiled kernel builds them straight
from the unpadded input, channel rows in parallel, each row a contiguous run. The product
``W (O, C*K) @ cols`` lands directly in the channels-first output. Tiles cover several whole
samples or a slice of one sample's output positions, so the columns never exceed the
workspace budget (a 3-D layer never materialises its full im2col).

* 1x1 stride-1 unpadded: a plain matmul on the input, no copy.
* Input gradient: ``W^T @ dy`` per tile, then a compiled col2im scatter-add (no multiplications
  by the zeros a strided transposed convolution would insert).
* Weight gradient: ``dy @ cols^T`` accumulated over tiles.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np

from .. import _config
from .._geometry import ConvGeometry
from ._base import Algorithm
from ._layout import Tile, as5d, position_tiles, spatial3d


class Gemm(Algorithm):
    name = "gemm"
    native_ops = ("forward", "input_grad", "weight_grad")

    def supports(self, geom, dtype, op):
        if geom.nd > 3:
            return f"gemm: {geom.nd} spatial dimensions; the compiled im2col handles 1 to 3"
        return None

    def cost(self, geom, dtype, op):
        from .._cost_model import gemm_seconds
        pack = 0 if geom.is_pointwise else geom.batch * math.prod(geom.out_size) * _rows(geom)
        return gemm_seconds(geom.macs, geom.out_per_group, geom.in_per_group * geom.kernel_volume,
                            math.prod(geom.out_size), pack, np.dtype(dtype).itemsize)

    def forward(self, x, w, geom):
        wm = _weight_matrix(w, geom)
        y = np.empty(geom.output_shape, dtype=x.dtype)
        yf = _flat(y, geom, geom.out_per_group)
        if geom.is_pointwise:
            np.matmul(wm, _flat(x, geom, geom.in_per_group), out=yf)
            return y
        for tile, cols in packed_tiles(x, geom, geom.out_channels):
            if tile.nt == 1:
                np.matmul(wm, cols, out=yf[tile.n0, :, :, tile.l0:tile.l0 + tile.lt])
            else:
                _scatter_samples(wm @ cols, yf, tile)
        return y

    def input_grad(self, dy, w, geom):
        wt = np.swapaxes(_weight_matrix(w, geom), -1, -2)  # (G, Cg*K, Og)
        dyf = _flat(dy, geom, geom.out_per_group)
        if geom.is_pointwise:
            return (wt @ dyf).reshape(geom.input_shape)
        from ._gemm_kernels import col2im_add
        s3 = spatial3d(geom)
        dx = np.zeros((geom.batch, geom.in_channels, *s3.in_size), dtype=dy.dtype)
        for tile in _tiles(geom, dy.dtype, _rows(geom) + geom.out_channels):
            dcols = wt @ _gather_samples(dyf, tile)
            col2im_add(dcols.reshape(-1, tile.nt, tile.lt), dx, tile.n0, tile.l0, *s3[1:])
        return dx.reshape(geom.input_shape)

    def weight_grad(self, x, dy, geom):
        dyf = _flat(dy, geom, geom.out_per_group)
        dw = np.zeros((geom.groups, geom.out_per_group, geom.in_per_group * geom.kernel_volume), dtype=x.dtype)
        if geom.is_pointwise:
            xf = _flat(x, geom, geom.in_per_group)
            for n in range(geom.batch):
                dw += dyf[n] @ np.swapaxes(xf[n], -1, -2)
        else:
            for tile, cols in packed_tiles(x, geom, geom.out_channels):
                dw += _gather_samples(dyf, tile) @ np.swapaxes(cols, -1, -2)
        return dw.reshape(geom.weight_shape)


def packed_tiles(x: np.ndarray, geom: ConvGeometry, extra_rows: int = 0) -> Iterator[tuple[Tile, np.ndarray]]:
    """The im2col columns of ``x`` tile by tile, as ``(tile, cols)`` with cols ``(G, Cg*K, nt*lt)``.

    ``cols`` is one reused buffer: consume it before the next tile. ``extra_rows`` reserves
    workspace for the caller's per-position scratch (e.g. a gathered operand).
    """
    from ._gemm_kernels import im2col
    s3 = spatial3d(geom)
    x5 = as5d(x, s3.in_size)
    buffer = None
    for tile in _tiles(geom, x.dtype, _rows(geom) + extra_rows):
        size = _rows(geom) * tile.nt * tile.lt
        if buffer is None or buffer.size < size:
            buffer = np.empty(size, dtype=x.dtype)
        cols = buffer[:size].reshape(_rows(geom), tile.nt, tile.lt)
        im2col(x5, cols, tile.n0, tile.l0, *s3[1:])
        yield tile, cols.reshape(geom.groups, -1, tile.nt * tile.lt)


def _rows(geom: ConvGeometry) -> int:
    """Rows of the columns matrix: (channel, tap) pairs."""
    return geom.in_channels * geom.kernel_volume


def _tiles(geom: ConvGeometry, dtype, rows_per_position: int) -> Iterator[Tile]:
    return position_tiles(geom.batch, math.prod(geom.out_size), rows_per_position * np.dtype(dtype).itemsize,
                          _config.workspace_bytes)


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
