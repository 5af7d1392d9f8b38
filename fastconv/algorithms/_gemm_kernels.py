"""Compiled packing for the GEMM algorithms over 3-D spatial arrays: im2col (channel rows, or
channels-last position rows), its adjoint col2im, and a blocked batched transpose.

Callers view 1-D and 2-D convolutions as 3-D ones with leading size-1 dimensions (see
``_layout.spatial3d``), so one kernel per dtype serves every rank. Padding is handled by
bounds, never by a padded copy of the input, so negative padding (cropping) needs nothing
special. A tile covers samples ``n0 .. n0+nt`` and the flattened output positions
``l0 .. l0+lt`` of each, so the columns of a huge sample can be built a slice at a time.

The inner loops index flat arrays with unsigned offsets: numba's negative-index handling on
signed indices (and reference counting on array views) would otherwise stop vectorisation
and cost several times the copy itself.

The kernels are serial and release the GIL: the GEMM algorithms run whole tiles on several
threads at once (see ``_gemm_parallel``). Imported lazily (numba is slow to import); compiled
once per dtype and cached on disk.
"""

from __future__ import annotations

import numba
import numpy as np

from . import _simd as simd

_u = numba.uint64


@numba.njit(inline="always")
def _tap_offsets(tap, ksize, dilation, lo):
    """Offset (in unpadded input coordinates) of kernel tap ``tap`` in each spatial dimension."""
    kd = tap // (ksize[1] * ksize[2])
    kh = (tap // ksize[2]) % ksize[1]
    kw = tap % ksize[2]
    return kd * dilation[0] - lo[0], kh * dilation[1] - lo[1], kw * dilation[2] - lo[2]


@numba.njit(inline="always")
def _valid_range(off, step, size, count):
    """Outputs ``o`` in [0, count) with ``0 <= o*step + off < size``, as [first, stop)."""
    first = max(0, -(off // step))  # ceil(-off / step)
    stop = min(count, (size - 1 - off) // step + 1)
    return first, max(first, stop)


@numba.njit(inline="always")
def _gather(dst, d0, src, s0, step, count):
    """dst[d0 + u] = src[s0 + u*step] for u < count (flat arrays)."""
    d, s = _u(d0), _u(s0)
    if step == 1:
        for u in range(_u(count)):
            dst[d + u] = src[s + u]
    else:
        st = _u(step)
        for u in range(_u(count)):
            dst[d + u] = src[s + u * st]


@numba.njit(inline="always")
def _scatter(dst, d0, step, src, s0, count, add):
    """dst[d0 + u*step] += src[s0 + u] for u < count (flat arrays); = when not ``add``."""
    d, s = _u(d0), _u(s0)
    if step == 1:
        if add:
            for u in range(_u(count)):
                dst[d + u] += src[s + u]
        else:
            simd.window_copy(dst, d, src, s, 0, count, count)
    else:
        st = _u(step)
        if add:
            for u in range(_u(count)):
                dst[d + u * st] += src[s + u]
        else:
            for u in range(_u(count)):
                dst[d + u * st] = src[s + u]


@numba.njit(inline="always")
def _zero(dst, d0, count):
    """dst[d0:d0 + count] = 0 (flat; nothing when count <= 0, which most lines' margins are)."""
    if count > 0:
        simd.window_copy(dst, d0, dst, 0, 0, 0, count)


@numba.njit(inline="always")
def _line_run(line_d, line_h, ow0, remaining, off_d, off_h, w_first, w_stop, stride, in_size, out_w):
    """For the output line (line_d, line_h) from column ow0 on: the run length, and the columns
    [a, b) whose input lies inside the array, with the input row they read (flat over D, H)."""
    run = min(out_w - ow0, remaining)
    idd = line_d * stride[0] + off_d
    ih = line_h * stride[1] + off_h
    if idd < 0 or idd >= in_size[0] or ih < 0 or ih >= in_size[1]:
        return run, ow0 + run, ow0 + run, 0
    a = min(max(w_first, ow0), ow0 + run)
    b = max(min(w_stop, ow0 + run), a)
    return run, a, b, idd * in_size[1] + ih


@numba.njit(inline="always")
def _line_runs(xf, x0, size_w, cf, c0, lt, l0, off_d, off_h, w_first, w_stop, stride, in_size, out_size, adjoint,
               add=True):
    """The output positions ``l0 .. l0+lt`` of one (kernel row, sample), line by line: column ``j`` of
    ``cf`` from ``c0`` and the input they read in ``xf`` (row ``in_line`` from ``x0``). im2col
    (``adjoint`` False) copies the input into ``cf``, zero in the padding; col2im adds ``cf`` into
    ``xf`` (stores it, when not ``add``), dropping the padding."""
    out_h, out_w = out_size[1], out_size[2]
    sw = stride[2]
    first_line = l0 // out_w
    line_d, line_h = first_line // out_h, first_line % out_h
    ow0 = l0 - first_line * out_w
    j = 0
    while j < lt:
        run, a, b, in_line = _line_run(line_d, line_h, ow0, lt - j, off_d, off_h, w_first, w_stop, stride,
                                       in_size, out_w)
        base = c0 + j - ow0  # cf[base + ow] holds output column ow of this line
        if adjoint:
            if b > a:
                _scatter(xf, x0 + in_line * size_w + a * sw, sw, cf, base + a, b - a, add)
        else:
            _zero(cf, base + ow0, a - ow0)
            if b > a:
                _gather(cf, base + a, xf, x0 + in_line * size_w + a * sw, sw, b - a)
            _zero(cf, base + b, ow0 + run - b)
        j += run
        ow0 = 0
        line_h += 1
        if line_h == out_h:
            line_h = 0
            line_d += 1


@numba.njit(inline="always")
def _whole_samples(cols, row0, c0, part, per_group, n0, x, ksize, stride, dilation, lo, out_size, line):
    """im2col (``line`` one of _UNIT, _EVERY_2ND, _STRIDED: how a line of columns is read) or
    col2im (``line`` _COL2IM adding, _COL2IM_STORE storing) of a tile of whole samples: as
    :func:`_line_runs`, but every line of a (row, sample) has the same valid columns, so the line
    loops have loop-invariant bounds and compile to straight copies. Row ``row0 + r`` is (group g,
    channel k < part, tap): channel ``g * per_group + c0 + k`` of ``x``.

    Inlined into one kernel per kind of line (``line`` a constant), and each tap's offsets and
    valid ranges computed once, not per row: on the short rows of a 7x7 layer the other kinds'
    loops and the per-row integer divisions cost im2col 1.4-1.5x each."""
    adjoint = line >= _COL2IM
    rows, nt, lt = cols.shape
    channels = x.shape[1]
    size_d, size_h, size_w = x.shape[2], x.shape[3], x.shape[4]
    out_d, out_h, out_w = out_size
    sd, sh, sw = stride
    xf, cf = x.reshape(-1), cols.reshape(-1)
    taps = ksize[0] * ksize[1] * ksize[2]
    per_tap = np.empty((taps, 9), dtype=np.int64)  # offsets (d, h, w), then valid [first, stop) per dim
    for t in range(taps):
        off_d, off_h, off_w = _tap_offsets(t, ksize, dilation, lo)
        per_tap[t] = (off_d, off_h, off_w, *_valid_range(off_d, sd, size_d, out_d),
                      *_valid_range(off_h, sh, size_h, out_h), *_valid_range(off_w, sw, size_w, out_w))
    wn = _u(out_w)
    plane = out_h * out_w
    gj, t = divmod(row0, taps)
    for row in range(rows):
        g = gj // part
        c = g * per_group + c0 + gj - g * part
        off_d, off_h, off_w, d_first, d_stop, h_first, h_stop, w_first, w_stop = per_tap[t]
        wf, ws = _u(w_first), _u(w_stop)
        t += 1
        if t == taps:
            t = 0
            gj += 1
        for i in range(nt):
            d = _u((row * nt + i) * lt)
            x0 = ((n0 + i) * channels + c) * size_d * size_h * size_w + off_w
            # lines outside [d_first, d_stop) x [h_first, h_stop) read the padding: zero runs for
            # im2col, nothing for col2im; no branches in the line loops (they cost 7x7 layers 2x)
            if not adjoint:
                _zero(cf, d, d_first * plane)
            d += _u(d_first * plane)
            for od in range(d_first, d_stop):
                if not adjoint:
                    _zero(cf, d, h_first * out_w)
                d += _u(h_first) * wn
                s = _u(x0 + ((od * sd + off_d) * size_h + h_first * sh + off_h) * size_w)
                step = _u(sh * size_w)
                if adjoint:  # ``line`` is a constant: the branch below folds away
                    for _ in range(h_first, h_stop):
                        for ow in range(wf, ws):
                            if line == _COL2IM:
                                xf[s + ow * _u(sw)] += cf[d + ow]
                            else:
                                xf[s + ow * _u(sw)] = cf[d + ow]
                        s += step
                        d += wn
                elif line == _UNIT:
                    for _ in range(h_first, h_stop):
                        simd.window_copy(cf, d, xf, s, w_first, w_stop, out_w)
                        s += step
                        d += wn
                elif line == _EVERY_2ND:  # the even phase of the row, by shuffles
                    for _ in range(h_first, h_stop):
                        simd.every_2nd(cf, (d, 0, 0, 0, 0, 0), xf, (s, 0, 0, 0, 0, 0), out_w, 2 * w_first,
                                       2 * w_stop - 1)
                        s += step
                        d += wn
                else:
                    for _ in range(h_first, h_stop):
                        _zero(cf, d, w_first)
                        for ow in range(wf, ws):
                            cf[d + ow] = xf[s + ow * _u(sw)]
                        _zero(cf, d + ws, out_w - w_stop)
                        s += step
                        d += wn
                if not adjoint:
                    _zero(cf, d, (out_h - h_stop) * out_w)
                d += _u(out_h - h_stop) * wn
            if not adjoint:
                _zero(cf, d, (out_d - d_stop) * plane)


@numba.njit(inline="always")
def _lines_inner(x, ksize, stride, dilation, lo, out_size):  # pragma: no cover - compiled
    """A view whose middle dimension is trivial (a 2-D layer's (H, 1, W)) as (1, H, W), so that
    :func:`_whole_samples` runs its lines in the inner loop (same tap order); others as they are."""
    if x.shape[3] == 1 and ksize[1] == 1 and out_size[1] == 1 and lo[1] == 0:
        return (x.reshape(x.shape[0], x.shape[1], 1, x.shape[2], x.shape[4]), (1, ksize[0], ksize[2]),
                (1, stride[0], stride[2]), (1, dilation[0], dilation[2]), (0, lo[0], lo[2]),
                (1, out_size[0], out_size[2]))
    return x, ksize, stride, dilation, lo, out_size


#: Kinds of line of :func:`_whole_samples`: im2col reading every input column, every other one,
#: or any stride; col2im adding, or storing (windows that never overlap and cover the input).
_UNIT, _EVERY_2ND, _STRIDED, _COL2IM, _COL2IM_STORE = 0, 1, 2, 3, 4


def _whole_samples_kernel(line):
    """The compiled :func:`_whole_samples` for one kind of line, the 2-D view's lines innermost."""
    @numba.njit(nogil=True, cache=True)
    def kernel(x, cols, row0, c0, part, per_group, n0, ksize, stride, dilation, lo, out_size):  # pragma: no cover
        x, ksize, stride, dilation, lo, out_size = _lines_inner(x, ksize, stride, dilation, lo, out_size)
        _whole_samples(cols, row0, c0, part, per_group, n0, x, ksize, stride, dilation, lo, out_size, line)
    return kernel


_im2col_unit, _im2col_every_2nd, _im2col_strided, _col2im_samples, _col2im_store_samples = (
    _whole_samples_kernel(line) for line in (_UNIT, _EVERY_2ND, _STRIDED, _COL2IM, _COL2IM_STORE))


@numba.njit(nogil=True, cache=True)
def _im2col_samples(x, cols, row0, n0, ksize, stride, dilation, lo, out_size):  # pragma: no cover - compiled
    args = (x, cols, row0, 0, x.shape[1], x.shape[1], n0, ksize, stride, dilation, lo, out_size)
    if stride[2] == 1:
        _im2col_unit(*args)
    elif stride[2] == 2:
        _im2col_every_2nd(*args)
    else:
        _im2col_strided(*args)


@numba.njit(nogil=True, cache=True)
def im2col(x, cols, row0, n0, l0, ksize, stride, dilation, lo, out_size):
    """Fill ``cols[r, i, j]`` with the input that kernel tap ``tap`` of channel ``c``, where
    ``row0 + r = c*taps + tap``, meets at output position ``l0 + j`` of sample ``n0 + i`` (zero where
    it falls in the padding): rows ``row0 ..`` of the im2col matrix.

    x: (N, C, D, H, W) C-contiguous; cols: (rows, nt, lt) C-contiguous, rows <= C * taps - row0.
    """
    rows, nt, lt = cols.shape
    channels = x.shape[1]
    in_size = (x.shape[2], x.shape[3])
    size_w = x.shape[4]
    plane = in_size[0] * in_size[1] * size_w
    if l0 == 0 and lt == out_size[0] * out_size[1] * out_size[2]:
        _im2col_samples(x, cols, row0, n0, ksize, stride, dilation, lo, out_size)
        return
    xf, cf = x.reshape(-1), cols.reshape(-1)
    taps = ksize[0] * ksize[1] * ksize[2]
    for row in range(rows):
        c = (row0 + row) // taps
        off_d, off_h, off_w = _tap_offsets(row0 + row - c * taps, ksize, dilation, lo)
        w_first, w_stop = _valid_range(off_w, stride[2], size_w, out_size[2])
        for i in range(nt):
            _line_runs(xf, ((n0 + i) * channels + c) * plane + off_w, size_w, cf, (row * nt + i) * lt, lt, l0,
                       off_d, off_h, w_first, w_stop, stride, in_size, out_size, False)


@numba.njit(nogil=True, cache=True)
def col2im(cols, dx, c0, part, n0, l0, ksize, stride, dilation, lo, out_size, add):
    """Adjoint of :func:`im2col` for channels ``c0 .. c0+part`` of every group: ``dx[n0 + i, c, ...] +=
    cols[(g, k, tap), i, j]`` (channel ``c = g*(C/G) + c0 + k``) at the input position tap ``tap`` of
    output position ``l0 + j`` reads; entries falling in the padding are dropped. dx C-contiguous.
    Not ``add``: stored (=), for windows that never overlap, where dx then needs no zeroing first.

    Threads that own different channels never write the same element.
    """
    rows, nt, lt = cols.shape
    taps = ksize[0] * ksize[1] * ksize[2]
    per_group = dx.shape[1] * part * taps // rows  # channels per group of dx
    in_size = (dx.shape[2], dx.shape[3])
    size_w = dx.shape[4]
    plane = in_size[0] * in_size[1] * size_w
    if l0 == 0 and lt == out_size[0] * out_size[1] * out_size[2]:
        if add:
            _col2im_samples(dx, cols, 0, c0, part, per_group, n0, ksize, stride, dilation, lo, out_size)
        else:
            _col2im_store_samples(dx, cols, 0, c0, part, per_group, n0, ksize, stride, dilation, lo, out_size)
        return
    xf, cf = dx.reshape(-1), cols.reshape(-1)
    for row in range(rows):
        gj = row // taps
        tap = row - gj * taps
        g = gj // part
        c = g * per_group + c0 + gj - g * part
        off_d, off_h, off_w = _tap_offsets(tap, ksize, dilation, lo)
        w_first, w_stop = _valid_range(off_w, stride[2], size_w, out_size[2])
        for i in range(nt):
            _line_runs(xf, ((n0 + i) * dx.shape[1] + c) * plane + off_w, size_w, cf, (row * nt + i) * lt, lt, l0,
                       off_d, off_h, w_first, w_stop, stride, in_size, out_size, True, add)


@numba.njit(nogil=True, cache=True)
def im2col_channels_last(xcl, cols, d0, l0, groups, in_size, ksize, stride, dilation, lo, out_size):
    """Fill row ``i*lt + j`` of ``cols`` with the receptive field of output position ``l0 + j`` of
    sample ``i``, ordered (group, kd, kh, kw, channel of the group); zero in the padding.

    xcl: (nt, planes, H, W, C) C-contiguous, channels last, holding input planes ``d0 ..`` of the
    tile's samples; cols: (nt * lt, taps * C) C-contiguous. Each (kd, kh) of a group-less,
    undilated row is one contiguous run of ``kw * C`` inputs.
    """
    rows, width = cols.shape
    nt, planes, size_h, size_w, channels = xcl.shape
    lt = rows // nt
    per_group = channels // groups
    kd_n, kh_n, kw_n = ksize
    out_h, out_w = out_size[1], out_size[2]
    sample = planes * size_h * size_w * channels
    runs = groups == 1 and dilation[2] == 1
    xf, cf = xcl.reshape(-1), cols.reshape(-1)
    p, i, j = 0, 0, 0  # row of cols, sample, position within the tile
    while p < rows:
        line = (l0 + j) // out_w
        ow0 = l0 + j - line * out_w
        od = line // out_h
        oh = line - od * out_h
        seg = min(out_w - ow0, lt - j)
        for ow in range(ow0, ow0 + seg):
            dst = (p + ow - ow0) * width
            base_w = ow * stride[2] - lo[2]
            for g in range(groups):
                for kd in range(kd_n):
                    idd = od * stride[0] + kd * dilation[0] - lo[0]
                    for kh in range(kh_n):
                        ih = oh * stride[1] + kh * dilation[1] - lo[1]
                        if idd < 0 or idd >= in_size[0] or ih < 0 or ih >= size_h:
                            _zero(cf, dst, kw_n * per_group)
                        else:
                            src = i * sample + (((idd - d0) * size_h + ih) * size_w) * channels + g * per_group
                            if runs:
                                first = min(max(0, -base_w), kw_n)
                                stop = max(min(kw_n, size_w - base_w), first)
                                _zero(cf, dst, first * channels)
                                _gather(cf, dst + first * channels, xf, src + (base_w + first) * channels, 1,
                                        (stop - first) * channels)
                                _zero(cf, dst + stop * channels, (kw_n - stop) * channels)
                            else:
                                for kw in range(kw_n):
                                    iw = base_w + kw * dilation[2]
                                    if 0 <= iw < size_w:
                                        _gather(cf, dst + kw * per_group, xf, src + iw * channels, 1, per_group)
                                    else:
                                        _zero(cf, dst + kw * per_group, per_group)
                        dst += kw_n * per_group
        p += seg
        j += seg
        if j == lt:
            j = 0
            i += 1


@numba.njit(nogil=True, cache=True)
def transpose(src, dst, count, rows, cols, src_off, src_batch, src_ld, dst_off, dst_batch, dst_ld):
    """``dst[dst_off + b*dst_batch + c*dst_ld + r] = src[src_off + b*src_batch + r*src_ld + c]`` for
    b < count, r < rows, c < cols, over the flat (C-contiguous) arrays, in cache-sized blocks."""
    sf, df = src.reshape(-1), dst.reshape(-1)
    block = 32
    for b in range(count):
        s = src_off + b * src_batch
        d = dst_off + b * dst_batch
        for r0 in range(0, rows, block):
            for c0 in range(0, cols, block):
                for c in range(c0, min(cols, c0 + block)):
                    _gather(df, d + c * dst_ld + r0, sf, s + r0 * src_ld + c, src_ld, min(rows, r0 + block) - r0)


@numba.njit(nogil=True, cache=True)
def spread_phases(w, stacked, taps):
    """``stacked[o, m, c, r] = w[o, c, taps[m, r]]`` (zero where ``taps`` is -1): the flipped phase
    sub-kernels of a transposed convolution (see ``subpixel``). w: (O, Cg, K) and stacked:
    (O, offsets, Cg, phases), C-contiguous; written in order, each (o, c) row of K taps read
    from L1 (phases apart: strided stores ran hifigan's 2 MB at ~3 GB/s)."""
    out, cg, k = w.shape
    offsets, phases = taps.shape
    wf, sf = w.reshape(-1), stacked.reshape(-1)
    dst = _u(0)
    for o in range(out):
        for m in range(offsets):
            for c in range(cg):
                src = _u((o * cg + c) * k)
                for r in range(phases):
                    t = taps[m, r]
                    sf[dst] = wf[src + _u(t)] if t >= 0 else 0
                    dst += _u(1)
