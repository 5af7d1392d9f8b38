"""Transposed convolution by sub-pixel decomposition: no multiplications by inserted zeros.

A transposed convolution with stride ``s`` writes output position ``q*s + r`` from the taps
``k`` with ``k*d = m*s + r``: for each phase ``r`` it is a stride-1 "full" convolution of its
input with the phase's sub-kernel. Stacking the ``prod(s)`` phases' sub-kernels as output
channels (zero where a phase lacks a tap, e.g. a 3-tap kernel at stride 2) makes all phases
one stride-1 forward convolution with ``C_out * prod(s)`` output channels, computed by one
GEMM per tile over the im2col of the input (no im2col at all when every phase has one tap:
``kernel == stride``, the U-Net upsampling layers, is a single matmul). The phase results are
then interleaved into the output ("pixel shuffle") by the compiled col2im of a convolution
with kernel = stride, whose windows never overlap; padding and output_padding crop there.

Only ``input_grad`` is native (a transposed convolution is the input gradient of the forward
geometry it is given); forward passes belong to the other algorithms.
"""

from __future__ import annotations

import functools
import itertools
import math

import numpy as np

from .._geometry import ConvGeometry
from . import _gemm_parallel as par
from ._base import Algorithm
from ._layout import as5d, spatial3d
from .gemm import gather_samples, pack, tiles


class Subpixel(Algorithm):
    name = "subpixel"
    native_ops = ("input_grad",)

    def supports(self, geom, dtype, op):
        if op != "input_grad":
            return "subpixel: only transposed convolution (input_grad) is native"
        if geom.nd > 3:
            return f"subpixel: {geom.nd} spatial dimensions; the compiled shuffle handles 1 to 3"
        if all(s == 1 for s in geom.stride):
            return "subpixel: stride 1 has a single phase (gemm via forward computes the same)"
        return None

    def cost(self, geom, dtype, op):
        from .._cost_model import gemm_seconds
        phases = _phases(geom)
        if phases is None:
            return 0.0
        sub, _ = phases
        positions = sub.batch * math.prod(sub.out_size)
        packed = 0 if sub.is_pointwise else positions * sub.in_channels * sub.kernel_volume
        shuffled = 2 * positions * sub.out_channels  # product written, then scattered into the output
        return gemm_seconds(sub.macs, sub.out_per_group, sub.in_per_group * sub.kernel_volume, math.prod(sub.out_size),
                            packed + shuffled, np.dtype(dtype).itemsize)

    def input_grad(self, dy, w, geom):
        from ._gemm_kernels import col2im
        phases = _phases(geom)
        if phases is None:  # no input reaches the output window: it is all padding
            return np.zeros(geom.input_shape, dtype=dy.dtype)
        sub, shuffle = phases
        s3, sub3 = spatial3d(shuffle), spatial3d(sub)
        covered = _covers(shuffle)
        dx = _output(geom, covered, dy.dtype).reshape(geom.batch, geom.in_channels, *s3.in_size)
        w_phase = _phase_weight(w, geom, sub)
        n = par.workers(sub.macs)
        dy5 = as5d(dy, sub3.in_size)
        dyf = dy5.reshape(sub.batch, sub.groups, sub.in_per_group, -1)

        def phase_rows(tile, scratch):
            # phase rows of a tile: every output they land on belongs to this tile alone
            cols = gather_samples(dyf, tile) if sub.is_pointwise else pack(dy5, sub, sub3, tile, scratch)
            out = np.matmul(w_phase, cols, out=scratch.get("phase_rows", (sub.groups, sub.out_per_group,
                                                                          tile.nt * tile.lt)))
            col2im(out.reshape(-1, tile.nt, tile.lt), dx, 0, geom.in_channels, tile.n0, tile.l0, *s3[1:], not covered)

        packed = 0 if sub.is_pointwise else sub.in_channels * sub.kernel_volume
        par.for_each(tiles(sub, dy.dtype, packed + sub.out_channels + sub.in_channels, n), phase_rows, n, dy.dtype)
        return dx.reshape(geom.input_shape)


def _covers(shuffle: ConvGeometry) -> bool:
    """Whether the phase rows' windows (kernel = stride, never overlapping) cover the whole
    transposed output, so that storing them writes every element once."""
    return all(lo >= 0 and hi >= 0 for lo, hi in shuffle.padding)


