"""im2col + BLAS matmul, one matrix product per group and tile.

Compiled kernels (``_gemm_kernels``) build the im2col columns of a tile straight from the
unpadded input (zero in the padding) and scatter them back; BLAS does the arithmetic. Tiles
cover several whole samples or a slice of one sample's output positions, so the scratch
stays within the workspace budget (a 3-D layer never materialises its full im2col), and
worker threads take whole tiles (``_gemm_parallel``). Each product is oriented the way BLAS
runs it fastest (measured on the reference machine; see ``_cost_model``):

* forward, channel rows: ``W (O, C*K) @ cols (C*K, positions)`` lands directly in the output.
  A 1x1 stride-1 unpadded convolution is a plain matmul on the input (no copy); other 1x1
  kernels pack a mere strided subsample. Small maps (7x7) pack the whole batch once, and the
  workers split the output channels of one product over all its positions.
* forward, channels-last, for long thin products (many columns per output channel): the input
  goes channels-last, so each (kd, kh) of a receptive field is one contiguous run, and
  ``cols (positions, K*C) @ W^T`` gives ``(positions, O)``, transposed into the output.
* input gradient: ``W^T @ dy`` per tile, then a col2im scatter-add (no multiplications by the
  zeros a strided transposed convolution would insert); workers own channel slices, so their
  scatters never meet.
* weight gradient: ``cols (C*K, positions) @ dy^T (positions, O)`` over all the batch's positions
  at once (tiles only beyond the workspace), stored transposed into ``dw`` by BLAS; workers own
  slices of the im2col rows, so their results need no sum.
"""

from __future__ import annotations

import math

import numpy as np

from .. import _config
from .._geometry import ConvGeometry
from . import _gemm_parallel as par
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
#: Output positions per sample below which workers share one packing of the whole batch and split
#: the output channels instead (resnet50.3x3c512, 7x7: 1.4x faster than per-sample tiles).
SHARED_COLUMNS_MAX_POSITIONS = 128
#: Scratch per tile, below the workspace budget: buffers beyond ~32 MB are fresh mmaps whose page
#: faults cost more than the extra calls of smaller tiles (same.5x5c32: 16 MiB tiles 1.3x faster
#: than 256 MiB ones on the reference machine).
TILE_BYTES = 16 * 2**20
#: Slices of the im2col rows per worker in the weight gradient: a shared queue of several per
#: worker keeps both busy to the end when one is slowed.
WEIGHT_GRAD_ITEMS_PER_WORKER = 2


