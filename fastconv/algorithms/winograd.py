"""Winograd F(m, 3): 3-tap stride-1 undilated convolution with fewer multiplications, 1-D to 3-D.

Each ``alpha = m + 2`` wide input tile (``alpha^d`` values in d dimensions) and each filter go
to the transform domain, where the convolution becomes ``alpha^d`` independent matrix products
``(Og x Cg) @ (Cg x tiles)`` (one BLAS ``matmul`` over the stack), and the products come back
as ``m^d`` outputs per tile. Multiply-adds per output and input channel fall from ``3^d`` to
``(alpha/m)^d``: 2.25x (F(2,3)) and 4x (F(4,3)) fewer in 2-D, 3.4x and 8x in 3-D. Registered
as two algorithms, ``winograd2`` and ``winograd4``, so that ``explain()`` shows each one's cost
and, when it declines, its reason (accuracy, workspace); the planner picks between them.
``winograd_blocked`` runs the same transforms on channel-blocked layouts, faster on layers of 16
or more channels; this module keeps the weight gradient and grouped, complex and few-channel layers.

The weight gradient is the same algorithm's adjoint in w (exact, like the forward): the output
gradient's tiles enter the transform domain through ``A`` (the output transform's transpose),
meet the transformed input tiles in ``(Og x tiles) @ (tiles x Cg)`` products summed over the
tiles, and leave through ``G^T`` (the filter transform's transpose). The input gradient is the
forward algorithm on the adjoint geometry, with the filters' flip and channel swap done inside
the filter transform (reversed columns of G, each point's matrix used transposed).

Work is cut into chunks of tile rows (see ``_winograd_kernels``); worker threads take whole
chunks (input transform, products, output transform in one core's cache), or, when there are
few tiles and many channels (7x7 and 14x14 layers), share each chunk's channels, then its
transform points' products, then its output channels, in ranges a queue balances
(``_gemm_parallel.shares``). Scratch: the transformed filters (``alpha^d * O * Cg`` values)
plus, per worker, one chunk's transformed inputs and products, within the workspace budget.

Accuracy is the price: the transforms amplify rounding errors. Float32 relative L2 errors against
float64 on the suite's shapes (random normal data; torch is oneDNN's direct convolution):

======================  =========  =========  =========
suite case              torch      F(2,3)     F(4,3)
======================  =========  =========  =========
resnet50.3x3c64         2.2e-07    2.6e-07    1.7e-06
resnet50.3x3c256        2.2e-07    5.0e-07    3.0e-06
resnet50.3x3c512        2.3e-07    4.9e-07    2.5e-06
tts.k3c256 (1-D)        1.5e-07    3.8e-07    9.6e-07
c3d.3x3x3c64            3.7e-07    3.6e-07    5.8e-06
unet3d.3x3x3c32         3.7e-07    2.8e-07    4.4e-06
======================  =========  =========  =========

F(2,3) is about as accurate as direct convolution (1-2.5x its error), F(4,3) 8-14x worse in 2-D,
12-16x in 3-D (6x in 1-D). Over 1-D/2-D/3-D layers with 4 to 512 channels and normal, ReLU-like
and uniform data, the error grows as ``u * (a + b*sqrt(Cg))`` (u the unit roundoff);
:meth:`Winograd.error_bound` is 1.5x the upper envelope of those measurements (``ERROR_GROWTH``),
and ``supports`` declines a call whose bound exceeds ``fastconv._config.max_relative_error``
(default 1e-5: F(4,3) then runs 2-D layers up to ~1000 input channels per group and 3-D ones up
to ~120; ``set_accuracy(1e-6)`` leaves F(2,3), up to ~400 in 2-D). ``tests/test_winograd.py``
checks that measured errors stay below the bound.

Weight gradients sum over the batch's output positions instead: float32 errors measured 1.4-19 u
for F(2,3) and 2.6-208 u for F(4,3) (u = 6e-8) on 1-D/2-D/3-D layers of 4 to 128 channels and
128 to 100352 summed positions (train.3x3c64.wgrad: 6e-7 and 2-4e-6; train.3x3c256.wgrad: 4e-7
and 1.5e-6); ``WEIGHT_GRAD_ERROR_GROWTH`` bounds them by ``u * (a + b*sqrt(positions))``, which
at the default 1e-5 keeps F(4,3) off large 3-D layers.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import numpy as np

from .. import _config
from .._geometry import ConvGeometry
from . import _gemm_parallel as par
from . import _winograd_transforms as wt
from ._base import Algorithm
from ._layout import Scratch

#: Transform-domain bytes per chunk (inputs + products) when the workspace allows more: the
#: products of chunks this small read their operands from cache (4 MiB: c64 1.1x, unet3d 2x
#: faster products than 64 MiB chunks on the reference machine) ...
_CHUNK_BYTES = 4 * 2**20
#: ... unless that leaves fewer tiles than this: the transforms loop over a chunk's tiles, and
#: short loops run outside their vectorised part (c3d F(2,3): 1.3x faster at 256 than at 58).
#: Chunks shared by the workers (three hand-offs each) stay this long.
_MIN_CHUNK_TILES = 256
#: Whole chunks per worker (a shared queue balances them), and the fewest tiles a chunk's
#: products may have in that mode (thinner products run BLAS far below its peak); there, chunks
#: stay near ``_CHUNK_BYTES`` down to this many tiles (unet3d.3x3x3c32's 216-point tiles: 4 MiB
#: chunks of 68 tiles 0.83x the time of 14 MiB ones of 238, 8 interleaved rounds) ...
_CHUNKS_PER_WORKER = 4
_WHOLE_CHUNK_MIN_TILES = 64
#: ... and hold this many times the transformed filters, which each re-reads (c3d's 7 MiB).
_WHOLE_CHUNK_FILTER_REUSE = 3


class Winograd(Algorithm):
    """F(m, 3) for ``m`` in ``_winograd_transforms.TILE_SIZES``; registered as ``winograd{m}``."""

    native_ops = ("forward", "input_grad", "weight_grad")

    def __init__(self, m: int):
        self.m = m
        self.name = f"winograd{m}"

    # ---- planning ---------------------------------------------------------------------
    def supports(self, geom, dtype, op):
        if any(k != 3 for k in geom.kernel):
            return f"{self.name}: kernel {geom.kernel} is not 3 in every dimension"
        if any(s != 1 for s in geom.stride):
            return f"{self.name}: stride {geom.stride} is not 1"
        if any(d != 1 for d in geom.dilation):
            return f"{self.name}: dilation {geom.dilation} is not 1"
        if geom.nd > 3:
            return f"{self.name}: {geom.nd} spatial dimensions; error bounds are measured for 1 to 3"
        geom, op = _as_computed(geom, op)
        error = self.error_bound(geom, dtype, op)
        if error > _config.max_relative_error:
            return (f"{self.name}: est. {np.dtype(dtype)} relative error {error:.1e} > "
                    f"max_relative_error {_config.max_relative_error:.1e}")
        need = self._fixed_bytes(geom, dtype, op) + self._unit_bytes(geom, dtype)
        if need > _config.workspace_bytes:
            return (f"{self.name}: needs {need / 2**20:.0f} MiB of scratch (transformed weights) > "
                    f"workspace {_config.workspace_bytes / 2**20:.0f} MiB")
        return None

    def error_bound(self, geom: ConvGeometry, dtype, op: str = "forward") -> float:
        """Estimated relative L2 error of one call computed in ``dtype``: ``u * (A + B*sqrt(terms))``
        with u the unit roundoff, (A, B) per op, tile size and dimension, and terms the sum's
        length: Cg for the forward, the output positions of the batch for the weight gradient
        (module docstring)."""
        if op == "weight_grad":
            a, b = WEIGHT_GRAD_ERROR_GROWTH[self.m][geom.nd]
            terms = geom.batch * math.prod(geom.out_size)
        else:
            a, b = ERROR_GROWTH[self.m][geom.nd]
            terms = geom.in_per_group
        return np.finfo(dtype).eps / 2 * (a + b * math.sqrt(terms))

    def cost(self, geom, dtype, op):
        from .._cost_model import WINOGRAD_SECONDS_PER_ELEMENT_TERM, gemm_seconds
        geom, op = _as_computed(geom, op)
        points, itemsize = (self.m + 2) ** geom.nd, np.dtype(dtype).itemsize
        tiles = self._tiles(geom)
        if op == "weight_grad":  # (Og x chunk) @ (chunk x Cg) summed over chunks: priced as one product of
            # the longest chunk the workspace allows (the constants were fitted so; see weight_grad for the chunks)
            chunk = min(tiles, (_config.workspace_bytes - self._fixed_bytes(geom, dtype, op)) // self._tile_bytes(geom, dtype))
            shape = (geom.out_per_group, chunk, geom.in_per_group)
        else:  # (Og x Cg) @ (Cg x chunk)
            chunk = min(tiles, max(_MIN_CHUNK_TILES, _CHUNK_BYTES // self._tile_bytes(geom, dtype)))
            shape = (geom.out_per_group, geom.in_per_group, chunk)
        # transformed inputs and products (each written and read once) and filters
        moved = (points * tiles * (geom.in_channels + geom.out_channels)
                 + self._fixed_bytes(geom, dtype) // itemsize)
        return (gemm_seconds(self._macs(geom), *shape, 0, itemsize)
                + moved * itemsize / 4 * (self.m + 2) * WINOGRAD_SECONDS_PER_ELEMENT_TERM)

    def _fixed_bytes(self, geom: ConvGeometry, dtype, op: str = "forward") -> int:
        """The transformed filters; for the weight gradient, their gradient and the workers'
        partial sums (at most as large again)."""
        filters = (self.m + 2) ** geom.nd * geom.out_channels * geom.in_per_group * np.dtype(dtype).itemsize
        return 2 * filters if op == "weight_grad" else filters

    def _tile_bytes(self, geom: ConvGeometry, dtype) -> int:
        """Transform-domain scratch of one tile (its inputs and products)."""
        return (self.m + 2) ** geom.nd * (geom.in_channels + geom.out_channels) * np.dtype(dtype).itemsize

    def _unit_bytes(self, geom: ConvGeometry, dtype) -> int:
        """Transform-domain scratch of one tile row, its spare tile included."""
        return self._tile_bytes(geom, dtype) * (wt.tiles(geom, self.m)[-1] + 1)

    # ---- running ----------------------------------------------------------------------
    def forward(self, x, w, geom):
        return self._convolve(x, w, geom, geom, flipped=False)

    def input_grad(self, dy, w, geom):
        """The forward algorithm on the adjoint geometry (``geom.for_input_grad()``, stride 1 as
        well), with the flipped, channel-swapped filters made inside the filter transform: G's
        columns reversed (every axis flipped at once), each transform point's (Og x Cg) matrix
        used transposed. No flipped copy of w, as the planner's "via forward" route makes."""
        return self._convolve(dy, w, geom.for_input_grad(), geom, flipped=True)

    def _convolve(self, x, w, geom, w_geom, flipped):
        """x convolved on ``geom`` with the filters ``w`` of ``w_geom`` (``geom`` itself, or for an
        input gradient the layer whose filters are flipped and channel-swapped in the transform)."""
        from ._winograd_kernels import OUTPUT_TRANSFORM
        m, points, dtype = self.m, (self.m + 2) ** geom.nd, x.dtype
        _, dst_rows = wt.row_tables(geom, m)
        t_last = wt.tiles(geom, m)[-1]
        y = np.empty((geom.batch, geom.out_channels, math.prod(geom.out_size[:-1]), geom.out_size[-1]), dtype=dtype)
        og, cg, channels = geom.out_per_group, geom.in_per_group, geom.in_channels
        rows, buffers, transform = self._input_tiles(x, geom)

        def multiply(p_range, v, prod):
            p0, p1 = p_range
            np.matmul(u[p0:p1], v.reshape(points, geom.groups, cg, -1)[p0:p1],
                      out=prod.reshape(points, geom.groups, og, -1)[p0:p1])

        def transform_back(chunk, o_range, prod):
            OUTPUT_TRANSFORM[m](prod, dst_rows, geom.nd, t_last, *chunk, *o_range, og, y)

        def whole(chunk, scratch):
            v, prod = buffers(chunk, scratch)
            transform(chunk, (0, channels), v)
            multiply((0, points), v, prod)
            transform_back(chunk, (0, og), prod)

        n = par.workers(self._macs(geom))
        chunks, split_chunks = self._chunks(geom, dtype, rows, n)
        with Scratch(dtype) as held:
            u, filter_steps = _transformed_filters(w, w_geom, m, flipped, held, n)
            if not split_chunks:  # each worker takes whole chunks
                par.run_steps(filter_steps, n, dtype)
                par.for_each(chunks, whole, n, dtype)
            else:  # few chunks, many channels: workers share each chunk's channels, then its transform points
                for chunk in chunks:
                    v, prod = buffers(chunk, held)
                    # the filters transform beside the first chunk's inputs: one hand-off fewer
                    steps = [functools.partial(transform, chunk, c_range, v) for c_range in par.shares(channels, n)]
                    par.run_steps(filter_steps + steps, n, dtype)
                    filter_steps = []
                    par.for_each(par.shares(points, n), lambda p_range, _: multiply(p_range, v, prod), n, dtype)
                    par.for_each(par.shares(og, n), lambda o_range, _: transform_back(chunk, o_range, prod), n, dtype)
        return y.reshape(geom.output_shape)

    def weight_grad(self, x, dy, geom):
        """The forward algorithm's adjoint in w: the output gradient's tiles go to the transform
        domain by the output transform's transpose (A), meet the transformed input tiles in one
        (Og x tiles) @ (tiles x Cg) product per transform point and group, summed over the tiles,
        and the sums return through the filter transform's transpose (G^T).

        As in the forward pass, workers take whole chunks of tiles where there are enough
        (``_chunks``), transform them and add their products to sums of their own, added up at
        the end, the chunk in cache from transforms to products (train.3x3c64.wgrad: 0.85x the
        time of one 15 MiB chunk shared by the workers, whose transforms waited on memory).
        Otherwise the chunks are as long as the workspace allows and the workers split each
        chunk's transforms by channels and its products by transform points (each point's sum
        has one writer)."""
        from ._winograd_kernels import OUTPUT_ADJOINT, products_nt
        m, points, dtype = self.m, (self.m + 2) ** geom.nd, x.dtype
        _, dst_rows = wt.row_tables(geom, m)
        t_last = wt.tiles(geom, m)[-1]
        dy4 = np.ascontiguousarray(dy).reshape(geom.batch, geom.out_channels, -1, geom.out_size[-1])
        og, cg = geom.out_per_group, geom.in_per_group
        rows, buffers, transform = self._input_tiles(x, geom)
        sums_shape = (points, geom.groups, og, cg)

        def transform_dy(chunk, o_range, dprod):
            OUTPUT_ADJOINT[m](dy4, dst_rows, geom.nd, t_last, *chunk, *o_range, dprod)

        def multiply(p_range, v, dprod, scratch, sums, first):
            """sums[p] (+)= dprod[p] @ v[p]^T for the points of p_range."""
            p0, p1 = p_range
            tiles = v.shape[-1]
            if dtype.kind != "c":  # compiled (``products_nt``); complex products through BLAS
                g = geom.groups
                products_nt(dprod.reshape(points * g, og, tiles), v.reshape(points * g, cg, tiles),
                            sums.reshape(points * g, og, cg), p0 * g, p1 * g, 0 if first else 1)
                return
            products = np.matmul(dprod.reshape(points, geom.groups, og, tiles)[p0:p1],
                                 v.reshape(points, geom.groups, cg, tiles)[p0:p1].swapaxes(-1, -2),
                                 out=sums[p0:p1] if first else scratch.get("products", sums[p0:p1].shape))
            if not first:
                sums[p0:p1] += products

        def whole(chunk, scratch):
            v, dprod = buffers(chunk, scratch)
            transform(chunk, (0, geom.in_channels), v)
            transform_dy(chunk, (0, geom.out_channels), dprod)
            multiply((0, points), v, dprod, scratch, scratch.accumulator("du", sums_shape), False)

        n = par.workers(self._macs(geom))
        units = geom.batch * rows
        # deeper chunks than the forward pass's: each ends in a worker's own sums, not in a pass back
        # (train.3x3c64.wgrad: 2 per worker 0.9x the time of 4)
        chunks, shared = self._chunks(geom, dtype, rows, n, per_worker=2)
        filters = geom.out_channels * cg
        dw = np.empty((filters, 3 ** geom.nd), dtype=dtype)
        with Scratch(dtype) as held:
            if n > 1 and not shared:
                workers = par.for_each(chunks, whole, n, dtype)
                du = workers[0].accumulator("du", sums_shape)
                for other in workers[1:]:
                    du += other.accumulator("du", sums_shape)
            else:
                du = held.get("du", sums_shape)
                step = max(1, (_config.workspace_bytes - self._fixed_bytes(geom, dtype, "weight_grad"))
                           // self._unit_bytes(geom, dtype))
                for i, chunk in enumerate(par.split(units, -(-units // step))):
                    v, dprod = buffers(chunk, held)
                    steps = ([functools.partial(transform, chunk, c_range, v)
                              for c_range in par.shares(geom.in_channels, n)]
                             + [functools.partial(transform_dy, chunk, o_range, dprod)
                                for o_range in par.shares(geom.out_channels, n)])
                    par.run_steps(steps, n, dtype)
                    par.for_each(par.shares(points, n),
                                 lambda p_range, scratch: multiply(p_range, v, dprod, scratch, du, i == 0), n, dtype)
            du_flat = du.reshape(points, filters)
            par.for_each(par.shares(filters, n), lambda f_range, _: wt.weight_transform_adjoint(du_flat, geom, m, dw, f_range),
                         n, dtype)
        return dw.reshape(geom.weight_shape)

    def _input_tiles(self, x, geom):
        """``(rows, buffers, transform)``: tile rows per sample; ``buffers(chunk, scratch)``, the
        chunk's transformed inputs ``v`` (alpha^d, C, tiles) and products (alpha^d, O, tiles);
        ``transform(chunk, c_range, v)``, x's tiles of the chunk's rows (units) to ``v``."""
        from ._winograd_kernels import INPUT_TRANSFORM
        m, points = self.m, (self.m + 2) ** geom.nd
        src_rows, _ = wt.row_tables(geom, m)
        t_last = wt.tiles(geom, m)[-1]
        x4 = np.ascontiguousarray(x).reshape(geom.batch, geom.in_channels, -1, geom.in_size[-1])  # flat offsets
        lo, hi = geom.padding[-1]
        col_stop = geom.in_size[-1] + min(hi, 0)

        def buffers(chunk, scratch):
            tiles = (chunk[1] - chunk[0]) * (t_last + 1)  # with each tile row's spare tile
            return (scratch.get("v", (points, geom.in_channels, tiles)),
                    scratch.get("prod", (points, geom.out_channels, tiles)))

        def transform(chunk, c_range, v):
            INPUT_TRANSFORM[m](x4, src_rows, lo, col_stop, geom.nd, t_last, *chunk, *c_range, v)

        return src_rows.shape[0], buffers, transform

    def _tiles(self, geom: ConvGeometry) -> int:
        """Tiles of the transform domain, the spare one per tile row included."""
        t = wt.tiles(geom, self.m)
        return geom.batch * math.prod(t[:-1]) * (t[-1] + 1)

    def _macs(self, geom: ConvGeometry) -> int:
        """Multiply-adds of the transform-domain products."""
        return (self.m + 2) ** geom.nd * geom.out_per_group * geom.in_channels * self._tiles(geom)

    def _chunks(self, geom: ConvGeometry, dtype, rows: int, workers: int,
                per_worker: int = _CHUNKS_PER_WORKER) -> tuple[list[tuple[int, int]], bool]:
        """Ranges of tile rows (units) to run one after another or side by side, and whether the
        workers share each chunk's channels rather than take whole chunks.

        Chunks hold ``_CHUNK_BYTES`` of transform-domain scratch, or more to reach a number of
        tiles or a multiple of the transformed filters (each chunk reads them all), within the
        workspace budget. Whole chunks go to workers when each gets ``per_worker`` or more with
        enough tiles, as many for each.
        """
        units, tw = geom.batch * rows, wt.tiles(geom, self.m)[-1] + 1
        tile_bytes, fixed = self._tile_bytes(geom, dtype), self._fixed_bytes(geom, dtype)
        free = _config.workspace_bytes - fixed
        queued = per_worker * workers
        whole = workers > 1 and units >= queued and units * tw >= queued * _WHOLE_CHUNK_MIN_TILES
        if whole:
            target = max(_CHUNK_BYTES, _WHOLE_CHUNK_MIN_TILES * tile_bytes, _WHOLE_CHUNK_FILTER_REUSE * fixed)
        else:
            target = max(_CHUNK_BYTES, _MIN_CHUNK_TILES * tile_bytes, 2 * fixed)
        step = max(1, min(free // workers if whole else free, target) // (tile_bytes * tw))
        parts = -(-units // step)
        if not whole:
            return par.split(units, parts), workers > 1
        # a multiple of the workers: an odd chunk out runs alone at the end (c3d: 11 chunks 1.2x
        # the time of 8 or 14)
        return par.split(units, -(-max(parts, queued) // workers) * workers), False


def _transformed_filters(w: np.ndarray, w_geom: ConvGeometry, m: int, flipped: bool, scratch: Scratch,
                         n: int) -> tuple[np.ndarray, list[Callable[[], None]]]:
    """U (alpha^d, G, Og, Cg) of the computed geometry: the filters ``w`` of ``w_geom`` in the
    transform domain, one (Og x Cg) matrix per transform point and group, as the batched matmul
    wants them; for an input gradient (``flipped``), of the flipped filters, w_geom's channels
    swapped. U is filled by the steps returned with it, one range of the filters for each of
    the ``n`` workers, for the caller to run before U is read."""
    from ._winograd_kernels import FILTER_TRANSFORM
    filters, points = w_geom.out_channels * w_geom.in_per_group, (m + 2) ** w_geom.nd
    w_rows = np.ascontiguousarray(w).reshape(filters, -1)
    u = scratch.get("u", (points, 1, filters))
    steps = [functools.partial(FILTER_TRANSFORM[m], w_rows, w_geom.nd, flipped, *f, u) for f in par.split(filters, n)]
    u = u.reshape(points, w_geom.groups, w_geom.out_per_group, w_geom.in_per_group)
    return (u.swapaxes(-1, -2) if flipped else u), steps  # (G, Og, Cg) of w_geom is (G, Cg, Og) of geom


def _as_computed(geom: ConvGeometry, op: str) -> tuple[ConvGeometry, str]:
    """The geometry and op the kernels run for ``op``: an input gradient is the forward algorithm on
    the adjoint geometry (stride 1 there too), its filters flipped inside the filter transform."""
    return (geom.for_input_grad(), "forward") if op == "input_grad" else (geom, op)


#: (A, B) per tile size m and dimension d of the error estimate ``u * (A + B*sqrt(Cg))``: 1.5x
#: the least upper envelope of float32 measurements (module docstring), so calls stay below it.
ERROR_GROWTH = {
    2: {1: (1.5, 0.5), 2: (2.2, 0.7), 3: (4.5, 0.75)},
    4: {1: (4.5, 1.2), 2: (12.0, 4.7), 3: (39.0, 11.6)},
}
#: The same for the weight gradient, ``u * (A + B*sqrt(N * output positions))``: 1.5x the upper
#: envelope of float32 measurements on 1-D/2-D/3-D layers (4 to 128 channels, 128 to 100352
#: positions, normal and ReLU-like inputs; module docstring). Measured errors grow more slowly
#: than the square root at large sizes, so large layers are overestimated.
WEIGHT_GRAD_ERROR_GROWTH = {
    2: {1: (5.0, 0.11), 2: (5.3, 0.18), 3: (6.9, 0.11)},
    4: {1: (9.8, 0.29), 2: (24.0, 0.95), 3: (73.0, 1.6)},
}
