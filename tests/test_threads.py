"""fastconv.set_num_threads: validation, round trip, and that numba and BLAS follow it."""

import os
import subprocess
import sys

import numpy as np
import pytest

import fastconv
from fastconv import _threads


@pytest.fixture(autouse=True)
def default_threads():
    yield
    fastconv.set_num_threads(None)


def test_default_is_every_available_core():
    fastconv.set_num_threads(None)
    assert fastconv.get_num_threads() == _threads.available_cores() >= 1


@pytest.mark.parametrize("n", [1, np.int64(1), "1"])
def test_round_trip(n):
    fastconv.set_num_threads(n)
    assert fastconv.get_num_threads() == 1


def test_more_than_the_cores_is_capped():
    fastconv.set_num_threads(10_000)
    assert fastconv.get_num_threads() <= max(_threads.available_cores(), int(os.environ.get("NUMBA_NUM_THREADS", 0)))


@pytest.mark.parametrize("n, error", [(0, ValueError), (-2, ValueError), (1.5, TypeError), ("two", TypeError),
                                      (True, TypeError)])
def test_invalid_counts_are_rejected(n, error):
    with pytest.raises(error, match="set_num_threads: n="):
        fastconv.set_num_threads(n)


def test_workers_follow_the_setting():
    from fastconv.algorithms import _gemm_parallel
    big = 10 * _gemm_parallel.PARALLEL_MIN_MACS
    fastconv.set_num_threads(1)
    assert _gemm_parallel.workers(big) == 1
    fastconv.set_num_threads(None)
    expected = _threads.available_cores() if _gemm_parallel._blas_controller() is not None else 1
    assert _gemm_parallel.workers(big) == expected
    assert _gemm_parallel.workers(1) == 1  # too small to share


def test_no_kernel_leaves_numba_threads_behind():
    """Kernels run on fastconv's own workers: numba's OpenMP pool (spinning after each call) never starts."""
    numba = pytest.importorskip("numba")
    from numba.np.ufunc import parallel
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 8, 20, 20)).astype(np.float32)
    for algorithm, w, groups in [("direct", rng.standard_normal((8, 2, 3, 3)), 4),
                                 ("depthwise", rng.standard_normal((8, 1, 5, 5)), 8)]:
        y = fastconv.conv2d(x, w.astype(np.float32), padding=1, groups=groups, algorithm=algorithm)
        fastconv.grad.conv2d_input(x.shape, w.astype(np.float32), y, padding=1, groups=groups, algorithm=algorithm)
        fastconv.grad.conv2d_weight(x, w.shape, y, padding=1, groups=groups, algorithm=algorithm)
    assert not parallel._is_initialized, numba.threading_layer


def test_blas_follows_the_setting():
    threadpoolctl = pytest.importorskip("threadpoolctl")
    fastconv.set_num_threads(1)
    blas = [p for p in threadpoolctl.threadpool_info() if p["user_api"] == "blas"]
    assert blas and all(p["num_threads"] == 1 for p in blas)
    fastconv.set_num_threads(None)
    blas = [p for p in threadpoolctl.threadpool_info() if p["user_api"] == "blas"]
    assert all(p["num_threads"] == _threads.available_cores() for p in blas)


def test_results_do_not_depend_on_the_thread_count():
    rng = np.random.default_rng(0)
    x, w = rng.standard_normal((2, 3, 10, 10)), rng.standard_normal((4, 3, 3, 3))
    many = fastconv.conv2d(x, w, padding=1)
    fastconv.set_num_threads(1)
    np.testing.assert_allclose(fastconv.conv2d(x, w, padding=1), many, rtol=1e-12, atol=1e-12)


def test_environment_variable_sets_the_count():
    code = "import fastconv; print(fastconv.get_num_threads())"
    env = dict(os.environ, FASTCONV_NUM_THREADS="1")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "1"
    env["FASTCONV_NUM_THREADS"] = "zero"
    bad = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert bad.returncode != 0 and "FASTCONV_NUM_THREADS" in bad.stderr
