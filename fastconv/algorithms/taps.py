"""Tap-wise GEMM (kn2row, shifted-view GEMM): stride-1 convolution as one BLAS product per kernel tap.

Method
------
The input is zero-padded once into a buffer ``(N, C, *padded)`` (negative padding crops) and each
channel's spatial dims are flattened with the *padded* pitch. The output position ``(d, h, w)``
then lives at flat index ``d*Hp*Wp + h*Wp + w`` of an *extended* output, and the kernel tap
``(kd, kh, kw)`` reads the flat input at that index plus ``kd*dil_d*Hp*Wp + kh*dil_h*Wp +
kw*dil_w``: for every tap, the ``(Cg, L)`` slice of the buffer starting at that offset is a view
with unit inner stride, which ``numpy.matmul`` hands to BLAS without a copy. So ::

    y_ext = sum over taps t of  W[:, :, t] (Og x Cg)  @  x_flat[:, off_t : off_t + L] (Cg x L)

per group, with no im2col. ``L`` runs to the last valid output; the extended columns between
(``w >= Wout``, and rows ``h >= Hout`` in 3-D) are computed and dropped when the valid part is
copied into ``y``. In 1-D (and whenever only the first dimension has a kernel extent above 1)
the extended layout *is* the output's, and the taps accumulate straight into ``y``.

Work is cut into chunks of extended positions whose accumulator (all output channels) stays in
L2; the first tap writes it (``out=``), each later tap's product lands in a second L2 buffer and
is added. Worker threads (``_gemm_parallel``) take whole (sample, chunk) items with
single-threaded BLAS.

Costs
-----
* multiply-adds: ``N*O*Cg*K*L``, i.e. the direct count times ``L / prod(out)`` (the garbage
  columns: 12% on a 33x33 map padded by 2 on each side), in ``K`` products of depth ``Cg`` only,
  which run below BLAS's peak when ``Cg`` or ``Og`` is small;
* memory: the padded copy (``N*C*prod(padded)``, skipped for an unpadded contiguous input), the
  ``K - 1`` accumulations of ``N*O*L`` values (in L2), the copy-out of ``N*O*prod(out)``;
* scratch: the padded copy (must fit the workspace) and two L2-sized buffers per worker.

Against ``gemm`` it trades im2col's packing of ``Cg*K`` values per output position for the
accumulations of ``K`` values per output channel and position: it wins where ``Og`` is
below ``Cg*K`` and the kernel is dilated or large (WaveNet, DeepLab). Strided convolutions
decline (the views would be strided), as do kernels above :data:`MAX_TAPS` taps (the weight
gradient's adjoint geometry, whose kernel is as large as the output, would make one thin
product per output position).
"""

from __future__ import annotations

import itertools
import math
from typing import NamedTuple

import numpy as np

from .. import _config
from .._geometry import ConvGeometry
from . import _gemm_parallel as par
from ._base import Algorithm
from ._layout import Scratch

#: Kernels with more taps decline: each tap costs a product call per chunk and an accumulation
#: pass, which gemm's one deep product (or fft) beats long before this.
MAX_TAPS = 64
#: Bytes of one chunk's accumulator (all output channels), about L2: wider products run BLAS faster than
#: L2-resident accumulations save (float32, one thread: deeplab 32 ms at 1 MiB vs 35 at 256 KiB,
#: wavenet 20 vs 23; 4 MiB no better).
CHUNK_BYTES = 2**20
#: Fewest positions per chunk: thinner products run BLAS far below its peak.
MIN_CHUNK_POSITIONS = 128


class _Layout(NamedTuple):
    """Where the taps read and the extended output lives, for one geometry."""

    padded: tuple[int, ...]  # padded spatial size; the flat pitch of each dim is the product of later ones
    offsets: tuple[int, ...]  # flat start of each tap's view, in weight order
    extent: int  # extended positions computed: up to the last valid output, inclusive
    direct: bool  # the extended layout is the output's: accumulate straight into y
    chunk: int  # extended positions per chunk (whole padded rows unless direct)


