"""Winograd F(m, 3) on channel-blocked layouts (1-D to 3-D), its products on ``blocked``'s micro-kernel.

``winograd`` keeps its tiles in rows of one channel (``(alpha^d, C, tiles)``), vectorises its
transforms along tiles and multiplies with BLAS; short chunks then leave its transforms running
short loops, and long ones spill its transform-domain scratch out of L2 (resnet50.3x3c64's 4 MiB
chunks: OpenBLAS at ~77 GFLOP/s a core inside the call, against ~95 on the same products in
cache; unet3d.3x3x3c32 spent three quarters of its time in transforms).
Here every value is a vector of 16 channels, as in ``blocked``: each chunk packs the input it
reads into 16-channel blocks (``blocked``'s packing), each transform moves whole vectors whatever
the tile count, and the products are ``blocked``'s micro-kernel with the tiles as its pixels and
one input block per "tap" (14 tiles x 32 output channels of sums in registers; ~110 GFLOP/s a
core against BLAS's 73-95 on these products). A worker runs a chunk of a few tile rows (of one
tile plane in 3-D; a stretch of the signal in 1-D) from packing to input transform to products
to output transform with its scratch in or near L2, then moves the outputs to their channel rows
by vector transposes, as ``blocked`` does. Against ``winograd``, 2 threads: resnet50.3x3c64 0.78x
the time, its input gradient 0.85x, resnet50.3x3c256 (F(2,3)) 0.83x, c3d.3x3x3c64 0.72x,
unet3d.3x3x3c32 0.70x, tts.k3c256 (1-D) 0.94x.

Registered as ``winograd2_blocked`` and ``winograd4_blocked``. The transforms are ``winograd``'s,
so are the accuracy and its bound (``Winograd.error_bound``); the input gradient is the forward
pass on the adjoint geometry with the filters flipped and their channels swapped inside the
filter transform. It runs layers with a kernel of 3 in every dimension, stride and dilation 1,
no groups, 16 or more input channels and real data; ``winograd`` the rest (complex, grouped, few
channels) and the weight gradient.
"""

from __future__ import annotations

import functools

import numpy as np

from .._geometry import ConvGeometry
from . import _gemm_parallel as par
from . import _winograd_transforms as wt
from ._base import Algorithm
from ._layout import Scratch, as5d
from .blocked import micro_kernel_declines
from .winograd import Winograd, _as_computed

#: Input channels per block (``blocked``'s micro-kernel).
_B = 16
#: Transform-domain bytes of a chunk (transformed inputs and products) at most, in whole tile rows:
#: with the chunk's packed input and outputs they stay in L2 or near it (resnet50.3x3c64: level
#: from 1 to 2 MiB; unet3d.3x3x3c32, whose tile rows take 0.86 MiB: 0.92x the time of one row).
#: Larger chunks to read the transformed filters fewer times did not pay (c3d.3x3x3c64's 7 MiB:
#: chunks of twice that took 1.17x as long).
_CHUNK_BYTES = 2 * 2**20


class WinogradBlocked(Algorithm):
    """F(m, 3) on channel-blocked layouts (module docstring); registered as ``winograd{m}_blocked``."""

    native_ops = ("forward", "input_grad")

    def __init__(self, m: int):
        self.m = m
        self.name = f"winograd{m}_blocked"
        self._winograd = Winograd(m)

    def supports(self, geom, dtype, op):
        reason = self._winograd.supports(geom, dtype, op)
        if reason:
            return f"{self.name}: {reason.split(': ', 1)[1]}"
        computed, op = _as_computed(geom, op)
        if op == "weight_grad":
            return f"{self.name}: no weight gradient; winograd{self.m} runs it"
        return micro_kernel_declines(self.name, computed, dtype, f"winograd{self.m} runs grouped layers")

    def cost(self, geom, dtype, op):
        from .. import _cost_model as cm
        geom, _ = _as_computed(geom, op)
        plan = _plan(geom, np.dtype(dtype).itemsize, self.m, 1)
        moved = plan.points * plan.tiles * (plan.blocks_in * _B + plan.blocks_out * plan.obw)
        return (plan.macs * cm.WINOGRAD_BLOCKED_SECONDS_PER_MAC
                + moved * cm.WINOGRAD_BLOCKED_SECONDS_PER_ELEMENT
                + plan.chunk_count * plan.filter_elements * cm.WINOGRAD_BLOCKED_SECONDS_PER_FILTER_READ
                + plan.filter_elements * cm.WINOGRAD_BLOCKED_SECONDS_PER_FILTER_ELEMENT
                + plan.packed_elements * cm.WINOGRAD_BLOCKED_SECONDS_PER_ELEMENT)

    def forward(self, x, w, geom):
        return self._convolve(x, w, geom, swapped=False)

    def input_grad(self, dy, w, geom):
        return self._convolve(dy, w, geom.for_input_grad(), swapped=True)

    def _convolve(self, x: np.ndarray, w: np.ndarray, geom: ConvGeometry, swapped: bool) -> np.ndarray:
        """x convolved on ``geom`` with the filters w, or (``swapped``) with w's filters flipped and
        their channels swapped (an input gradient's, on the adjoint geometry)."""
        from ._winograd_blocked_kernels import CHUNK, filter_transform
        n = par.workers(self._winograd._macs(geom))
        plan = _plan(geom, x.itemsize, self.m, n)
        y = np.empty(geom.output_shape, dtype=x.dtype)
        x5 = np.ascontiguousarray(as5d(x, tuple(plan.x_shape[2:]))).reshape(-1)
        g = wt.matrices(self.m)[1]
        g = np.ascontiguousarray(g[:, ::-1] if swapped else g, dtype=x.dtype)
        w4 = np.ascontiguousarray(w)
        with Scratch(x.dtype) as held:
            u = held.get("u", (plan.points, plan.blocks_out, plan.blocks_in, _B, plan.obw))
            u[:, :, -1, geom.in_channels % _B or _B:, :] = 0  # channels beyond C in the last block
            par.run_steps([lambda r=r: filter_transform(w4, swapped, g, u, *r)
                           for r in par.split(plan.blocks_in, 2 * n)], n, x.dtype, blas=False)
            kernel = CHUNK[self.m, geom.nd]

            def run(chunk: tuple[int, ...], scratch: Scratch) -> None:
                buffers = plan.buffers(chunk[3] - chunk[2], chunk[5] - chunk[4])
                kernel(x5, plan.x_shape, plan.lo, plan.sizes, *chunk, u, y.reshape(-1),
                       *(scratch.get(role, (size,)) for role, size in buffers),
                       np.empty(plan.blocks_in, dtype=np.int64))

            par.for_each(plan.chunks, run, n, x.dtype, blas=False)
        return y


