"""Winograd F(m, 3): 3-tap stride-1 convolution with fewer multiplications, in any dimension.

Each ``alpha = m + 2`` wide input tile (``alpha^d`` in d dimensions) and each filter are taken
to the transform domain, where the convolution becomes ``alpha^d`` independent matrix products
``(Og x Cg) @ (Cg x tiles)`` (one BLAS matmul over the stack), and the products come back as
``m^d`` outputs per tile. Multiplications per output fall from ``27`` (3-D) / ``9`` (2-D) / ``3``
(1-D) per input channel to ``(alpha/m)^d``: 2.25x / 4x fewer in 2-D for F(2,3) / F(4,3).

The price is accuracy: the transforms amplify rounding errors. Measured float32 relative L2
errors (vs float64, random normal data, ``benchmarks``-style shapes; ``direct`` is im2col+GEMM):

=====================  ==========  =============  =============
case                   direct      F(2,3)         F(4,3)
=====================  ==========  =============  =============
see module constants   filled in   by measurement by measurement
=====================  ==========  =============  =============

:meth:`Winograd.supports` estimates the error of a call as ``ERROR_GROWTH[m][d] * u *
sqrt(Cg)`` and declines when it exceeds ``fastconv._config.max_relative_error``.

Scratch: the transformed filters (``alpha^d * O * Cg`` values) plus transformed inputs and
products for a chunk of tile rows, sized to the workspace budget (and kept cache-sized).
"""

from __future__ import annotations

import math

import numpy as np

from .. import _config
from .._geometry import ConvGeometry
from . import _gemm_parallel as par
from . import _winograd_transforms as wt
from ._base import Algorithm
from ._layout import Scratch

#: Transform-domain bytes per chunk (inputs + products) when the workspace allows more:
#: chunks this small stay in cache between the three passes of a worker.
_CHUNK_BYTES = 4 * 2**20
#: Whole chunks per worker (a shared queue balances them), and the fewest tiles a chunk's
#: products may have in that mode (thinner products run BLAS far below its peak).
_CHUNKS_PER_WORKER = 4
_MIN_TILES_PER_CHUNK = 64


