"""The LLVM shuffle intrinsics between a row and its stride phases (``algorithms/_simd.py``):
exact element moves for every dtype, for counts below, at and above a vector's width (the masked
tail), never touching memory outside the given ranges."""

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
    def split_row(dst, d_offs, src, start, count):
        split(dst, d_offs, src, (start, 0, 0, 0, 0, 0), count)

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
    split_row(phases, offsets, row, start, count)
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