class Gemm(Algorithm):
    name = "gemm"
    native_ops = ("forward", "input_grad", "weight_grad")

    def supports(self, geom, dtype, op):
        if geom.nd > 3:
            return f"gemm: {geom.nd} spatial dimensions; the compiled im2col handles 1 to 3"
        return None

    def needs_compiler(self, geom, op):
        return not (op == "forward" and geom.is_pointwise)  # a 1x1 forward pass is plain matmuls

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
        n = par.workers(geom.macs)
        if geom.is_pointwise:
            wm, xf, yf = _weight_matrix(w, geom), _flat(x, geom, geom.in_per_group), _flat(y, geom, geom.out_per_group)

            def product(tile, scratch):
                for i in range(tile.n0, tile.n0 + tile.nt):
                    np.matmul(wm, xf[i, :, :, tile.l0:tile.l0 + tile.lt], out=yf[i, :, :, tile.l0:tile.l0 + tile.lt])

            par.for_each(tiles(geom, x.dtype, 0, n), product, n, x.dtype)
        elif _channels_last(geom):
            _forward_channels_last(x, w, geom, y, n)
        else:
            _forward_channel_rows(x, w, geom, y, n)
        return y

    def input_grad(self, dy, w, geom):
        from ._gemm_kernels import col2im
        g, cg, taps = geom.groups, geom.in_per_group, geom.kernel_volume
        wt = np.swapaxes(_weight_matrix(w, geom), -1, -2)  # (G, Cg*K, Og)
        dyf = _flat(dy, geom, geom.out_per_group)
        n = par.workers(geom.macs)
        s3 = spatial3d(geom)
        dx = (np.empty if geom.is_pointwise else np.zeros)((geom.batch, geom.in_channels, *s3.in_size), dtype=dy.dtype)
        dxf = _flat(dx, geom, cg)
        # Workers own (channel slice, sample range) boxes: their scatters never overlap.
        channel_parts = par.split(cg, 2 * n)
        sample_parts = par.split(geom.batch, -(-2 * n // len(channel_parts)))
        per_position = g * (channel_parts[0][1] - channel_parts[0][0]) * taps + geom.out_channels

        def scatter(box, scratch):
            (c0, c1), (b0, b1) = box
            w_part = wt[:, c0 * taps:c1 * taps]
            for tile in position_tiles(b1 - b0, math.prod(geom.out_size), per_position * dy.dtype.itemsize,
                                       _tile_budget(n)):
                tile = tile._replace(n0=tile.n0 + b0)
                if geom.is_pointwise:
                    for i in range(tile.n0, tile.n0 + tile.nt):
                        np.matmul(w_part, dyf[i, :, :, tile.l0:tile.l0 + tile.lt],
                                  out=dxf[i, :, c0:c1, tile.l0:tile.l0 + tile.lt])
                    continue
                dcols = scratch.get("cols", (g, (c1 - c0) * taps, tile.nt * tile.lt))
                np.matmul(w_part, gather_samples(dyf, tile), out=dcols)
                col2im(dcols.reshape(-1, tile.nt, tile.lt), dx, c0, c1 - c0, tile.n0, tile.l0, *s3[1:], True)

        par.for_each([(c, b) for c in channel_parts for b in sample_parts], scatter, n, dy.dtype)
        return dx.reshape(geom.input_shape)

    def weight_grad(self, x, dy, geom):
        g, og, cg = geom.groups, geom.out_per_group, geom.in_per_group
        depth = cg * geom.kernel_volume
        n = par.workers(geom.macs)
        if geom.is_pointwise:
            shape = (g, depth, og)
            xf, dyf = _flat(x, geom, cg), _flat(dy, geom, og)

            def accumulate(tile, scratch):
                dw_t = scratch.accumulator("dw_t", shape)
                for i in range(tile.n0, tile.n0 + tile.nt):
                    positions = slice(tile.l0, tile.l0 + tile.lt)
                    dw_t += xf[i, :, :, positions] @ np.swapaxes(dyf[i, :, :, positions], -1, -2)

            scratches = par.for_each(tiles(geom, x.dtype, 0, n), accumulate, n, x.dtype)
            dw_t = sum(s.accumulator("dw_t", shape) for s in scratches)
            return transposed(dw_t).reshape(geom.weight_shape)
        return _weight_grad_by_rows(x, dy, geom, n).reshape(geom.weight_shape)


def tiles(geom: ConvGeometry, dtype, values_per_position: int, n: int, fixed_values: int = 0) -> list[Tile]:
    """Tiles of the output positions whose scratch (``values_per_position`` each, plus
    ``fixed_values`` per call) fits each of ``n`` workers' share of the workspace; 2n at least."""
    itemsize = np.dtype(dtype).itemsize
    return list(position_tiles(geom.batch, math.prod(geom.out_size), values_per_position * itemsize,
                               _tile_budget(n, fixed_values * itemsize), 2 * n if n > 1 else 1))


def pack(x5: np.ndarray, geom: ConvGeometry, s3, tile: Tile, scratch: Scratch) -> np.ndarray:
    """The im2col columns of a tile of ``x5`` (the 3-D view of x), ``(G, Cg*K, nt*lt)`` with rows
    ordered channel, then tap, as the weight ``(O, Cg, *k)``; a view of the scratch."""
    from ._gemm_kernels import im2col
    cols = scratch.get("cols", (_rows(geom), tile.nt, tile.lt))
    im2col(x5, cols, 0, tile.n0, tile.l0, *s3[1:])
    return cols.reshape(geom.groups, -1, tile.nt * tile.lt)


def gather_samples(af: np.ndarray, tile: Tile) -> np.ndarray:
    """The tile of a flat (N, G, R, L) array as (G, R, nt*lt): a view for one sample, a copy for several."""
    if tile.nt == 1:
        return af[tile.n0, :, :, tile.l0:tile.l0 + tile.lt]
    part = af[tile.n0:tile.n0 + tile.nt]
    return part.transpose(1, 2, 0, 3).reshape(part.shape[1], part.shape[2], -1)


def _weight_grad_by_rows(x: np.ndarray, dy: np.ndarray, geom: ConvGeometry, n: int) -> np.ndarray:
    """``dw (G, Og, Cg*K)``: per group, ``cols (Cg*K, positions) @ dy^T (positions, Og)`` written
    into the transposed view of ``dw`` (BLAS stores the product transposed: no copy), with the
    contraction over every output position of the batch in one product where the workspace
    allows. Workers own slices of the im2col rows (packing only those) and their slice of the
    result, so nothing is summed across workers and each product is deep (a per-sample product
    of a 7x7 layer contracts over only 49 positions)."""
    from ._gemm_kernels import im2col
    g, og, depth = geom.groups, geom.out_per_group, geom.in_per_group * geom.kernel_volume
    s3 = spatial3d(geom)
    x5 = as5d(x, s3.in_size)
    dy3 = np.ascontiguousarray(dy).reshape(geom.batch, geom.out_channels, -1)
    parts = par.split(depth, -(-WEIGHT_GRAD_ITEMS_PER_WORKER * n // g)) if n > 1 else [(0, depth)]
    rows = max(b - a for a, b in parts)
    itemsize = x.dtype.itemsize
    per_sample = math.prod(geom.out_size)
    per_position = (n * rows + geom.out_channels) * itemsize  # every worker's columns and dy^T
    position_parts = list(position_tiles(geom.batch, per_sample, per_position, n * _tile_budget(n)))
    dw = np.empty((g, og, depth), dtype=x.dtype)
    with Scratch(x.dtype) as shared:
        for k, tile in enumerate(position_parts):
            dy_t = shared.get("dy_t", (tile.nt * tile.lt, geom.out_channels))
            samples = [(i, tile.lt) for i in range(tile.nt)]
            par.for_each(samples, lambda s, _: _to_position_rows(dy3, tile.n0 + s[0], 1, tile.l0, s[1],
                                                                 dy_t[s[0] * s[1]:(s[0] + 1) * s[1]]), n, x.dtype)

            def rows_product(item, scratch, tile=tile, dy_t=dy_t, first=k == 0):
                group, (r0, r1) = item
                cols = scratch.get("cols", (r1 - r0, tile.nt, tile.lt))
                im2col(x5, cols, group * depth + r0, tile.n0, tile.l0, *s3[1:])
                product = (cols.reshape(r1 - r0, -1), dy_t[:, group * og:(group + 1) * og])
                dw_t = dw[group, :, r0:r1].T
                if first:
                    np.matmul(*product, out=dw_t)
                else:
                    dw_t += np.matmul(*product, out=scratch.get("product", (r1 - r0, og)))

            par.for_each([(group, part) for group in range(g) for part in parts], rows_product, n, x.dtype)
    return dw


def _forward_channel_rows(x: np.ndarray, w: np.ndarray, geom: ConvGeometry, y: np.ndarray, n: int) -> None:
    wm = _weight_matrix(w, geom)
    yf = _flat(y, geom, geom.out_per_group)
    s3 = spatial3d(geom)
    x5 = as5d(x, s3.in_size)
    per_sample = math.prod(geom.out_size)
    rows_bytes = _rows(geom) * geom.batch * per_sample * x.dtype.itemsize
    if n > 1 and per_sample < SHARED_COLUMNS_MAX_POSITIONS and rows_bytes <= _tile_budget(1):
        _forward_shared_columns(x5, wm, geom, s3, yf, n)
        return

    def product(tile, scratch):
        cols = pack(x5, geom, s3, tile, scratch)
        if tile.nt == 1 or tile.lt >= PER_SAMPLE_MIN_POSITIONS:
            for i in range(tile.nt):
                np.matmul(wm, cols[:, :, i * tile.lt:(i + 1) * tile.lt],
                          out=yf[tile.n0 + i, :, :, tile.l0:tile.l0 + tile.lt])
        else:
            result = np.matmul(wm, cols, out=scratch.get("y_t", (geom.groups, geom.out_per_group, tile.nt * tile.lt)))
            yf[tile.n0:tile.n0 + tile.nt] = result.reshape(*result.shape[:2], tile.nt, -1).transpose(2, 0, 1, 3)

    par.for_each(tiles(geom, x.dtype, _rows(geom) + geom.out_channels, n), product, n, x.dtype)


def _forward_shared_columns(x5: np.ndarray, wm: np.ndarray, geom: ConvGeometry, s3, yf: np.ndarray, n: int) -> None:
    """The whole batch's columns, packed by all workers (slices of rows), then one product per
    worker over every position for its slice of output channels: a 7x7 layer's per-sample
    products would have 49 columns, which BLAS runs at 70% of its rate."""
    from ._gemm_kernels import im2col
    rows, positions = _rows(geom), yf.shape[-1]
    with Scratch(x5.dtype) as shared:
        cols = shared.get("cols", (rows, geom.batch, positions))
        par.for_each(par.split(rows, 2 * n), lambda r, _: im2col(x5, cols[r[0]:r[1]], r[0], 0, 0, *s3[1:]), n,
                     x5.dtype)
        cols_g = cols.reshape(geom.groups, -1, geom.batch * positions)

        def product(o_range, scratch):
            o0, o1 = o_range
            y_t = np.matmul(wm[:, o0:o1], cols_g, out=scratch.get("y_t", (geom.groups, o1 - o0, cols_g.shape[-1])))
            yf[:, :, o0:o1] = y_t.reshape(geom.groups, o1 - o0, geom.batch, positions).transpose(2, 0, 1, 3)

        par.for_each(par.split(geom.out_per_group, n), product, n, x5.dtype)


def _forward_channels_last(x: np.ndarray, w: np.ndarray, geom: ConvGeometry, y: np.ndarray, n: int) -> None:
    from ._gemm_kernels import im2col_channels_last
    s3 = spatial3d(geom)
    g, og, cg, taps, c = geom.groups, geom.out_per_group, geom.in_per_group, geom.kernel_volume, geom.in_channels
    # (O, Cg, *k) -> (G, K*Cg, Og): rows in the (tap, channel) order of the channels-last columns
    w_t = w.reshape(g, og, cg, taps).transpose(0, 3, 2, 1).reshape(g, taps * cg, og)
    x3 = as5d(x, s3.in_size).reshape(geom.batch, c, -1)
    y3 = y.reshape(geom.batch, geom.out_channels, -1)
    plane, sample = x3.shape[2] // s3.in_size[0], x3.shape[2]
    # The whole input goes channels-last up front when it fits in half the workspace (tiles then
    # share it); else each tile transposes the slab of input planes it reads, halo included.
    whole = x3.size * x.dtype.itemsize <= _config.workspace_bytes // 2
    held = Scratch(x.dtype)
    if whole:
        x_cl = held.get("x_cl", (geom.batch, *s3.in_size, c))
        rows_cl = x_cl.reshape(geom.batch, sample, c)
        parts = [(b, part) for b in range(geom.batch) for part in par.split(sample, -(-2 * n // geom.batch))]
        par.for_each(parts, lambda p, _: _to_position_rows(x3, p[0], 1, p[1][0], p[1][1] - p[1][0],
                                                           rows_cl[p[0], p[1][0]:p[1][1]]), n, x.dtype)
    halo = 0 if whole else (s3.dilation[0] * (s3.kernel[0] - 1) + s3.stride[0]) * plane * c * n
    per_position = c * (taps + (0 if whole else -(-sample // math.prod(geom.out_size)))) + geom.out_channels

    def product(tile, scratch):
        if whole:
            start, slab = 0, x_cl[tile.n0:tile.n0 + tile.nt]
        else:
            start, stop = input_planes(geom, s3, tile.l0, tile.lt)
            slab = scratch.get("x_cl", (tile.nt, stop - start, *s3.in_size[1:], c))
            _to_position_rows(x3, tile.n0, tile.nt, start * plane, (stop - start) * plane, slab)
        cols = scratch.get("cols", (tile.nt * tile.lt, taps * c))
        im2col_channels_last(slab, cols, start, tile.l0, g, s3.in_size, *s3[1:])
        y_t = scratch.get("y_t", (tile.nt * tile.lt, geom.out_channels))
        np.matmul(cols.reshape(-1, g, taps * cg).transpose(1, 0, 2), w_t, out=y_t.reshape(-1, g, og).transpose(1, 0, 2))
        _from_position_rows(y_t, y3, tile.n0, tile.nt, tile.l0, tile.lt)

    fixed = x3.size if whole else halo
    with held:
        par.for_each(tiles(geom, x.dtype, per_position, n, fixed), product, n, x.dtype)


def transposed(a3: np.ndarray) -> np.ndarray:
    """(B, R, L) -> C-contiguous (B, L, R), by the blocked transpose (numpy's copy of a transposed
    view strides through memory: 4 ms for a 256x2304 weight gradient)."""
    out = np.empty((a3.shape[0], a3.shape[2], a3.shape[1]), dtype=a3.dtype)
    _to_position_rows(np.ascontiguousarray(a3), 0, a3.shape[0], 0, a3.shape[2], out)
    return out


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


def _channels_last(geom: ConvGeometry) -> bool:
    """Whether the forward pass runs channels-last (see CHANNELS_LAST_MIN_DEPTH)."""
    depth = geom.in_per_group * geom.kernel_volume
    return geom.kernel_volume > 1 and depth >= CHANNELS_LAST_MIN_DEPTH * geom.out_per_group


def _rows(geom: ConvGeometry) -> int:
    """Rows of the columns matrix: (channel, tap) pairs."""
    return geom.in_channels * geom.kernel_volume


def _tile_budget(n: int, fixed_bytes: int = 0) -> int:
    """Scratch bytes the tile of each of ``n`` workers may use beside ``fixed_bytes`` shared ones."""
    return max(min((_config.workspace_bytes - fixed_bytes) // n, TILE_BYTES), 0)


def _weight_matrix(w: np.ndarray, geom: ConvGeometry) -> np.ndarray:
    """(O, Cg, *k) -> (G, Og, Cg*K)."""
    return w.reshape(geom.groups, geom.out_per_group, geom.in_per_group * geom.kernel_volume)


def _flat(a: np.ndarray, geom: ConvGeometry, per_group: int) -> np.ndarray:
    """(N, C, *spatial) -> (N, G, C/G, L)."""
    return a.reshape(a.shape[0], geom.groups, per_group, -1)