class Winograd(Algorithm):
    """F(m, 3) for ``m`` in ``_winograd_transforms.TILE_SIZES``; registered as ``winograd{m}``."""

    native_ops = ("forward",)

    def __init__(self, m: int):
        self.m = m
        self.name = f"winograd{m}"

    # ---- planning ---------------------------------------------------------------------
    def supports(self, geom, dtype, op):
        if op != "forward":
            return f"{self.name}: only forward (gradients run via forward)"
        if any(k != 3 for k in geom.kernel):
            return f"{self.name}: kernel {geom.kernel} is not 3 in every dimension"
        if any(s != 1 for s in geom.stride):
            return f"{self.name}: stride {geom.stride} is not 1"
        if any(d != 1 for d in geom.dilation):
            return f"{self.name}: dilation {geom.dilation} is not 1"
        error = self.error_bound(geom, dtype)
        if error > _config.max_relative_error:
            return (f"{self.name}: est. {np.dtype(dtype)} relative error {error:.1e} > "
                    f"max_relative_error {_config.max_relative_error:.1e}")
        need = self._fixed_bytes(geom, dtype) + self._unit_bytes(geom, dtype)
        if need > _config.workspace_bytes:
            return (f"{self.name}: needs {need / 2**20:.0f} MiB of scratch (transformed weights) > "
                    f"workspace {_config.workspace_bytes / 2**20:.0f} MiB")
        return None

    def error_bound(self, geom: ConvGeometry, dtype) -> float:
        """Estimated relative L2 error of one call in ``dtype`` (see the module docstring)."""
        unit = np.finfo(dtype).eps / 2
        return _ERROR_GROWTH[self.m][geom.nd] * unit * math.sqrt(geom.in_per_group)

    def cost(self, geom, dtype, op):
        from .._cost_model import (WINOGRAD_SECONDS_PER_MAC, WINOGRAD_SECONDS_PER_TRANSFORM_BYTE)
        t = wt.tiles(geom, self.m)
        points = (self.m + 2) ** geom.nd
        n_tiles = geom.batch * math.prod(t)
        macs = points * geom.out_per_group * geom.in_channels * n_tiles
        itemsize = np.dtype(dtype).itemsize
        moved = points * (n_tiles * (geom.in_channels + geom.out_channels)
                          + geom.out_channels * geom.in_per_group) * itemsize
        return macs * WINOGRAD_SECONDS_PER_MAC + moved * WINOGRAD_SECONDS_PER_TRANSFORM_BYTE

    def _fixed_bytes(self, geom: ConvGeometry, dtype) -> int:
        return (self.m + 2) ** geom.nd * geom.out_channels * geom.in_per_group * np.dtype(dtype).itemsize

    def _unit_bytes(self, geom: ConvGeometry, dtype) -> int:
        """Transform-domain scratch of one tile row (inputs and products)."""
        points = (self.m + 2) ** geom.nd
        return points * (geom.in_channels + geom.out_channels) * (wt.tiles(geom, self.m)[-1] + 1) * np.dtype(dtype).itemsize

    # ---- running ----------------------------------------------------------------------
    def forward(self, x, w, geom):
        from ._winograd_kernels import INPUT_TRANSFORM, OUTPUT_TRANSFORM
        m, nd, dtype = self.m, geom.nd, x.dtype
        points = (m + 2) ** nd
        src_rows, dst_rows = wt.row_tables(geom, m)
        t_last = wt.tiles(geom, m)[-1]
        tw = t_last + 1  # tiles per tile row in the transform domain, with a spare one
        u = wt.weight_transform(w, geom, m)  # (points, G, Og, Cg)
        x4 = x.reshape(geom.batch, geom.in_channels, -1, geom.in_size[-1])
        y = np.empty((geom.batch, geom.out_channels, math.prod(geom.out_size[:-1]), geom.out_size[-1]), dtype=dtype)
        lo, hi = geom.padding[-1]
        col_stop = geom.in_size[-1] + min(hi, 0)
        cg, og, channels = geom.in_per_group, geom.out_per_group, geom.in_channels
        bt, _, at = (a.astype(dtype) for a in wt.matrices(m))

        def buffers(chunk, scratch):
            tiles = (chunk[1] - chunk[0]) * tw
            return (scratch.get("v", (points, channels, tiles)), scratch.get("prod", (points, geom.out_channels, tiles)))

        def transform(chunk, c_range, v):
            INPUT_TRANSFORM[m](x4, src_rows, lo, col_stop, nd, t_last, *chunk, *c_range, bt, v)

        def multiply(chunk, o_range, v, prod):
            tiles = v.shape[-1]
            o0, o1 = o_range
            np.matmul(u[:, :, o0:o1], v.reshape(points, geom.groups, cg, tiles),
                      out=prod.reshape(points, geom.groups, og, tiles)[:, :, o0:o1])
            OUTPUT_TRANSFORM[m](prod, dst_rows, nd, t_last, *chunk, o0, o1, og, at, y)

        def whole(chunk, scratch):
            v, prod = buffers(chunk, scratch)
            transform(chunk, (0, channels), v)
            multiply(chunk, (0, og), v, prod)

        n = par.workers(self._macs(geom))
        chunks, split_chunks = self._chunks(geom, dtype, src_rows.shape[0], n)
        if not split_chunks:  # each worker takes whole chunks
            par.for_each(chunks, whole, n, dtype)
        else:  # few chunks, many channels: workers share each chunk's channels
            scratch = Scratch(dtype)
            for chunk in chunks:
                v, prod = buffers(chunk, scratch)
                par.for_each(par.split(channels, n), lambda c_range, _: transform(chunk, c_range, v), n, dtype)
                par.for_each(par.split(og, n), lambda o_range, _: multiply(chunk, o_range, v, prod), n, dtype)
        return y.reshape(geom.output_shape)

    def _macs(self, geom: ConvGeometry) -> int:
        """Multiply-adds of the transform-domain products."""
        return (self.m + 2) ** geom.nd * geom.out_per_group * geom.in_channels * geom.batch * math.prod(
            wt.tiles(geom, self.m))

    def _chunks(self, geom: ConvGeometry, dtype, rows: int, workers: int) -> tuple[list[tuple[int, int]], bool]:
        """Ranges of tile rows (units) to run one after another or side by side, and whether the
        workers split each chunk's channels rather than take whole chunks.

        A chunk's transform-domain scratch stays cache-sized, unless the transformed weights are
        larger (each chunk reads them all: fewer, bigger chunks), and within the workspace budget.
        Whole chunks go to workers when there are enough of them with enough tiles each.
        """
        units = geom.batch * rows
        unit_bytes = self._unit_bytes(geom, dtype)
        free = _config.workspace_bytes - self._fixed_bytes(geom, dtype)
        target = max(_CHUNK_BYTES, 2 * self._fixed_bytes(geom, dtype))
        tiles = units * wt.tiles(geom, self.m)[-1]
        if workers > 1 and units >= _CHUNKS_PER_WORKER * workers and tiles >= _MIN_TILES_PER_CHUNK * _CHUNKS_PER_WORKER * workers:
            step = max(1, min(free // workers, target) // unit_bytes)
            return par.split(units, max(-(-units // step), _CHUNKS_PER_WORKER * workers)), False
        step = max(1, min(free, target) // unit_bytes)
        return par.split(units, -(-units // step)), workers > 1


#: Relative-error growth factors (bound / (unit roundoff * sqrt(in_per_group))) per tile
#: size and dimension, from measurements (see the module docstring); placeholder until fitted.
_ERROR_GROWTH = {2: {1: 4.0, 2: 8.0, 3: 16.0}, 4: {1: 16.0, 2: 64.0, 3: 256.0}}
