"""Compiled kernels of the channel-blocked direct convolution (``blocked``).

Layouts, with ``B = 16`` input channels per block and ``OBW`` output channels per block (two
64-byte vectors: 32 in float32, 16 in float64):

* packed input ``(N, CB, Dp, Hp, SW, Wq, B)``: the zero-padded input rows, each split into its
  ``SW`` stride phases along the last axis (phase ``f`` holds padded columns ``j*SW + f``), the
  ``B`` channels of a block interleaved. Output column ``c`` and kernel column ``kw`` read phase
  ``kw*dw % SW`` at ``c + kw*dw // SW``: consecutive output columns are consecutive packed
  pixels whatever the stride, so each tap is one constant offset (``offs``).
* packed weights ``(OB, CB, taps, B, OBW)``: for each input channel of a block and tap, the
  ``OBW`` weights of the output block as two vectors.
* accumulators of a job ``(N, rows, cols, OBW)``: a job is one output block over a range of
  output rows and columns, for the whole batch.

The micro-kernel keeps ``pixels x 2`` vectors of sums in registers (up to 14 x 2 = 28 of the 32
AVX-512 registers): for each input channel it loads the two weight vectors once and broadcasts
one input value per pixel, two fused multiply-adds each. A job runs input-channel blocks in the
outer loop and the batch, rows and tiles inside, so that the block's weights (taps x B x OBW,
18 KiB for a 3x3 layer in float32) stay in L1 while every tile of the job reuses them; the sums
go to the job's accumulators between blocks (``first`` starts them), and from there to the
output by 16x16 in-register transposes (``simd.transpose_spread``: channel rows of a (N, O, ...)
array, or every stride-th element of a transposed convolution's output for ``subpixel_blocked``);
``simd.transpose`` packs the input and the weights.
Imported lazily; compiled once per dtype and cached on disk.
"""

from __future__ import annotations

import functools

import numba
import numpy as np
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

from . import _simd as simd

#: Input channels per block: one broadcast each, unrolled in the micro-kernel.
B = 16
#: Most pixels per register tile: 2 x 14 sums, 2 weight vectors and a broadcast fill 31 registers.
PIXELS = 14
#: Vectors of output channels per block.
VECTORS = 2


@intrinsic
def _tile(typingctx, pixels, x, xb, w, wb, offs, count, acc, ab, first):
    """``acc[ab + p*OBW + v*lanes : +lanes] (+)= sum over t < count, i < B of x[xb + offs[t] + p*B + i]
    * w[wb + (t*B + i)*OBW + v*lanes : +lanes]`` for p < pixels (1 to ``PIXELS``), v < 2; the sums
    start at zero when ``first``, else at acc. A switch picks the tile size, each fully unrolled."""
    def codegen(context, builder, signature, args):
        pixels_v, x_v, xb_v, w_v, wb_v, offs_v, count_v, acc_v, ab_v, first_v = args
        scalar, size, lanes, vec = simd.vector(context, acc.dtype)
        i64, obw = simd.I64, VECTORS * lanes
        x_p, w_p, acc_p = (simd.data(context, builder, ty, v, scalar) for ty, v in ((x, x_v), (w, w_v), (acc, acc_v)))
        offs_p = cgutils.create_struct_proxy(offs)(context, builder, value=offs_v).data
        fma = simd.fma(builder, vec)

        vector_at = functools.partial(simd.vector_at, builder, vec)

        def sums_at(p, v):
            return vector_at(acc_p, builder.add(ab_v, ir.Constant(i64, p * obw + v * lanes)))

        def tile(count_p):
            cells = [[cgutils.alloca_once_value(builder, ir.Constant(vec, None)) for _ in range(VECTORS)]
                     for _ in range(count_p)]  # promoted to registers by LLVM
            with builder.if_then(builder.not_(builder.trunc(first_v, ir.IntType(1)))):
                for p in range(count_p):
                    for v in range(VECTORS):
                        builder.store(builder.load(sums_at(p, v), align=size), cells[p][v])
            with cgutils.for_range(builder, count_v) as loop:
                xs = builder.add(xb_v, builder.load(builder.gep(offs_p, [loop.index])))
                ws = builder.add(wb_v, builder.mul(loop.index, ir.Constant(i64, B * obw)))
                sums = [[builder.load(cell) for cell in row] for row in cells]
                for i in range(B):
                    weights = [builder.load(vector_at(w_p, builder.add(ws, ir.Constant(i64, i * obw + v * lanes))),
                                            align=size) for v in range(VECTORS)]
                    for p in range(count_p):
                        value = builder.load(builder.gep(x_p, [builder.add(xs, ir.Constant(i64, p * B + i))]))
                        broadcast = simd.splat(builder, vec, value)
                        for v in range(VECTORS):
                            sums[p][v] = builder.call(fma, [broadcast, weights[v], sums[p][v]])
                for p in range(count_p):
                    for v in range(VECTORS):
                        builder.store(sums[p][v], cells[p][v])
            for p in range(count_p):
                for v in range(VECTORS):
                    builder.store(builder.load(cells[p][v]), sums_at(p, v), align=size)

        simd.switch(builder, pixels_v, range(1, PIXELS + 1), tile, "tile.pixels")
        return context.get_dummy_value()

    return types.void(pixels, x, xb, w, wb, offs, count, acc, ab, first), codegen


