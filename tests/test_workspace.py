"""Scratch kept between calls (``fastconv._workspace``): reused, capped by the workspace budget,
released on demand, and safe when several threads convolve at once."""

from __future__ import annotations

import threading

import numpy as np
import pytest

import fastconv
from fastconv import _config, _workspace
from fastconv.algorithms._layout import Scratch

MB = 2**20


@pytest.fixture(autouse=True)
def empty_pool():
    saved = _config.workspace_bytes
    fastconv.release_workspace()
    yield
    _config.workspace_bytes = saved
    fastconv.release_workspace()


def test_a_buffer_given_back_serves_the_next_call():
    first = _workspace.take(3 * MB)
    _workspace.give_back(first)
    assert _workspace.held_bytes() == first.nbytes
    again = _workspace.take(3 * MB - 1000)
    assert again is first and _workspace.held_bytes() == 0


def test_small_requests_and_much_larger_buffers_are_not_shared():
    small = _workspace.take(1000)
    _workspace.give_back(small)
    assert _workspace.held_bytes() == 0  # malloc's heap serves these without page faults
    big = _workspace.take(8 * MB)
    _workspace.give_back(big)
    assert _workspace.take(MB) is not big  # a small need does not pin a large buffer
    assert _workspace.held_bytes() == big.nbytes


def test_held_buffers_stay_within_the_workspace_budget():
    fastconv.set_workspace_limit(5)
    buffers = [_workspace.take(2 * MB) for _ in range(4)]
    for b in buffers:
        _workspace.give_back(b)
    assert _workspace.held_bytes() == 4 * MB  # the oldest dropped beyond 5 MiB
    fastconv.set_workspace_limit(2)
    assert _workspace.held_bytes() == 2 * MB
    fastconv.release_workspace()
    assert _workspace.held_bytes() == 0


def test_scratch_views_are_typed_and_given_back():
    with Scratch(np.complex128) as scratch:
        a = scratch.get("cols", (300, 200))
        assert a.dtype == np.complex128 and a.shape == (300, 200) and a.flags.c_contiguous
        acc = scratch.accumulator("sum", (3, 4))
        acc += 1
    assert _workspace.held_bytes() >= a.nbytes
    np.testing.assert_array_equal(scratch.accumulator("sum", (3, 4)), np.ones((3, 4)))  # kept by the caller


@pytest.mark.parametrize("algorithm", ["gemm", "winograd2", "subpixel"])
def test_reused_buffers_change_no_result_even_with_threads_convolving_at_once(algorithm):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 64, 32, 32)).astype(np.float32)
    w = rng.standard_normal((64, 64, 3, 3)).astype(np.float32)
    if algorithm == "subpixel":
        def call(a):
            return fastconv.conv_transpose2d(a, w, stride=2, padding=1, algorithm=algorithm)
    else:
        def call(a):
            return fastconv.conv2d(a, w, padding=1, algorithm=algorithm)
    inputs = [x * (k + 1) for k in range(4)]
    expected = [call(a) for a in inputs]
    assert _workspace.held_bytes() > 0
    results: dict[int, list[np.ndarray]] = {}

    def worker(k):
        results[k] = [call(inputs[k]) for _ in range(5)]

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for k in range(4):
        for r in results[k]:
            np.testing.assert_array_equal(r, expected[k])