def _layout(geom: ConvGeometry, itemsize: int) -> _Layout:
    padded = geom.padded_size
    pitches = [math.prod(padded[i + 1:]) for i in range(geom.nd)]
    offsets = tuple(sum(t * d * p for t, d, p in zip(tap, geom.dilation, pitches))
                    for tap in itertools.product(*(range(k) for k in geom.kernel)))
    extent = sum((o - 1) * p for o, p in zip(geom.out_size, pitches)) + 1
    direct = padded[1:] == geom.out_size[1:]
    chunk = max(MIN_CHUNK_POSITIONS, CHUNK_BYTES // (geom.out_channels * itemsize))
    if direct:
        return _Layout(padded, offsets, extent, direct, min(chunk, extent))
    row = padded[-1]  # whole rows, so that the copy-out moves rows; the last one is cut at Wout
    return _Layout(padded, offsets, extent, direct, min(max(1, round(chunk / row)), -(-extent // row)) * row)


class Taps(Algorithm):
    name = "taps"
    compiled = False  # NumPy (and SciPy) only
    native_ops = ("forward",)

    def supports(self, geom, dtype, op):
        if op != "forward":
            return "taps: only forward (gradients run via forward)"
        if any(s != 1 for s in geom.stride):
            return f"taps: stride {geom.stride}; shifted views would be strided (gemm packs them)"
        if geom.nd > 3:
            return f"taps: {geom.nd} spatial dimensions; the copy-out handles 1 to 3"
        if geom.kernel_volume > MAX_TAPS:
            return (f"taps: {geom.kernel_volume} kernel taps > {MAX_TAPS}; one thin product per tap "
                    f"never pays there (gemm or fft)")
        need = _padded_elements(geom) * np.dtype(dtype).itemsize
        if need > _config.workspace_bytes:
            return (f"taps: the padded input needs {need / 2**20:.0f} MiB > workspace "
                    f"{_config.workspace_bytes / 2**20:.0f} MiB")
        return None

    def cost(self, geom, dtype, op):
        from .._cost_model import (
            TAPS_SECONDS_PER_ELEMENT,
            TAPS_SECONDS_PER_PRODUCT,
            gemm_seconds,
        )
        itemsize = np.dtype(dtype).itemsize
        lay = _layout(geom, itemsize)
        taps, n, o = geom.kernel_volume, geom.batch, geom.out_channels
        macs = n * o * geom.in_per_group * taps * lay.extent
        copied_out = 0 if lay.direct else n * o * math.prod(geom.out_size)
        moved = _padded_elements(geom) + (taps - 1) * n * o * lay.extent + copied_out
        products = n * math.ceil(lay.extent / lay.chunk) * taps * geom.groups
        return (gemm_seconds(macs, geom.out_per_group, geom.in_per_group, lay.chunk, 0, itemsize)
                + moved * itemsize / 4 * TAPS_SECONDS_PER_ELEMENT + products * TAPS_SECONDS_PER_PRODUCT)

    def forward(self, x, w, geom):
        lay = _layout(geom, x.itemsize)
        g, og, cg, taps = geom.groups, geom.out_per_group, geom.in_per_group, geom.kernel_volume
        n = par.workers(geom.macs)
        held = Scratch(x.dtype)
        xf = _padded_flat(x, geom, n, held).reshape(geom.batch, g, cg, -1)
        wt = np.ascontiguousarray(w.reshape(g, og, cg, taps).transpose(3, 0, 1, 2))  # (K, G, Og, Cg)
        y = np.empty(geom.output_shape, dtype=x.dtype)
        yf = y.reshape(geom.batch, g, og, -1)
        copy_out = None if lay.direct else _row_copier(y, geom, lay)

        def chunk(item: tuple[int, int], scratch: Scratch) -> None:
            i, p0 = item
            cols = min(lay.chunk, lay.extent - p0)
            extended = None if lay.direct else scratch.get("acc", (g, og, lay.chunk))
            acc = yf[i, :, :, p0:p0 + cols] if extended is None else extended[:, :, :cols]
            product = scratch.get("product", (g, og, cols))
            for t, off in enumerate(lay.offsets):
                view = xf[i, :, :, off + p0:off + p0 + cols]
                if t == 0:
                    np.matmul(wt[t], view, out=acc)
                else:
                    acc += np.matmul(wt[t], view, out=product)
            if extended is not None:
                copy_out(extended, i, p0)

        items = [(i, p0) for i in range(geom.batch) for p0 in range(0, lay.extent, lay.chunk)]
        with held:
            par.for_each(items, chunk, n, x.dtype)
        return y


def _padded_elements(geom: ConvGeometry) -> int:
    """Elements of the padded copy; 0 when the input is used as it is."""
    return 0 if all(p == (0, 0) for p in geom.padding) else geom.batch * geom.in_channels * math.prod(geom.padded_size)


def _padded_flat(x: np.ndarray, geom: ConvGeometry, n: int, scratch: Scratch) -> np.ndarray:
    """x zero-padded by ``geom.padding`` (negative crops), C-contiguous, as (N, C, prod(padded)), in
    the scratch; x itself (as a view) when contiguous and unpadded. Workers fill (sample, channel
    range) slabs."""
    if not _padded_elements(geom):
        return np.ascontiguousarray(x).reshape(geom.batch, geom.in_channels, -1)
    buf = scratch.get("padded", (geom.batch, geom.in_channels, *geom.padded_size))
    # per dim: the interior [a, b) of the buffer, and the source slice that lands there
    dst = tuple(slice(max(lo, 0), max(lo, 0) + n_in - max(-lo, 0) - max(-hi, 0))
                for n_in, (lo, hi) in zip(geom.in_size, geom.padding))
    src = tuple(slice(max(-lo, 0), n_in - max(-hi, 0)) for n_in, (lo, hi) in zip(geom.in_size, geom.padding))

    def fill(item: tuple[int, tuple[int, int]], _: Scratch) -> None:
        i, (c0, c1) = item
        slab = buf[i, c0:c1]
        for dim, s in enumerate(dst):  # zero the borders, one slab of each side per dim
            lead = (slice(None),) * (dim + 1)
            slab[(*lead, slice(0, s.start))] = 0
            slab[(*lead, slice(s.stop, None))] = 0
        slab[(slice(None), *dst)] = x[(i, slice(c0, c1), *src)]

    parts = par.split(geom.in_channels, -(-2 * n // geom.batch)) if n > 1 else [(0, geom.in_channels)]
    par.for_each([(i, part) for i in range(geom.batch) for part in parts], fill, n, x.dtype)
    return buf.reshape(geom.batch, geom.in_channels, -1)


def _row_copier(y: np.ndarray, geom: ConvGeometry, lay: _Layout):
    """copy(acc, sample, p0): the valid part of a chunk of extended positions (whole padded rows
    from ``p0``) into ``y``. 2-D and 3-D; rows ``h >= Hout`` of each 3-D plane are garbage."""
    row = lay.padded[-1]
    out = geom.out_size if geom.nd == 3 else (1, *geom.out_size)
    plane_rows = lay.padded[-2] if geom.nd == 3 else out[1]  # extended rows per output plane
    y6 = y.reshape(geom.batch, geom.groups, geom.out_per_group, *out)

    def copy(acc: np.ndarray, i: int, p0: int) -> None:
        r0 = p0 // row
        rows = -(-min(lay.chunk, lay.extent - p0) // row)
        acc_rows = acc[:, :, :rows * row].reshape(*acc.shape[:2], rows, row)
        r = r0
        while r < r0 + rows:
            d, h = divmod(r, plane_rows)
            take = min(plane_rows - h, r0 + rows - r)
            valid = min(h + take, out[1]) - h
            if valid > 0:
                y6[i, :, :, d, h:h + valid] = acc_rows[:, :, r - r0:r - r0 + valid, :out[2]]
            r += take

    return copy
