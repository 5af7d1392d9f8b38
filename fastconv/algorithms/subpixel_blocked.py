"""Transposed convolution by sub-pixel phases on the channel-blocked kernel, written in place.

``subpixel`` stacks the phases' sub-kernels and computes every phase over the rows and columns
that any phase needs, then interleaves them in a second pass: on dcgan.up4x4s2 each phase fills
16x16 outputs from a 17x17 product (13% more multiply-adds). Here the sub-kernels are the output
channels of one ``blocked`` convolution ordered phase by phase, so that each output block belongs
to one phase and computes only that phase's rows and columns (``blocked.convolve`` with a box per
block), and its sums go straight to their interleaved places in the output: the kernel's output
transposes store every ``stride``-th element (``simd.transpose_spread``). No phase rows are
written to memory and read back, and no shuffle pass runs. The weights are packed for the
micro-kernel straight from the transposed convolution's own (``pack_phase_weights``).

It declines what a block's phase purity or the kernel's placement cannot serve: 3-D (a phase's
rows would not be one range of the flat rows), groups, channels per phase that are not whole
blocks, and strides along the last axis other than 1, 2, 4 or 8. Only ``input_grad`` is native.
"""

from __future__ import annotations

import functools
import math

import numpy as np

from .._geometry import ConvGeometry
from . import _gemm_parallel as par
from . import blocked
from ._base import Algorithm
from .subpixel import _covers, _output, _phase_taps, _phases

#: Elements per output block of the blocked kernel: two 64-byte vectors.
_BLOCK_BYTES = 128
#: Strides along the last axis whose phases the kernel's stores interleave (``_simd.SPREAD_STEPS``,
#: not imported from there: planning must not load numba).
STRIDES = (1, 2, 4, 8)


class SubpixelBlocked(Algorithm):
    """Sub-pixel phases of a transposed convolution on the blocked kernel (module docstring)."""

    name = "subpixel_blocked"
    native_ops = ("input_grad",)

    def supports(self, geom, dtype, op):
        if op != "input_grad":
            return "subpixel_blocked: only transposed convolution (input_grad) is native"
        if geom.nd > 2:
            return f"subpixel_blocked: {geom.nd} spatial dimensions; a phase's rows are one range in 1-D and 2-D only"
        if all(s == 1 for s in geom.stride):
            return "subpixel_blocked: stride 1 has a single phase (blocked via forward computes the same)"
        if geom.stride[-1] not in STRIDES:
            return (f"subpixel_blocked: stride {geom.stride[-1]} along the last axis; its output stores interleave "
                    f"phases {', '.join(map(str, STRIDES))} apart")
        if geom.groups > 1:
            return f"subpixel_blocked: groups={geom.groups}; grouped layers run as 'subpixel'"
        per_block = _BLOCK_BYTES // np.dtype(dtype).itemsize
        if geom.in_channels % per_block:
            return (f"subpixel_blocked: {geom.in_channels} output channels per phase, not a multiple of {per_block}: "
                    f"an output block would mix phases")
        phases = _phases(geom)
        if phases is None:
            return None
        reason = blocked.Blocked().supports(phases[0], dtype, "forward")
        return f"subpixel_blocked: its phase convolution declines ({reason})" if reason else None

    def cost(self, geom, dtype, op):
        phases = _phases(geom)
        if phases is None:
            return 0.0
        sub = phases[0]
        _, boxes = _layout(geom, np.dtype(dtype).itemsize)
        computed = sum((r1 - r0) * (c1 - c0) for r0, r1, c0, c1 in boxes) / (len(boxes) * math.prod(sub.out_size))
        return blocked.Blocked().cost(sub, dtype, "forward") * computed

    def input_grad(self, dy, w, geom):
        from . import _blocked_kernels as k
        phases = _phases(geom)
        if phases is None:  # no input reaches the output window: it is all padding
            return np.zeros(geom.input_shape, dtype=dy.dtype)
        sub = phases[0]
        dx = _output(geom, _covers(phases[1]), dy.dtype)
        plan = blocked._plan(sub, dy.itemsize)
        placement, boxes = _layout(geom, dy.itemsize)
        taps = _phase_taps(geom, sub)
        w3 = np.ascontiguousarray(w).reshape(geom.out_channels, geom.in_channels, -1)
        n = par.workers(sub.macs)
        blocked.convolve(dy, plan, lambda wp, ob0, ob1: k.pack_phase_weights(w3, taps, geom.in_channels, wp,
                                                                             plan.blocks_in, ob0, ob1),
                         dx.reshape(-1), placement, plan.jobs(n, boxes), n)
        return dx


@functools.lru_cache(maxsize=256)
def _layout(geom: ConvGeometry, itemsize: int) -> tuple[tuple[np.ndarray, np.ndarray], tuple[tuple[int, ...], ...]]:
    """Where the phase convolution's outputs go in dx, and what each output block computes.

    Output channel ``p*C + c`` of the phase convolution is channel c of phase p (the phases in
    row-major order of the stride); its row ``i`` and column ``j`` (phase rows from ``q0``, see
    ``subpixel._phases``) land at dx row ``(q0 + i)*s + r - lo`` per dimension, r the phase's
    offset. Returns the kernel's placement (steps per sample, row and column of the phase grid,
    and each channel's offset) and per output block its box of rows and columns whose dx
    positions exist. Built once per geometry."""
    channels, per_block = geom.in_channels, _BLOCK_BYTES // itemsize
    size = geom.in_size if geom.nd == 2 else (1, *geom.in_size)
    stride = geom.stride if geom.nd == 2 else (1, *geom.stride)
    lo = tuple(p for p, _ in geom.padding) if geom.nd == 2 else (0, geom.padding[0][0])
    sub = _phases(geom)[0]
    grid = sub.out_size if geom.nd == 2 else (1, *sub.out_size)
    first = tuple(max(0, low // s) for low, s in zip(lo, stride))  # q0 per dimension
    offsets, ranges = [], []
    for phase in np.ndindex(*stride):
        starts = [(q0 * s + r - low) for q0, s, r, low in zip(first, stride, phase, lo)]  # dx index of grid 0
        offsets.append(starts[0] * size[1] + starts[1])
        # grid indices i with 0 <= start + i*s < n: from ceil(-start/s) to ceil((n - start)/s), in the grid
        ranges.append([(min(m, max(0, -(start // s))), min(m, max(0, -((start - n) // s))))
                       for start, s, n, m in zip(starts, stride, size, grid)])
    plane = math.prod(size)
    channel_at = (np.array(offsets, dtype=np.int64)[:, None] + np.arange(channels, dtype=np.int64) * plane).reshape(-1)
    placement = (np.array((channels * plane, stride[0] * size[1], stride[1]), dtype=np.int64), channel_at)
    boxes = tuple((*ranges[ob * per_block // channels][0], *ranges[ob * per_block // channels][1])
                  for ob in range(len(offsets) * channels // per_block))
    return placement, boxes
