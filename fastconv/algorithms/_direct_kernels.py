"""Compiled kernels of the direct algorithms (``direct`` and ``depthwise``).

Every op is a *gather correlation over packed planes*. One input channel plane is copied once
into a small per-thread buffer, zero-padded (padding never touches the caller's arrays) and split
into stride phases, so that every kernel tap becomes a constant offset into that buffer and an
output segment is ``acc[q] = sum_t w[t] * src[base + offset[t] + q]`` over a contiguous run of
``q``: long unit-stride loops numba vectorises, whatever the stride, dilation or padding. The
output positions of a run are whole output rows laid out with the buffer's row pitch (the
columns between two rows are computed and dropped), or a slice of one long row.

* forward: src = packed input channels of one group, taps = (input channel, kernel tap).
* input_grad: src = the output gradient of one group, zero-margined; each stride phase of the
  input gradient is a stride-1 correlation with the taps of that phase (no zero-stuffing).
* weight_grad: dot products of the output gradient (in the same row layout, zeros in the gaps)
  with the shifted packed input, one per tap.

Micro-kernels keep a tile of results in registers over all taps, for one output or for several
that share their loads (8 or 4 output channels, or 4 input channels for input_grad). Spatial
parameters are 3-D: callers view 1-D and 2-D convolutions as 3-D ones with leading size-1
dimensions (``direct.spatial3d``), runs spanning rows along the middle one.

Each op is a loop over independent jobs; a call runs a range of them, serially and without the
GIL, and ``direct._parallel`` hands the ranges to fastconv's worker threads (``_gemm_parallel``),
the pool every algorithm shares. (numba's own parallel loops run on its OpenMP layer, whose
threads spin for ~17 ms after each call and slowed whatever ran next on the other core: a
following BLAS product of fastconv's, or another library's call.)

Imported lazily (numba is slow to import); compiled once per dtype and cached on disk.
"""

from __future__ import annotations

import numba
import numpy as np
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

from . import _simd as simd

#: Unsigned indices: numba then skips its negative-index wraparound, which blocks vectorisation.
_U = np.uintp
#: Slack elements after packed planes: register tiles read whole tiles past a run's end.
_SLACK = 64
#: Dot products may be reassociated (vectorised partial sums; they are also more accurate).
_DOT = {"contract", "reassoc"}


