"""Compiled kernels of the channel-blocked depthwise convolution (``depthwise_blocked``).

Layouts, with ``L`` channels per block (one 64-byte vector: 16 in float32, 8 in float64):

* packed input of one job ``(Dp, Hp, Wp, L)``: the zero-padded planes of a block's ``L``
  channels, interleaved per pixel (16x16 in-register transposes, ``simd.transpose``), so that
  every tap of every output pixel is one aligned vector load at a constant offset (``offs``).
* packed weights ``(CB, taps, L)``: per tap, the weights of a block's channels as one vector.

The micro-kernel keeps ``pixels`` (up to ``PIXELS``) vectors of sums in registers: per tap it
loads the weight vector once and one input vector per pixel, one fused multiply-add each. The
sums go to the output by in-register transposes. A job is one (sample, channel block): its
packed planes (a few dozen KiB to 1 MiB) stay in cache from packing to the last tap.
Imported lazily; compiled once per dtype and cached on disk.
"""

from __future__ import annotations

import functools

import numba
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

from . import _simd as simd
from .depthwise_blocked import STRIDES

#: Most output pixels per register tile: 16 sums, the weight and an input vector in 18 registers.
PIXELS = 16


@intrinsic
def _tile(typingctx, pixels, x, xb, stride, w, wb, offs, count, acc):
    """``acc[p*lanes : +lanes] = sum over t < count of w[wb + t*lanes : +lanes] * x[xb + offs[t] +
    p*stride*lanes : +lanes]`` for p < pixels (1 to ``PIXELS``), stride in ``STRIDES``; fused
    multiply-adds in tap order. Switches pick the variant, each fully unrolled: with constant
    strides the pixels' input vectors are at constant displacements from one register (with the
    stride a run-time value, 16 pixel pointers spilled to the stack and were reloaded every tap)."""
    def codegen(context, builder, signature, args):
        pixels_v, x_v, xb_v, stride_v, w_v, wb_v, offs_v, count_v, acc_v = args
        scalar, size, lanes, vec = simd.vector(context, acc.dtype)
        i64 = simd.I64
        x_p, w_p, acc_p = (simd.data(context, builder, ty, v, scalar) for ty, v in ((x, x_v), (w, w_v), (acc, acc_v)))
        offs_p = cgutils.create_struct_proxy(offs)(context, builder, value=offs_v).data
        fma = simd.fma(builder, vec)

        vector_at = functools.partial(simd.vector_at, builder, vec)

        def tile(count_p, step):
            cells = [cgutils.alloca_once_value(builder, ir.Constant(vec, None)) for _ in range(count_p)]
            with cgutils.for_range(builder, count_v) as loop:
                xs = builder.add(xb_v, builder.load(builder.gep(offs_p, [loop.index])))
                at = builder.add(wb_v, builder.mul(loop.index, ir.Constant(i64, lanes)))
                weight = builder.load(vector_at(w_p, at), align=size)
                for p in range(count_p):
                    value = builder.load(vector_at(x_p, builder.add(xs, ir.Constant(i64, p * step))), align=size)
                    builder.store(builder.call(fma, [value, weight, builder.load(cells[p])]), cells[p])
            for p in range(count_p):
                builder.store(builder.load(cells[p]), vector_at(acc_p, ir.Constant(i64, p * lanes)), align=size)

        def strided(s):
            simd.switch(builder, pixels_v, range(1, PIXELS + 1), lambda p: tile(p, s * lanes), f"tile.s{s}.pixels")

        simd.switch(builder, stride_v, STRIDES, strided, "tile.stride")
        return context.get_dummy_value()

    return types.void(pixels, x, xb, stride, w, wb, offs, count, acc), codegen


@numba.njit(nogil=True, cache=True)
def forward(x, shape, w, offs, y, out_size, lo, stride, padded, j0, j1):  # pragma: no cover - compiled
    """Jobs j0 <= j < j1 (j = n*CB + cb) of y (flat, N x C x out_size) = the depthwise correlation
    of x (flat, ``shape`` = (N, C, D, H, W)) with the weights w (C, taps), at the tap offsets
    ``offs`` into a job's packed planes of ``padded`` = (Dp, Hp, Wp) pixels, whose pixel
    (d, h, w) holds input (d - lo_d, h - lo_h, w - lo_w). Each job packs its block's weights
    (taps, L) itself: packed by the caller they were a serial 0.7 ms of replknet's 3.7."""
    batch, channels, depth, height, width = shape
    od_n, oh_n, ow_n = out_size
    dp, hp, wq = padded
    lanes = 64 // y.itemsize
    taps = w.shape[1]
    cb_count = -(-channels // lanes)
    plane_in, plane_out = depth * height * width, od_n * oh_n * ow_n
    step = stride[2] * lanes
    # zero once: every job packs the same interior, the padding is never written
    xp = simd.aligned_empty(dp * hp * wq * lanes + PIXELS * step, y.dtype)
    xp[:] = 0
    acc = simd.aligned_empty(PIXELS * lanes, y.dtype)
    wb = simd.aligned_empty(taps * lanes, y.dtype)
    w_first, w_stop = max(0, -lo[2]), min(width, wq - lo[2])
    wf = w.reshape(-1)
    for job in range(j0, j1):
        n, cb = job // cb_count, job % cb_count
        filled = min(lanes, channels - cb * lanes)
        for t in range(0, taps, lanes):
            simd.transpose(wb, t * lanes, lanes, wf, cb * lanes * taps + t, taps, filled, min(lanes, taps - t), lanes)
        source = (n * channels + cb * lanes) * plane_in
        for d in range(max(0, -lo[0]), min(depth, dp - lo[0])):
            for h in range(max(0, -lo[1]), min(height, hp - lo[1])):
                at = (((d + lo[0]) * hp + h + lo[1]) * wq + lo[2]) * lanes
                row = source + (d * height + h) * width
                for c in range(w_first, w_stop, lanes):
                    run = min(lanes, w_stop - c)
                    simd.transpose(xp, at + c * lanes, lanes, x, row + c, plane_in, filled, run, lanes)
        target = (n * channels + cb * lanes) * plane_out
        for od in range(od_n):
            for oh in range(oh_n):
                xrow = ((od * stride[0]) * hp + oh * stride[1]) * wq * lanes
                yrow = target + (od * oh_n + oh) * ow_n
                for ow in range(0, ow_n, PIXELS):
                    pixels = min(PIXELS, ow_n - ow)
                    _tile(pixels, xp, xrow + ow * step, stride[2], wb, 0, offs, taps, acc)
                    for p in range(0, pixels, lanes):
                        run = min(lanes, pixels - p)
                        simd.transpose(y, yrow + ow + p, plane_out, acc, p * lanes, lanes, run, filled, run)
