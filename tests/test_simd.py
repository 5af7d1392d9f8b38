"""The LLVM shuffle intrinsics between a row and its stride phases (``algorithms/_simd.py``):
exact element moves for every dtype, for counts below, at and above a vector's width (the masked
tail), never touching memory outside the given ranges; the split's window (zeros outside it,
nothing read there) and the im2col line copy (``window_copy``)."""

from __future__ import annotations

import numba
import numpy as np
import pytest

from fastconv.algorithms import _simd as simd

SPLIT = {2: simd.split_2, 4: simd.split_4}
MERGE = {2: simd.merge_2, 4: simd.merge_4}


def _kernels(m):
    split, merge = SPLIT[m], MERGE[m]

    @numba.njit
    def split_row(dst, d_offs, src, start, count, lo, hi):
        split(dst, d_offs, src, (start, 0, 0, 0, 0, 0), count, lo, hi)

    @numba.njit
    def merge_row(dst, start, src, s_offs, count):
        merge(dst, (start, 0, 0, 0, 0, 0), src, s_offs, count)

    return split_row, merge_row


@pytest.mark.parametrize("m", [2, 4])
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.complex64, np.complex128])
@pytest.mark.parametrize("count", [0, 1, 7, 8, 15, 16, 17, 40])
def test_split_then_merge_moves_exactly_the_row(m, dtype, count):
    split_row, merge_row = _kernels(m)
    start, gap = 3, 50  # phases 50 elements apart in dst, with sentinels around every range
    row = (np.arange(4 * 50 + 10) + 1).astype(dtype)
    if np.dtype(dtype).kind == "c":
        row = row + 1j * row[::-1]
    offsets = tuple(q * gap + 1 for q in range(m)) + (0,) * (6 - m)
    phases = np.full(m * gap + 2, -7, dtype=dtype)
    split_row(phases, offsets, row, start, count, 0, m * count)
    for q in range(m):
        np.testing.assert_array_equal(phases[offsets[q]:offsets[q] + count], row[start + q::m][:count])
    written = np.zeros(phases.size, dtype=bool)
    for q in range(m):
        written[offsets[q]:offsets[q] + count] = True
    assert np.all(phases[~written] == -7), "split wrote outside the phases"

    back = np.full(row.size, -7, dtype=dtype)
    merge_row(back, start, phases, offsets, count)
    np.testing.assert_array_equal(back[start:start + m * count], row[start:start + m * count])
    assert np.all(back[:start] == -7) and np.all(back[start + m * count:] == -7), "merge wrote outside the row"


@pytest.mark.parametrize("m", [2, 4])
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.complex64, np.complex128])
@pytest.mark.parametrize("count, lo, hi", [(9, 3, 17), (20, 5, 5), (20, 0, 80), (3, -4, 2), (40, 7, 200)])
def test_split_reads_only_its_window(m, dtype, count, lo, hi):
    """Row elements e = j*m + q outside [lo, hi) come out zero, also where the row starts before
    the array (the padding of a first row): only the window is read."""
    split_row, _ = _kernels(m)
    source = (np.arange(m * count + 8) + 1).astype(dtype)
    start = -3  # the row's element e is source[e - 3]: its first elements lie before the array
    lo, hi = max(lo, 3), min(hi, source.size + 3)
    offsets = tuple(q * count for q in range(m)) + (0,) * (6 - m)
    phases = np.full(m * count, -7, dtype=dtype)
    split_row(phases, offsets, source, start, count, lo, hi)
    for q in range(m):
        e = np.arange(count) * m + q
        expected = np.where((e >= lo) & (e < hi), source[np.clip(e + start, 0, source.size - 1)], 0)
        np.testing.assert_array_equal(phases[q * count:(q + 1) * count], expected)


@numba.njit
def _window_copy(dst, d0, src, s0, lo, hi, count):
    simd.window_copy(dst, d0, src, s0, lo, hi, count)


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.complex128])
@pytest.mark.parametrize("count, lo, hi", [(7, 1, 6), (7, 0, 0), (16, 1, 16), (33, 2, 30), (5, 1, 5)])
def test_window_copy_pads_a_line(dtype, count, lo, hi):
    """dst[d0 + q] = src[s0 + q] inside [lo, hi), zero for the rest of the count, nothing beyond it;
    s0 = -1 puts q = 0 before src, which the window (lo >= 1) never reads."""
    src = (np.arange(count + 4) + 1).astype(dtype)
    dst = np.full(count + 6, -7, dtype=dtype)
    _window_copy(dst, 2, src, -1, lo, hi, count)  # src[s0 + q] with s0 = -1: q = 0 lies before src
    q = np.arange(count)
    expected = np.where((q >= lo) & (q < hi), src[np.clip(q - 1, 0, None)], 0)
    np.testing.assert_array_equal(dst[2:2 + count], expected)
    assert np.all(dst[:2] == -7) and np.all(dst[2 + count:] == -7), "window_copy wrote outside its count"


@numba.njit
def _every_2nd(dst, d0, src, s0, count, lo, hi):
    simd.every_2nd(dst, (d0, 0, 0, 0, 0, 0), src, (s0, 0, 0, 0, 0, 0), count, lo, hi)


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.complex64])
@pytest.mark.parametrize("count, lo, hi", [(7, 2, 13), (16, 2, 31), (20, 4, 4), (33, 2, 50)])
def test_every_2nd_is_the_even_phase_alone(dtype, count, lo, hi):
    """The stride-2 line of im2col: dst[d0 + j] = src[s0 + 2j] inside the window, zero outside it,
    nothing written beyond the count (no odd phase)."""
    src = (np.arange(2 * count + 4) + 1).astype(dtype)
    dst = np.full(count + 4, -7, dtype=dtype)
    _every_2nd(dst, 1, src, -2, count, lo, hi)  # element e is src[e - 2]; the window starts at 2 or later
    e = 2 * np.arange(count)
    expected = np.where((e >= lo) & (e < hi), src[np.clip(e - 2, 0, src.size - 1)], 0)
    np.testing.assert_array_equal(dst[1:1 + count], expected)
    assert dst[0] == -7 and np.all(dst[1 + count:] == -7), "every_2nd wrote outside its count"


@numba.njit
def _transpose(dst, d0, d_pitch, src, s0, s_pitch, rows, cols, width):
    simd.transpose(dst, d0, d_pitch, src, s0, s_pitch, rows, cols, width)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("rows, cols, width", [(16, 16, 16), (8, 8, 8), (3, 5, 16), (16, 7, 4), (0, 8, 8),
                                               (5, 0, 8), (1, 1, 1)])
def test_transpose_moves_a_square_and_reads_only_its_rows_and_columns(dtype, rows, cols, width):
    lanes = 64 // np.dtype(dtype).itemsize
    rows, cols, width = min(rows, lanes), min(cols, lanes), min(width, lanes)
    s_pitch, d_pitch, s0, d0 = 30, 40, 3, 7
    # the source ends right after the last element the call may read: a read beyond it would fault or
    # (with numba's unchecked access) show up as garbage, so rows >= rows must really be skipped
    src = (np.arange(s0 + max(rows - 1, 0) * s_pitch + cols) + 1).astype(dtype)
    dst = np.full(d0 + lanes * d_pitch + lanes, -7, dtype=dtype)
    _transpose(dst, d0, d_pitch, src, s0, s_pitch, rows, cols, width)
    expected = np.full_like(dst, -7)
    for c in range(cols):
        for r in range(width):
            expected[d0 + c * d_pitch + r] = src[s0 + r * s_pitch + c] if r < rows else 0
    np.testing.assert_array_equal(dst, expected)