@functools.lru_cache(maxsize=256)
def _plan(geom: ConvGeometry, itemsize: int, m: int, workers: int) -> _Plan:
    """The plan of a geometry, built once for its cost and calls."""
    return _Plan(geom, itemsize, m, workers)


class _Plan:
    """Sizes, the kernels' shape arrays and the chunks of one geometry (never modified). A chunk is
    a box of tiles of one sample, ``(n, plane, row0, row1, column0, column1)``: whole rows of
    tiles (of one tile plane in 3-D), or in 1-D a range of the signal's tiles."""

    def __init__(self, geom: ConvGeometry, itemsize: int, m: int, workers: int):
        self.m, self.nd = m, geom.nd
        self.points = (m + 2) ** geom.nd
        self.obw = 2 * 64 // itemsize
        self.blocks_in = -(-geom.in_channels // _B)
        self.blocks_out = -(-geom.out_channels // self.obw)
        out_size = (1,) * (3 - geom.nd) + tuple(geom.out_size)
        in_size = (1,) * (3 - geom.nd) + tuple(geom.in_size)
        planes, tiles_y, tiles_x = (-(-o // m) if i >= 3 - geom.nd else 1 for i, o in enumerate(out_size))
        self.tiles = geom.batch * planes * tiles_y * tiles_x
        self.packed_elements = (self.tiles // tiles_x * self.blocks_in * (m + 2) ** (geom.nd - 1)
                                * (tiles_x * m + 2) * _B)
        self.filter_elements = self.points * self.blocks_out * self.blocks_in * _B * self.obw
        self.macs = self.points * self.blocks_out * self.obw * self.blocks_in * _B * self.tiles
        self.x_shape = np.array((geom.batch, geom.in_channels, *in_size), dtype=np.int64)
        self.lo = np.array((0,) * (3 - geom.nd) + tuple(lo for lo, _ in geom.padding), dtype=np.int64)
        self.sizes = np.array((self.blocks_in, geom.out_channels, *out_size), dtype=np.int64)
        # chunks of up to _CHUNK_BYTES of transform-domain scratch (whole rows of tiles where
        # the signal has rows), and enough for the workers' queue
        per_tile = self.points * (self.blocks_in * _B + self.blocks_out * self.obw) * itemsize
        queue = -(-self.tiles // (par.SHARES_PER_WORKER * workers)) if workers > 1 else self.tiles
        if geom.nd == 1:
            cols = max(1, min(_CHUNK_BYTES // per_tile, queue))
            self.chunks = [(n, 0, 0, 1, c, min(c + cols, tiles_x))
                           for n in range(geom.batch) for c in range(0, tiles_x, cols)]
        else:
            rows = max(1, min(_CHUNK_BYTES // (per_tile * tiles_x), tiles_y, -(-queue // tiles_x)))
            self.chunks = [(n, z, r, min(r + rows, tiles_y), 0, tiles_x)
                           for n in range(geom.batch) for z in range(planes) for r in range(0, tiles_y, rows)]
        self.chunk_count = len(self.chunks)

    def buffers(self, rows: int, columns: int) -> list[tuple[str, int]]:
        """Scratch roles and sizes of a chunk of ``rows`` x ``columns`` tiles: its packed input, V,
        products, outputs and the transforms' rows."""
        m, alpha, tiles = self.m, self.m + 2, rows * columns
        lines, row = alpha ** (self.nd - 1), (columns * m + 2) * _B
        packed_rows = alpha ** (self.nd - 2) * (rows * m + 2) if self.nd > 1 else 1
        return [("x_rows", self.blocks_in * packed_rows * row),
                ("v", self.points * self.blocks_in * tiles * _B),
                ("prod", self.points * self.blocks_out * tiles * self.obw),
                ("acc", m ** max(0, self.nd - 2) * (rows * m if self.nd > 1 else 1) * columns * m * self.obw),
                ("tmp", max(2 * lines * row, lines * m * self.obw + alpha * m * m * self.obw))]