# ---- geometry helpers ---------------------------------------------------------------------------
@numba.njit(cache=True)
def _valid_range(off, step, size, count):
    """Indices ``i`` in [0, count) with ``0 <= i*step + off < size``, as [first, stop)."""
    first = min(count, max(0, -(off // step)))  # ceil(-off / step)
    stop = min(count, (size - 1 - off) // step + 1)
    return first, max(first, stop)


@numba.njit(cache=True)
def _segment(seg, rblocks, cchunks, rows, nrows, chunk, ncols):
    """Segment ``seg`` of planes of ``nrows`` x ``ncols`` outputs cut into blocks of ``rows`` rows
    (or, when ``cchunks`` > 1, single rows cut into ``chunk`` columns): (plane, row, nrows, col, ncols)."""
    c = seg % cchunks
    r = (seg // cchunks) % rblocks
    d = seg // (cchunks * rblocks)
    r0 = r * rows
    c0 = c * chunk
    return d, r0, min(rows, nrows - r0), c0, min(chunk, ncols - c0)


@numba.njit(cache=True)
def _longest_run(rows, pitch, ncols, chunk):
    """Accumulator elements of the longest run: ``rows`` whole rows, or one chunk of a long row."""
    return (rows - 1) * pitch + ncols if ncols <= chunk else chunk


@numba.njit(cache=True)
def _zeroed(n, dtype):
    """A zero-filled scratch array."""
    a = simd.aligned_empty(n, dtype)
    for i in range(n):
        a[_U(i)] = 0
    return a


@numba.njit(cache=True)
def _pack(x, xbase, size, dst, dbase, lo, stride, q):
    """Stride phases of the plane ``x[xbase:]`` (spatial ``size``) into ``dst[dbase:]``, zero-padded.

    Phase (fd, fh, fw) is a (qd, qh, qw) block whose element (a, b, c) is
    ``x[a*sd + fd - lo_d, b*sh + fh - lo_h, c*sw + fw - lo_w]``. Only the elements inside the plane
    are written: ``dst`` comes zeroed, and every plane of a call has the same padding.
    """
    sd, sh, sw = stride
    qd, qh, qw = q
    size_d, size_h, size_w = size
    phase = qd * qh * qw
    for fd in range(sd):
        a0, a1 = _valid_range(fd - lo[0], sd, size_d, qd)
        for fh in range(sh):
            b0, b1 = _valid_range(fh - lo[1], sh, size_h, qh)
            if sw == 2:
                _pack_pairs(x, xbase, size, dst, dbase + (fd * sh + fh) * 2 * phase, phase, lo, stride, q,
                            fd, fh, a0, a1, b0, b1)
                continue
            for fw in range(sw):
                pbase = dbase + ((fd * sh + fh) * sw + fw) * phase
                off = fw - lo[2]
                c0, c1 = _valid_range(off, sw, size_w, qw)
                for a in range(a0, a1):
                    for b in range(b0, b1):
                        row = pbase + (a * qh + b) * qw
                        src = xbase + ((a * sd + fd - lo[0]) * size_h + b * sh + fh - lo[1]) * size_w + off
                        if sw == 1:
                            _copy(dst, row + c0, x, src + c0, c1 - c0)
                        else:
                            for c in range(c0, c1):
                                dst[_U(row + c)] = x[_U(src + c * sw)]


@numba.njit(cache=True)
def _pack_pairs(x, xbase, size, dst, pbase, phase, lo, stride, q, fd, fh, a0, a1, b0, b1):
    """The two column phases of :func:`_pack` for stride 2 along the last axis, split together by
    vector shuffles, zeros where a row reaches into the padding."""
    sd, sh, _ = stride
    qh, qw = q[1], q[2]
    size_h, size_w = size[1], size[2]
    for a in range(a0, a1):
        for b in range(b0, b1):
            row = pbase + (a * qh + b) * qw
            src = xbase + ((a * sd + fd - lo[0]) * size_h + b * sh + fh - lo[1]) * size_w - lo[2]  # column -lo
            simd.split_2(dst, (row, row + phase, 0, 0, 0, 0), x, (src, 0, 0, 0, 0, 0), qw, lo[2], lo[2] + size_w)


@numba.njit(inline="always")
def _copy(dst, dbase, src, sbase, n):  # pragma: no cover - compiled
    """dst[dbase:dbase+n] = src[sbase:sbase+n] in 64-byte vectors, the tail masked
    (``simd.window_copy``): rows of a few dozen elements otherwise spend as long in scalar
    remainder loops as the correlation spends on them."""
    simd.window_copy(dst, dbase, src, sbase, 0, n, n)


@numba.njit(cache=True)
def _store(acc, abase, pitch, nrows, ncols, y, ybase, ypitch, step):
    """y[ybase + r*ypitch + c*step] = acc[abase + r*pitch + c] for r < nrows, c < ncols."""
    for r in range(nrows):
        a = abase + r * pitch
        b = ybase + r * ypitch
        if step == 1:
            _copy(y, b, acc, a, ncols)
        else:
            for c in range(ncols):
                y[_U(b + c * step)] = acc[_U(a + c)]


@numba.njit(cache=True)
def _load(y, ybase, ypitch, nrows, ncols, dst, dbase, pitch):
    """Adjoint of :func:`_store` (step 1) into a zeroed run: rows of y with zero gaps between them."""
    length = (nrows - 1) * pitch + ncols
    for c in range(length):
        dst[_U(dbase + c)] = 0
    for r in range(nrows):
        _copy(dst, dbase + r * pitch, y, ybase + r * ypitch, ncols)


# ---- micro-kernels ---------------------------------------------------------------------------------
def _register_tile(outputs: int, vectors: int):
    """An intrinsic computing ``outputs`` x ``vectors`` 64-byte registers of results, held in
    registers across the whole tap loop (numba's own loops keep partial sums in memory and use
    32-byte vectors on AVX-512 machines):

    ``acc[abase + m*pitch + j] = sum_t w[row+m, col+t] * src[base + offs[col+t] + j]`` for m <
    ``outputs``, j < ``vectors`` x (64 / itemsize), t < count; fused multiply-adds in tap order.
    Arrays are C-contiguous, w 2-D, the others 1-D; indices are not checked.
    """

    @intrinsic
    def tile(typingctx, acc, abase, pitch, src, base, w, row, col, offs, count):
        def codegen(context, builder, signature, args):
            acc_v, abase_v, pitch_v, src_v, base_v, w_v, row_v, col_v, offs_v, count_v = args
            _, size, lanes, vec = simd.vector(context, acc.dtype)
            i64 = simd.I64
            data = [cgutils.create_struct_proxy(ty)(context, builder, value=v)
                    for ty, v in ((acc, acc_v), (src, src_v), (w, w_v), (offs, offs_v))]
            acc_p, src_p, w_p, offs_p = (d.data for d in data)
            w_cols = builder.extract_value(data[2].shape, 1)
            fma = simd.fma(builder, vec)
            w_rows = [builder.mul(builder.add(row_v, ir.Constant(i64, m)), w_cols) for m in range(outputs)]
            cells = [[cgutils.alloca_once_value(builder, ir.Constant(vec, None)) for _ in range(vectors)]
                     for _ in range(outputs)]  # promoted to registers by LLVM
            with cgutils.for_range(builder, count_v) as loop:
                t = builder.add(col_v, loop.index)
                start = builder.add(base_v, builder.load(builder.gep(offs_p, [t])))
                loads = [builder.load(simd.vector_at(builder, vec, src_p, builder.add(start, ir.Constant(i64, v * lanes))),
                                      align=size) for v in range(vectors)]
                for m in range(outputs):
                    weight = builder.load(builder.gep(w_p, [builder.add(w_rows[m], t)]))
                    broadcast = simd.splat(builder, vec, weight)
                    for v in range(vectors):
                        builder.store(builder.call(fma, [loads[v], broadcast, builder.load(cells[m][v])]), cells[m][v])
            for m in range(outputs):
                row_start = builder.add(abase_v, builder.mul(ir.Constant(i64, m), pitch_v))
                for v in range(vectors):
                    target = builder.gep(acc_p, [builder.add(row_start, ir.Constant(i64, v * lanes))])
                    builder.store(builder.load(cells[m][v]), builder.bitcast(target, vec.as_pointer()), align=size)
            return context.get_dummy_value()

        return types.void(acc, abase, pitch, src, base, w, row, col, offs, count), codegen

    return tile


#: Eight outputs (sharing the loads of src) x 3 registers: 11 loads per 24 multiply-adds, where 4 x 4
#: needs 8 per 16 (same.5x5c32 0.85x, stem7x7s2 0.94x the time; m5.stem80s4, 80 taps, 1.06x). Four
#: outputs x 4 registers, x 2 for short runs (4 output rows of a narrow plane); one output x 4.
_tile8 = _register_tile(8, 3)
_tile4 = _register_tile(4, 4)
_tile4_narrow = _register_tile(4, 2)
_tile1 = _register_tile(1, 4)


@numba.njit(cache=True)
def _correlate(acc, length, src, base, w, row, col, offs, count, outputs, narrow):
    """acc[m*pitch + q] = sum_t w[row+m, col+t] * src[base + offs[col+t] + q] for m < ``outputs``
    (8, 4 or 1; narrow: 4), q < length rounded up to whole register tiles; returns the row pitch of acc. The
    values past ``length`` are garbage: src needs that much readable slack (``_SLACK``)."""
    width = (192 if outputs == 8 else 128 if outputs == 4 and narrow else 256) // acc.itemsize  # registers x 64 B
    pitch = (length + width - 1) // width * width
    for q in range(0, length, width):
        if outputs == 8:
            _tile8(acc, q, pitch, src, base + q, w, row, col, offs, count)
        elif outputs == 1:
            _tile1(acc, q, pitch, src, base + q, w, row, col, offs, count)
        elif narrow:
            _tile4_narrow(acc, q, pitch, src, base + q, w, row, col, offs, count)
        else:
            _tile4(acc, q, pitch, src, base + q, w, row, col, offs, count)
    return pitch


@numba.njit(cache=True, fastmath=_DOT)
def _dots1(out, row, g, length, src, base, offs, count):
    """out[row, t] += sum_q g[q] * src[base + offs[t] + q], t < count (out in float64)."""
    zero = g.dtype.type(0)
    t = 0
    while t + 4 <= count:
        pa, pb, pc, pd = base + offs[t], base + offs[t + 1], base + offs[t + 2], base + offs[t + 3]
        sa = sb = sc = sd = zero
        for q in range(length):
            gq = g[_U(q)]
            sa += gq * src[_U(pa + q)]
            sb += gq * src[_U(pb + q)]
            sc += gq * src[_U(pc + q)]
            sd += gq * src[_U(pd + q)]
        out[row, t] += sa
        out[row, t + 1] += sb
        out[row, t + 2] += sc
        out[row, t + 3] += sd
        t += 4
    while t < count:
        pa = base + offs[t]
        sa = zero
        for q in range(length):
            sa += g[_U(q)] * src[_U(pa + q)]
        out[row, t] += sa
        t += 1


@numba.njit(cache=True, fastmath=_DOT)
def _dots4(out, row, g, length, src, base, offs, count):
    """:func:`_dots1` for the four gradients ``g[m*length:]`` of outputs ``row .. row+3`` (sharing the
    loads of src); ``count`` is a multiple of 4."""
    zero = g.dtype.type(0)
    l2 = 2 * length
    l3 = 3 * length
    for t in range(0, count, 4):
        pa, pb, pc, pd = base + offs[t], base + offs[t + 1], base + offs[t + 2], base + offs[t + 3]
        a0 = b0 = c0 = d0 = a1 = b1 = c1 = d1 = a2 = b2 = c2 = d2 = a3 = b3 = c3 = d3 = zero
        for q in range(length):
            sa, sb, sc, sd = src[_U(pa + q)], src[_U(pb + q)], src[_U(pc + q)], src[_U(pd + q)]
            g0, g1, g2, g3 = g[_U(q)], g[_U(length + q)], g[_U(l2 + q)], g[_U(l3 + q)]
            a0 += g0 * sa
            b0 += g0 * sb
            c0 += g0 * sc
            d0 += g0 * sd
            a1 += g1 * sa
            b1 += g1 * sb
            c1 += g1 * sc
            d1 += g1 * sd
            a2 += g2 * sa
            b2 += g2 * sb
            c2 += g2 * sc
            d2 += g2 * sd
            a3 += g3 * sa
            b3 += g3 * sb
            c3 += g3 * sc
            d3 += g3 * sd
        out[row, t] += a0
        out[row, t + 1] += b0
        out[row, t + 2] += c0
        out[row, t + 3] += d0
        out[row + 1, t] += a1
        out[row + 1, t + 1] += b1
        out[row + 1, t + 2] += c1
        out[row + 1, t + 3] += d1
        out[row + 2, t] += a2
        out[row + 2, t + 1] += b2
        out[row + 2, t + 2] += c2
        out[row + 2, t + 3] += d2
        out[row + 3, t] += a3
        out[row + 3, t + 1] += b3
        out[row + 3, t + 2] += c3
        out[row + 3, t + 3] += d3


# ---- the three ops ---------------------------------------------------------------------------------
@numba.njit(nogil=True, cache=True)
def forward(x, in_size, channels, w, offs, count, cells, y, out_size, lo, stride, q, rows, chunk, groups, oblock,
            parts, j0, j1):
    """y (flat, N x O x out_size) = correlation of x (flat, N x channels x in_size) with the tap table.

    w: (O, T4) weights by (input channel of the group, tap), zero-padded to a multiple of 4 columns;
    offs: offsets into the packed channels of a group, per table column; count: real taps. When
    ``cells`` (4, columns) is not empty, runs are 4 output rows (``rows`` == 4) of one output, row
    m weighted in column c by ``w[o, cells[m, c]]`` (zero where -1). Jobs are (sample, group,
    block of ``oblock`` outputs, part of the segments); this call runs jobs ``j0 .. j1``.
    """
    out_channels = w.shape[0]
    rowwise = cells.shape[1] > 0
    cg = channels // groups
    og = out_channels // groups
    nob = (og + oblock - 1) // oblock
    od_, oh_, ow_ = out_size
    qd, qh, qw = q
    packed = stride[0] * stride[1] * stride[2] * qd * qh * qw
    plane_in = in_size[0] * in_size[1] * in_size[2]
    plane_out = od_ * oh_ * ow_
    rblocks = (oh_ + rows - 1) // rows
    cchunks = (ow_ + chunk - 1) // chunk
    nseg = od_ * rblocks * cchunks
    longest = _longest_run(rows, qw, ow_, chunk)
    # scratch for all jobs: every plane has the same padding, which packing never writes
    xs = _zeroed(cg * packed + _SLACK, x.dtype)
    acc = simd.aligned_empty(8 * (longest + _SLACK), x.dtype)  # 8 outputs' runs (the widest tile)
    table = np.empty(cells.shape, x.dtype)
    for job in range(j0, j1):  # of batch * groups * nob * parts
        part = job % parts
        jb = (job // parts) % nob
        g = (job // (parts * nob)) % groups
        n = job // (parts * nob * groups)
        for ci in range(cg):
            _pack(x, (n * channels + g * cg + ci) * plane_in, in_size, xs, ci * packed, lo, stride, q)
        o_first = g * og + jb * oblock
        o_stop = min(o_first + oblock, (g + 1) * og)
        if rowwise:
            for o in range(o_first, o_stop):
                for m in range(4):
                    for c in range(cells.shape[1]):
                        table[m, c] = w[o, cells[m, c]] if cells[m, c] >= 0 else 0
                for seg in range(part * nseg // parts, (part + 1) * nseg // parts):
                    d, r0, nr, c0, nc = _segment(seg, rblocks, cchunks, rows, oh_, chunk, ow_)
                    pitch = _correlate(acc, nc, xs, (d * qh + r0) * qw + c0, table, 0, 0, offs, cells.shape[1], 4,
                                       True)
                    _store(acc, 0, pitch, nr, nc, y, (n * out_channels + o) * plane_out + (d * oh_ + r0) * ow_ + c0,
                           ow_, 1)
            continue
        for seg in range(part * nseg // parts, (part + 1) * nseg // parts):
            d, r0, nr, c0, nc = _segment(seg, rblocks, cchunks, rows, oh_, chunk, ow_)
            length = (nr - 1) * qw + nc
            base = (d * qh + r0) * qw + c0
            ybase = (d * oh_ + r0) * ow_ + c0
            o = o_first
            while o < o_stop:
                outputs = 8 if o + 8 <= o_stop else 4 if o + 4 <= o_stop else 1
                pitch = _correlate(acc, length, xs, base, w, o, 0, offs, count, outputs, False)
                for m in range(outputs):
                    _store(acc, m * pitch, qw, nr, nc, y, (n * out_channels + o + m) * plane_out + ybase, ow_, 1)
                o += outputs
    return y


@numba.njit(nogil=True, cache=True)
def input_grad(dy, out_size, out_channels, w, offs, phases, dx, in_size, lo, stride, e0, e, rows, chunk, groups,
               cblock, j0, j1):
    """dx (flat, N x C x in_size) from dy (flat, N x O x out_size), stride phase by stride phase.

    The output gradients of a group are packed with margins (``e`` rows per dimension starting at
    index ``e0``); phase p of ``phases`` is (fd, fh, fw, a0_d, a0_h, a0_w, n_d, n_h, n_w, col, count):
    it fills dx positions ``(a0 + a)*stride + f - lo`` for a < n, from taps ``col .. col+count`` of
    the table (w: (C, T) by phase, output channel, tap; zero-padded to 4 per phase). Jobs are
    (sample, group, block of ``cblock`` channels); this call runs jobs ``j0 .. j1``.
    """
    channels = w.shape[0]
    og = out_channels // groups
    cg = channels // groups
    ncb = (cg + cblock - 1) // cblock
    ed, eh, ew = e
    packed = ed * eh * ew
    plane_out = out_size[0] * out_size[1] * out_size[2]
    size_d, size_h, size_w = in_size
    plane_in = size_d * size_h * size_w
    lo_dy = (-e0[0], -e0[1], -e0[2])
    longest = 1
    planes = blocks = chunks = 0  # the most planes, row blocks and column chunks of any phase
    for p in range(phases.shape[0]):
        longest = max(longest, _longest_run(min(rows, phases[p, 7]), ew, phases[p, 8], chunk))
        planes = max(planes, phases[p, 6])
        blocks = max(blocks, (phases[p, 7] + rows - 1) // rows)
        chunks = max(chunks, (phases[p, 8] + chunk - 1) // chunk)
    ys = _zeroed(og * packed + _SLACK, dy.dtype)  # for all jobs: packing never writes the margins
    acc = simd.aligned_empty(4 * (longest + _SLACK), dy.dtype)
    for job in range(j0, j1):  # of batch * groups * ncb
        jb = job % ncb
        g = (job // ncb) % groups
        n = job // (ncb * groups)
        for oi in range(og):
            _pack(dy, (n * out_channels + g * og + oi) * plane_out, out_size, ys, oi * packed, lo_dy, (1, 1, 1), e)
        c_first = g * cg + jb * cblock
        c_stop = min(c_first + cblock, (g + 1) * cg)
        # runs of the same rows of every phase together: they read the same rows of ys
        for seg in range(planes * blocks * chunks):
            d = seg // (blocks * chunks)
            r0 = (seg // chunks) % blocks * rows
            c0 = seg % chunks * chunk
            for p in range(phases.shape[0]):
                fd, fh, fw, a0d, a0h, a0w, nd, nh, nw, col, count = phases[p]
                if d >= nd or r0 >= nh or c0 >= nw:
                    continue
                nr = min(rows, nh - r0)
                nc = min(chunk, nw - c0)
                base = ((a0d + d - e0[0]) * eh + (a0h + r0 - e0[1])) * ew + (a0w + c0 - e0[2])
                i_d = (a0d + d) * stride[0] + fd - lo[0]
                i_h = (a0h + r0) * stride[1] + fh - lo[1]
                i_w = (a0w + c0) * stride[2] + fw - lo[2]
                xbase = (i_d * size_h + i_h) * size_w + i_w
                length = (nr - 1) * ew + nc
                c = c_first
                while c < c_stop:
                    outputs = 4 if c + 4 <= c_stop else 1
                    pitch = _correlate(acc, length, ys, base, w, c, col, offs, count, outputs, False)
                    for m in range(outputs):
                        _store(acc, m * pitch, ew, nr, nc, dx, (n * channels + c + m) * plane_in + xbase,
                               stride[1] * size_w, stride[2])
                    c += outputs
    return dx


@numba.njit(nogil=True, cache=True)
def weight_grad(x, in_size, channels, dy, out_size, out_channels, offs, count, lo, stride, q, rows, chunk, groups,
                oblock, partial, j0, j1):
    """partial[s] (O, T4) float64, zeroed = dot products of dy with the shifted packed x over
    slice s of the batch; their sum is the weight gradient by (input channel of the group, tap).

    Jobs are (group, block of ``oblock`` outputs, slice of the batch); this call runs jobs ``j0 .. j1``.
    """
    cg = channels // groups
    og = out_channels // groups
    nob = (og + oblock - 1) // oblock
    od_, oh_, ow_ = out_size
    qd, qh, qw = q
    packed = stride[0] * stride[1] * stride[2] * qd * qh * qw
    plane_in = in_size[0] * in_size[1] * in_size[2]
    plane_out = od_ * oh_ * ow_
    rblocks = (oh_ + rows - 1) // rows
    cchunks = (ow_ + chunk - 1) // chunk
    nseg = od_ * rblocks * cchunks
    longest = _longest_run(rows, qw, ow_, chunk)
    batch = x.size // (channels * plane_in)
    width = offs.shape[0]
    splits = partial.shape[0]
    xs = _zeroed(cg * packed, x.dtype)  # for all jobs: packing never writes the padding
    gy = simd.aligned_empty(4 * longest, x.dtype)
    for job in range(j0, j1):  # of groups * nob * splits
        split = job % splits
        jb = (job // splits) % nob
        g = job // (splits * nob)
        out = partial[split]
        o_first = g * og + jb * oblock
        o_stop = min(o_first + oblock, (g + 1) * og)
        for n in range(split * batch // splits, (split + 1) * batch // splits):
            for ci in range(cg):
                _pack(x, (n * channels + g * cg + ci) * plane_in, in_size, xs, ci * packed, lo, stride, q)
            for seg in range(nseg):
                d, r0, nr, c0, nc = _segment(seg, rblocks, cchunks, rows, oh_, chunk, ow_)
                length = (nr - 1) * qw + nc
                base = (d * qh + r0) * qw + c0
                ybase = (d * oh_ + r0) * ow_ + c0
                o = o_first
                while o + 4 <= o_stop:
                    for m in range(4):
                        _load(dy, (n * out_channels + o + m) * plane_out + ybase, ow_, nr, nc, gy, m * length, qw)
                    _dots4(out, o, gy, length, xs, base, offs, width)
                    o += 4
                while o < o_stop:
                    _load(dy, (n * out_channels + o) * plane_out + ybase, ow_, nr, nc, gy, 0, qw)
                    _dots1(out, o, gy, length, xs, base, offs, count)
                    o += 1
