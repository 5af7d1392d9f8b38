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

Micro-kernels handle 4 taps per pass over the accumulator, for one output or for four outputs
that share their loads (4 output channels, or 4 input channels for input_grad). Spatial
parameters are 3-D: callers view 1-D and 2-D convolutions as 3-D ones with leading size-1
dimensions (``direct.spatial3d``), runs spanning rows along the middle one.

Imported lazily (numba is slow to import); compiled once per dtype and cached on disk.
"""

from __future__ import annotations

import numba
import numpy as np
from numba import prange

#: Unsigned indices: numba then skips its negative-index wraparound, which blocks vectorisation.
_U = np.uintp
#: Fused multiply-add, no reassociation: results do not depend on the vector width.
_FMA = {"contract"}
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
def _pack(x, xbase, size, dst, dbase, lo, stride, q):
    """Zero-padded stride phases of the plane ``x[xbase:]`` (spatial ``size``) into ``dst[dbase:]``.

    Phase (fd, fh, fw) is a (qd, qh, qw) block whose element (a, b, c) is
    ``x[a*sd + fd - lo_d, b*sh + fh - lo_h, c*sw + fw - lo_w]`` (zero outside the plane).
    """
    sd, sh, sw = stride
    qd, qh, qw = q
    size_d, size_h, size_w = size
    phase = qd * qh * qw
    for fd in range(sd):
        for fh in range(sh):
            for fw in range(sw):
                pbase = dbase + ((fd * sh + fh) * sw + fw) * phase
                off = fw - lo[2]
                c0, c1 = _valid_range(off, sw, size_w, qw)
                for a in range(qd):
                    i_d = a * sd + fd - lo[0]
                    for b in range(qh):
                        i_h = b * sh + fh - lo[1]
                        row = pbase + (a * qh + b) * qw
                        if i_d < 0 or i_d >= size_d or i_h < 0 or i_h >= size_h:
                            for c in range(qw):
                                dst[_U(row + c)] = 0
                            continue
                        src = xbase + (i_d * size_h + i_h) * size_w + off
                        for c in range(c0):
                            dst[_U(row + c)] = 0
                        if sw == 1:
                            for c in range(c0, c1):
                                dst[_U(row + c)] = x[_U(src + c)]
                        else:
                            for c in range(c0, c1):
                                dst[_U(row + c)] = x[_U(src + c * sw)]
                        for c in range(c1, qw):
                            dst[_U(row + c)] = 0


@numba.njit(cache=True)
def _store(acc, abase, pitch, nrows, ncols, y, ybase, ypitch, step):
    """y[ybase + r*ypitch + c*step] = acc[abase + r*pitch + c] for r < nrows, c < ncols."""
    for r in range(nrows):
        a = abase + r * pitch
        b = ybase + r * ypitch
        if step == 1:
            for c in range(ncols):
                y[_U(b + c)] = acc[_U(a + c)]
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
        a = dbase + r * pitch
        b = ybase + r * ypitch
        for c in range(ncols):
            dst[_U(a + c)] = y[_U(b + c)]


# ---- micro-kernels ---------------------------------------------------------------------------------
@numba.njit(cache=True, fastmath=_FMA)
def _correlate1(acc, length, src, base, w, row, col, offs, count):
    """acc[q] = sum_t w[row, col+t] * src[base + offs[col+t] + q], q < length, t < count."""
    for q in range(length):
        acc[_U(q)] = 0
    t = col
    end = col + count
    while t + 4 <= end:
        a, b, c, d = w[row, t], w[row, t + 1], w[row, t + 2], w[row, t + 3]
        pa, pb, pc, pd = base + offs[t], base + offs[t + 1], base + offs[t + 2], base + offs[t + 3]
        for q in range(length):
            # one chain of fused multiply-adds: no separate multiply, no extra add
            acc[_U(q)] = acc[_U(q)] + a * src[_U(pa + q)] + b * src[_U(pb + q)] + c * src[_U(pc + q)] \
                + d * src[_U(pd + q)]
        t += 4
    while t < end:
        a = w[row, t]
        pa = base + offs[t]
        for q in range(length):
            acc[_U(q)] = acc[_U(q)] + a * src[_U(pa + q)]
        t += 1


@numba.njit(cache=True, fastmath=_FMA)
def _correlate4(acc, length, src, base, w, row, col, offs, count):
    """:func:`_correlate1` for the four weight rows ``row .. row+3`` at once (they share every load of
    src); output m goes to ``acc[m*length:]``. ``count`` is a multiple of 4 (tables are zero-padded)."""
    for q in range(4 * length):
        acc[_U(q)] = 0
    l2 = 2 * length
    l3 = 3 * length
    for t in range(col, col + count, 4):
        pa, pb, pc, pd = base + offs[t], base + offs[t + 1], base + offs[t + 2], base + offs[t + 3]
        a0, b0, c0, d0 = w[row, t], w[row, t + 1], w[row, t + 2], w[row, t + 3]
        a1, b1, c1, d1 = w[row + 1, t], w[row + 1, t + 1], w[row + 1, t + 2], w[row + 1, t + 3]
        a2, b2, c2, d2 = w[row + 2, t], w[row + 2, t + 1], w[row + 2, t + 2], w[row + 2, t + 3]
        a3, b3, c3, d3 = w[row + 3, t], w[row + 3, t + 1], w[row + 3, t + 2], w[row + 3, t + 3]
        for q in range(length):
            sa, sb, sc, sd = src[_U(pa + q)], src[_U(pb + q)], src[_U(pc + q)], src[_U(pd + q)]
            acc[_U(q)] = acc[_U(q)] + a0 * sa + b0 * sb + c0 * sc + d0 * sd
            acc[_U(length + q)] = acc[_U(length + q)] + a1 * sa + b1 * sb + c1 * sc + d1 * sd
            acc[_U(l2 + q)] = acc[_U(l2 + q)] + a2 * sa + b2 * sb + c2 * sc + d2 * sd
            acc[_U(l3 + q)] = acc[_U(l3 + q)] + a3 * sa + b3 * sb + c3 * sc + d3 * sd


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
@numba.njit(parallel=True, cache=True)
def forward(x, in_size, channels, w, offs, count, y, out_size, lo, stride, q, rows, chunk, groups, oblock, parts):
    """y (flat, N x O x out_size) = correlation of x (flat, N x channels x in_size) with the tap table.

    w: (O, T4) weights by (input channel of the group, tap), zero-padded to a multiple of 4 columns;
    offs: (T4,) offsets into the packed channels of a group; count: real taps. Jobs are
    (sample, group, block of ``oblock`` outputs, part of the segments).
    """
    out_channels = w.shape[0]
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
    for job in prange(batch * groups * nob * parts):
        part = job % parts
        jb = (job // parts) % nob
        g = (job // (parts * nob)) % groups
        n = job // (parts * nob * groups)
        xs = np.empty(cg * packed, x.dtype)
        for ci in range(cg):
            _pack(x, (n * channels + g * cg + ci) * plane_in, in_size, xs, ci * packed, lo, stride, q)
        acc = np.empty(4 * longest, x.dtype)
        o_first = g * og + jb * oblock
        o_stop = min(o_first + oblock, (g + 1) * og)
        for seg in range(part * nseg // parts, (part + 1) * nseg // parts):
            d, r0, nr, c0, nc = _segment(seg, rblocks, cchunks, rows, oh_, chunk, ow_)
            length = (nr - 1) * qw + nc
            base = (d * qh + r0) * qw + c0
            ybase = (d * oh_ + r0) * ow_ + c0
            o = o_first
            while o + 4 <= o_stop:
                _correlate4(acc, length, xs, base, w, o, 0, offs, w.shape[1])
                for m in range(4):
                    _store(acc, m * length, qw, nr, nc, y, (n * out_channels + o + m) * plane_out + ybase, ow_, 1)
                o += 4
            while o < o_stop:
                _correlate1(acc, length, xs, base, w, o, 0, offs, count)
                _store(acc, 0, qw, nr, nc, y, (n * out_channels + o) * plane_out + ybase, ow_, 1)
                o += 1
    return y


@numba.njit(parallel=True, cache=True)
def input_grad(dy, out_size, out_channels, w, offs, phases, dx, in_size, lo, stride, e0, e, rows, chunk, groups,
               cblock):
    """dx (flat, N x C x in_size) from dy (flat, N x O x out_size), one stride phase at a time.

    The output gradients of a group are packed with margins (``e`` rows per dimension starting at
    index ``e0``); phase p of ``phases`` is (fd, fh, fw, a0_d, a0_h, a0_w, n_d, n_h, n_w, col, count):
    it fills dx positions ``(a0 + a)*stride + f - lo`` for a < n, from taps ``col .. col+count`` of
    the table (w: (C, T) by phase, output channel, tap; zero-padded to 4 per phase).
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
    batch = dy.size // (out_channels * plane_out)
    lo_dy = (-e0[0], -e0[1], -e0[2])
    longest = 1
    for p in range(phases.shape[0]):
        longest = max(longest, _longest_run(min(rows, phases[p, 7]), ew, phases[p, 8], chunk))
    for job in prange(batch * groups * ncb):
        jb = job % ncb
        g = (job // ncb) % groups
        n = job // (ncb * groups)
        ys = np.empty(og * packed, dy.dtype)
        for oi in range(og):
            _pack(dy, (n * out_channels + g * og + oi) * plane_out, out_size, ys, oi * packed, lo_dy, (1, 1, 1), e)
        acc = np.empty(4 * longest, dy.dtype)
        c_first = g * cg + jb * cblock
        c_stop = min(c_first + cblock, (g + 1) * cg)
        for p in range(phases.shape[0]):
            fd, fh, fw, a0d, a0h, a0w, nd, nh, nw, col, count = phases[p]
            if nd == 0 or nh == 0 or nw == 0:
                continue
            rows_p = min(rows, nh) if nw <= chunk else 1
            rblocks = (nh + rows_p - 1) // rows_p
            cchunks = (nw + chunk - 1) // chunk
            count4 = (count + 3) // 4 * 4
            for seg in range(nd * rblocks * cchunks):
                d, r0, nr, c0, nc = _segment(seg, rblocks, cchunks, rows_p, nh, chunk, nw)
                base = ((a0d + d - e0[0]) * eh + (a0h + r0 - e0[1])) * ew + (a0w + c0 - e0[2])
                i_d = (a0d + d) * stride[0] + fd - lo[0]
                i_h = (a0h + r0) * stride[1] + fh - lo[1]
                i_w = (a0w + c0) * stride[2] + fw - lo[2]
                xbase = (i_d * size_h + i_h) * size_w + i_w
                length = (nr - 1) * ew + nc
                c = c_first
                while c + 4 <= c_stop:
                    _correlate4(acc, length, ys, base, w, c, col, offs, count4)
                    for m in range(4):
                        _store(acc, m * length, ew, nr, nc, dx, (n * channels + c + m) * plane_in + xbase,
                               stride[1] * size_w, stride[2])
                    c += 4
                while c < c_stop:
                    _correlate1(acc, length, ys, base, w, c, col, offs, count)
                    _store(acc, 0, ew, nr, nc, dx, (n * channels + c) * plane_in + xbase, stride[1] * size_w,
                           stride[2])
                    c += 1
    return dx


@numba.njit(parallel=True, cache=True)
def weight_grad(x, in_size, channels, dy, out_size, out_channels, offs, count, lo, stride, q, rows, chunk, groups,
                oblock, partial):
    """partial[s] (O, T4) float64, zeroed = dot products of dy with the shifted packed x over
    slice s of the batch; their sum is the weight gradient by (input channel of the group, tap).

    Jobs are (group, block of ``oblock`` outputs, slice of the batch). (Arrays come in allocated:
    numba would turn allocation and sums here into parallel loops of their own.)
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
    for job in prange(groups * nob * splits):
        split = job % splits
        jb = (job // splits) % nob
        g = job // (splits * nob)
        xs = np.empty(cg * packed, x.dtype)
        gy = np.empty(4 * longest, x.dtype)
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