#: Unsigned indices: numba then skips its negative-index wraparound, which blocks vectorisation.
_U = np.uintp


@numba.njit(nogil=True, cache=True)
def pack_input(x, shape, xp, lo, sw, packed, first, i0, i1):  # pragma: no cover - compiled
    """Packed-input blocks ``i0 <= n*CB + cb < i1`` of the flat x of ``shape`` (N, C, D, H, W) into
    the flat ``xp``; ``packed`` = (CB, Dp, Hp, Wq): padded rows and columns outside x are zero.
    Packed column j of each phase holds the phase's column ``first + j`` (``first`` > 0: a slab of
    the rows). Unstrided rows move a vector square of (channels, columns) at a time by
    in-register transposes (``simd.transpose``: 1.4x faster than gathering 16 channels per pixel
    for a whole 56x56 map, 2.4x for a 1-D slab in L2); stride phases gather (``_gather``)."""
    _, channels, depth, height, width = shape
    cb_count, dp, hp, wq = packed
    plane = depth * height * width
    row = sw * wq * B
    for item in range(i0, i1):
        n, cb = item // cb_count, item % cb_count
        filled = min(B, channels - cb * B)
        for d in range(dp):
            sd = d - lo[0]
            for h in range(hp):
                sh = h - lo[1]
                base = ((item * dp + d) * hp + h) * row
                if not (0 <= sd < depth and 0 <= sh < height):
                    xp[_U(base):_U(base + row)] = 0
                    continue
                src = (((n * channels + cb * B) * depth + sd) * height + sh) * width
                for f in range(sw):
                    # phase f's packed column j holds input column (first + j)*sw + f - lo; inside x
                    # for j in [j0, j1)
                    shift = first * sw + f - lo[2]
                    j0 = min(wq, max(0, -(shift // sw)))
                    j1 = max(j0, min(wq, (width - 1 - shift) // sw + 1))
                    start = base + f * wq * B
                    xp[_U(start):_U(start + j0 * B)] = 0
                    xp[_U(start + j1 * B):_U(start + wq * B)] = 0
                    if sw == 1:  # lanes x lanes squares of (channel, column) moved by shuffles
                        lanes = 64 // xp.itemsize
                        for j in range(j0, j1, lanes):
                            for i in range(0, B, lanes):
                                simd.transpose(xp, start + j * B + i, B, x, src + i * plane + j + shift, plane,
                                               max(0, min(lanes, filled - i)), min(lanes, j1 - j), lanes)
                    else:
                        _gather(x, xp, start, src + shift, sw, plane, filled, j0, j1)


@numba.njit(nogil=True, cache=True)
def _gather(x, xp, start, src, sw, plane, filled, j0, j1):  # pragma: no cover - compiled
    """``xp[start + j*B + i] = x[src + j*sw + i*plane]`` for j0 <= j < j1, i < B (zero for i >=
    filled): packed pixels of strided columns, one element at a time."""
    for j in range(j0, j1):
        at, col = start + j * B, src + j * sw
        if filled == B:  # a constant trip count: unrolled, 2.5x faster than the loop below
            for i in range(B):
                xp[_U(at + i)] = x[_U(col + i * plane)]
        else:  # the last block, channels beyond C zero
            for i in range(B):
                xp[_U(at + i)] = x[_U(col + i * plane)] if i < filled else 0


@numba.njit(nogil=True, cache=True)
def pack_weights(w, shape, wp, cb_count, ob0, ob1):  # pragma: no cover - compiled
    """Packed weights of output blocks ob0 <= ob < ob1 from the flat w of ``shape`` (O, C, taps),
    into wp from its start (block ob0 first); zero beyond O and C. A block's rows of w (its
    channels' taps, contiguous) are transposed a vector square at a time into an L1 buffer, whose
    (channel, tap) rows of OBW weights then move to (tap, channel) order."""
    outputs, channels, taps = shape
    lanes = 64 // wp.itemsize
    obw = VECTORS * lanes  # a constant: each row below is two vector moves
    block = taps * B * obw
    transposed = simd.aligned_empty(block, wp.dtype)
    for ob in range(ob0, ob1):
        for cb in range(cb_count):
            base = ((ob - ob0) * cb_count + cb) * block
            filled = min(B, channels - cb * B)
            if filled < B:
                wp[_U(base):_U(base + block)] = 0
            for v in range(0, obw, lanes):
                rows = max(0, min(lanes, outputs - ob * obw - v))
                src = ((ob * obw + v) * channels + cb * B) * taps
                for col in range(0, filled * taps, lanes):
                    simd.transpose(transposed, col * obw + v, obw, w, src + col, channels * taps, rows,
                                   min(lanes, filled * taps - col), lanes)
            for t in range(taps):  # wp in order: its stores stream
                for i in range(filled):
                    at, src = base + (t * B + i) * obw, (i * taps + t) * obw
                    for o in range(obw):
                        wp[_U(at + o)] = transposed[_U(src + o)]


@numba.njit(nogil=True, cache=True)
def pack_phase_weights(w, taps, per_phase, wp, cb_count, ob0, ob1):  # pragma: no cover - compiled
    """Packed weights of output blocks ob0 <= ob < ob1 (into wp from its start) of the sub-pixel
    phases of a transposed convolution, straight from its weight w (C_in, C_out, kernel taps):
    output ``o = p*per_phase + c`` is channel c of phase p, and its weight for input channel i and sub-kernel offset t is
    ``w[i, c, taps[t, p]]`` (zero where ``taps`` is -1: the phase has no such tap)."""
    inputs, _, kernel = w.shape
    offsets, phases = taps.shape
    obw = VECTORS * (64 // wp.itemsize)
    flat = w.reshape(-1)
    source = np.empty((offsets, obw), np.int64)  # per offset and output of the block: its tap in a w row, or -1
    for ob in range(ob0, ob1):
        for j in range(obw):
            p, c = divmod(ob * obw + j, per_phase)
            for t in range(offsets):
                tap = taps[t, p] if p < phases else -1
                source[t, j] = c * kernel + tap if tap >= 0 else -1
        for cb in range(cb_count):
            for i in range(B):
                channel = cb * B + i
                row = channel * per_phase * kernel  # w[channel] (C_out, taps), in L1 for the block
                for t in range(offsets):
                    at = ((((ob - ob0) * cb_count + cb) * offsets + t) * B + i) * obw
                    for j in range(obw):
                        at_w = source[t, j]
                        wp[_U(at + j)] = flat[_U(row + at_w)] if at_w >= 0 and channel < inputs else 0


@numba.njit(nogil=True, cache=True)
def forward(xp, wp, wp_first, offs, taps, chunk, packed, out_size, stride, jobs, out, placement, channel_at, x,
            x_shape, lo, j0, j1):  # pragma: no cover - compiled
    """Jobs j0 <= j < j1 of the forward pass: ``jobs[j] = (ob, r0, r1, c0, c1, pixels)``, output
    block ob over output rows [r0, r1) (flat over depth and height) and columns [c0, c1) of every
    sample in register tiles of ``pixels`` (the last one narrower). ``packed`` = (CB, Dp, Hp, Wq);
    stride = (sd, sh, sw); ``offs`` (chunk * taps): per input block of a chunk and tap, its offset
    from the chunk's first block.

    Output (n, o, r, c) is stored at ``out[n*placement[0] + channel_at[o] + r*placement[1] +
    c*placement[2]]``: a (N, O, Do*Ho, Wo) array, or the interleaved phases of a transposed
    convolution (``placement[2]`` its stride, one of ``simd.SPREAD_STEPS``).

    xp is the packed input; or, when empty (1-D signals), each job packs the slab of the flat
    input x of ``x_shape`` that its columns read (Wq columns from c0, padding ``lo``) into a
    buffer of its own, kept for the next job of the same columns: the packed signal never goes
    to memory and back."""
    batch, outputs = x_shape[0], channel_at.size
    width = out_size[2]
    cb_count, dp, hp, wq = packed
    ho = out_size[1]
    lanes = 64 // out.itemsize
    obw = VECTORS * lanes
    row = stride[2] * wq * B
    longest = 0
    for j in range(j0, j1):
        longest = max(longest, (jobs[j, 2] - jobs[j, 1]) * (jobs[j, 4] - jobs[j, 3]))
    acc = simd.aligned_empty(batch * longest * obw, out.dtype)
    sliced = xp.size == 0
    source = simd.aligned_empty(batch * cb_count * row, out.dtype) if sliced else xp
    slab = -1  # the first column of the slab in source
    for j in range(j0, j1):
        ob, r0, r1, c0, c1, pixels = jobs[j, 0], jobs[j, 1], jobs[j, 2], jobs[j, 3], jobs[j, 4], jobs[j, 5]
        rows, cols = r1 - r0, c1 - c0
        if sliced and slab != c0:
            pack_input(x, x_shape, source, lo, stride[2], packed, c0, 0, batch * cb_count)
            slab = c0
        base = c0 if sliced else 0
        for cb in range(0, cb_count, chunk):
            wb = ((ob - wp_first) * cb_count + cb) * taps * B * obw
            count = min(chunk, cb_count - cb) * taps
            for n in range(batch):
                for r in range(r0, r1):
                    od, oh = r // ho, r % ho
                    xrow = (((n * cb_count + cb) * dp + od * stride[0]) * hp + oh * stride[1]) * row
                    arow = (n * rows + r - r0) * cols
                    for c in range(c0, c1, pixels):
                        _tile(min(pixels, c1 - c), source, xrow + (c - base) * B, wp, wb, offs, count, acc,
                              (arow + c - c0) * obw, cb == 0)
        # the block's sums to the output channels, transposed a vector square at a time; whole rows
        # are one run where the output's rows follow each other
        held = min(obw, outputs - ob * obw)
        per_run = rows if cols == width and placement[1] == width and placement[2] == 1 else 1
        for n in range(batch):
            for r in range(r0, r1, per_run):
                a = (n * rows + r - r0) * cols * obw
                at = n * placement[0] + r * placement[1] + c0 * placement[2]
                for v in range(0, held, lanes):
                    for c in range(0, per_run * cols, lanes):
                        run = min(lanes, per_run * cols - c)
                        simd.transpose_spread(out, at + c * placement[2], channel_at, ob * obw + v, placement[2], acc,
                                              a + c * obw + v, obw, run, min(lanes, held - v), run)