def _output(geom: ConvGeometry, covered: bool, dtype) -> np.ndarray:
    """The transposed output to store the phases into: uninitialised where they cover it
    (:func:`_covers`), else zeros (the positions no phase reaches). Zeroing is a serial pass, 1-2
    ms of hifigan's, unet.up's and dcgan's 8-25 ms."""
    return (np.empty if covered else np.zeros)(geom.input_shape, dtype=dtype)


@functools.lru_cache(maxsize=256)
def _phases(geom: ConvGeometry) -> tuple[ConvGeometry, ConvGeometry] | None:
    """The stride-1 forward convolution of the transposed input that yields every phase, and the
    kernel=stride geometry whose col2im interleaves the phases into the transposed output.

    Per dimension, tap ``k`` feeds phase ``r = k*d % s`` at offset ``m = k*d // s``; the phases
    span ``M = d*(k-1)//s + 1`` offsets. Phase row ``q`` (output ``q*s + r``, ``lo`` into the
    padded output) is needed for ``q0 <= q < q1``. None when no phase row is.
    """
    spans, sub_pad, shuffle_pad = [], [], []
    for n, j, k, s, d, (lo, _) in zip(geom.in_size, geom.out_size, geom.kernel, geom.stride, geom.dilation,
                                      geom.padding):
        span = d * (k - 1) // s + 1
        q0 = max(0, lo // s)
        q1 = min(j + span - 1, -(-(lo + n) // s))
        if q1 <= q0:
            return None
        spans.append(span)
        sub_pad.append((span - 1 - q0, q1 - j))  # rows q0 .. q1 of the full correlation
        shuffle_pad.append((lo - q0 * s, q1 * s - n - lo))  # phase row q lands at q*s + r - lo
    phases = math.prod(geom.stride)
    sub = ConvGeometry(geom.batch, geom.out_channels, geom.in_channels * phases, geom.groups, geom.out_size,
                       tuple(spans), (1,) * geom.nd, (1,) * geom.nd, tuple(sub_pad))
    shuffle = ConvGeometry(geom.batch, geom.in_channels, geom.in_channels * phases, 1, geom.in_size,
                           geom.stride, geom.stride, (1,) * geom.nd, tuple(shuffle_pad))
    return sub, shuffle


def _phase_weight(w: np.ndarray, geom: ConvGeometry, sub: ConvGeometry) -> np.ndarray:
    """(O, Cg, *k) -> (G, Cg*prod(s), Og*prod(M)): per group, rows (channel, phase) and columns
    (channel of the transposed input, flipped offset) of the stacked phase sub-kernels.

    Offset ``m`` of phase ``r`` is tap ``(M-1-m)*s + r`` of the dilated kernel, if that is a tap.
    A compiled loop gathers them: numpy's transposing copy ran at ~1 GB/s (its inner loop has s
    items)."""
    from ._gemm_kernels import spread_phases
    g, og, cg = geom.groups, geom.out_per_group, geom.in_per_group
    stacked = np.empty((g * og, sub.kernel_volume, cg, math.prod(geom.stride)), dtype=w.dtype)
    spread_phases(w.reshape(g * og, cg, geom.kernel_volume), stacked, _phase_taps(geom, sub))
    return np.swapaxes(stacked.reshape(g, sub.in_per_group * sub.kernel_volume, sub.out_per_group), 1, 2)


@functools.lru_cache(maxsize=256)
def _phase_taps(geom: ConvGeometry, sub: ConvGeometry) -> np.ndarray:
    """(offsets, phases): the kernel tap (flat index) at each offset of each phase's sub-kernel, -1
    where there is none; built once per geometry and shared by its calls (never modified)."""
    taps = np.full((*sub.kernel, *geom.stride), -1, dtype=np.int64)
    for offset in itertools.product(*map(range, sub.kernel)):
        for phase in itertools.product(*map(range, geom.stride)):
            dilated = [(span - 1 - m) * s + r for m, r, span, s in zip(offset, phase, sub.kernel, geom.stride)]
            if all(t % d == 0 and t // d < k for t, d, k in zip(dilated, geom.dilation, geom.kernel)):
                taps[(*offset, *phase)] = np.ravel_multi_index([t // d for t, d in zip(dilated, geom.dilation)],
                                                               geom.kernel)
    return taps.reshape(sub.kernel_volume, -1)
