"""Compiled packing for the GEMM algorithms: im2col and its adjoint col2im, over 3-D spatial arrays.

Callers view 1-D and 2-D convolutions as 3-D ones with leading size-1 dimensions (see
``_layout.spatial3d``), so one kernel per dtype serves every rank. Padding is handled by
bounds, never by a padded copy of the input, so negative padding (cropping) needs nothing
special. A tile covers samples ``n0 .. n0+nt`` and the flattened output positions
``l0 .. l0+lt`` of each, so the columns of a huge sample can be built a slice at a time.

Imported lazily (numba is slow to import); compiled once per dtype and cached on disk.
"""

from __future__ import annotations

import numba
from numba import prange


@numba.njit(inline="always")
def _tap_offsets(tap, ksize, dilation, lo):
    """Offset (in unpadded input coordinates) of kernel tap ``tap`` in each spatial dimension."""
    kh_kw = ksize[1] * ksize[2]
    kd = tap // kh_kw
    kh = (tap // ksize[2]) % ksize[1]
    kw = tap % ksize[2]
    return kd * dilation[0] - lo[0], kh * dilation[1] - lo[1], kw * dilation[2] - lo[2]


@numba.njit(inline="always")
def _valid_range(off, step, size, count):
    """Outputs ``o`` in [0, count) with ``0 <= o*step + off < size``, as [first, stop)."""
    first = max(0, -(off // step))  # ceil(-off / step)
    stop = min(count, (size - 1 - off) // step + 1)
    return first, max(first, stop)


@numba.njit(parallel=True, cache=True)
def im2col(x, cols, n0, l0, ksize, stride, dilation, lo, out_size):
    """Fill ``cols[(c, tap), i, j]`` with the input that kernel tap ``tap`` of channel ``c`` meets at
    output position ``l0 + j`` of sample ``n0 + i`` (zero where it falls in the padding).

    x: (N, C, D, H, W) C-contiguous; cols: (C * taps, nt, lt) C-contiguous.
    """
    rows, nt, lt = cols.shape
    taps = ksize[0] * ksize[1] * ksize[2]
    size_d, size_h, size_w = x.shape[2], x.shape[3], x.shape[4]
    out_h, out_w = out_size[1], out_size[2]
    sw = stride[2]
    for row in prange(rows):
        c = row // taps
        off_d, off_h, off_w = _tap_offsets(row - c * taps, ksize, dilation, lo)
        w_first, w_stop = _valid_range(off_w, sw, size_w, out_w)
        for i in range(nt):
            dst = cols[row, i]
            j = 0
            while j < lt:
                line = (l0 + j) // out_w  # index of the output line (od, oh)
                ow0 = l0 + j - line * out_w
                run = min(out_w - ow0, lt - j)
                od = line // out_h
                ih = (line - od * out_h) * stride[1] + off_h
                idd = od * stride[0] + off_d
                a = min(max(w_first, ow0), ow0 + run)
                b = max(min(w_stop, ow0 + run), a)
                if idd < 0 or idd >= size_d or ih < 0 or ih >= size_h:
                    a = b = ow0 + run
                for u in range(j, j + a - ow0):
                    dst[u] = 0
                if b > a:
                    src = x[n0 + i, c, idd, ih]
                    base = j - ow0
                    if sw == 1:
                        for ow in range(a, b):
                            dst[base + ow] = src[ow + off_w]
                    else:
                        for ow in range(a, b):
                            dst[base + ow] = src[ow * sw + off_w]
                for u in range(j + b - ow0, j + run):
                    dst[u] = 0
                j += run


@numba.njit(parallel=True, cache=True)
def col2im_add(cols, dx, n0, l0, ksize, stride, dilation, lo, out_size):
    """Adjoint of :func:`im2col`: ``dx[n0 + i, c, ...] += cols[(c, tap), i, j]`` at the input position
    tap ``tap`` of output position ``l0 + j`` reads (entries falling in the padding are dropped).

    Parallel over channels, so no two threads write the same element.
    """
    rows, nt, lt = cols.shape
    channels = dx.shape[1]
    taps = rows // channels
    size_d, size_h, size_w = dx.shape[2], dx.shape[3], dx.shape[4]
    out_h, out_w = out_size[1], out_size[2]
    sw = stride[2]
    for c in prange(channels):
        for tap in range(taps):
            row = c * taps + tap
            off_d, off_h, off_w = _tap_offsets(tap, ksize, dilation, lo)
            w_first, w_stop = _valid_range(off_w, sw, size_w, out_w)
            for i in range(nt):
                src = cols[row, i]
                j = 0
                while j < lt:
                    line = (l0 + j) // out_w
                    ow0 = l0 + j - line * out_w
                    run = min(out_w - ow0, lt - j)
                    od = line // out_h
                    ih = (line - od * out_h) * stride[1] + off_h
                    idd = od * stride[0] + off_d
                    a = min(max(w_first, ow0), ow0 + run)
                    b = max(min(w_stop, ow0 + run), a)
                    if b > a and 0 <= idd < size_d and 0 <= ih < size_h:
                        dst = dx[n0 + i, c, idd, ih]
                        base = j - ow0
                        if sw == 1:
                            for ow in range(a, b):
                                dst[ow + off_w] += src[base + ow]
                        else:
                            for ow in range(a, b):
                                dst[ow * sw + off_w] += src[base + ow]
                    j += run
