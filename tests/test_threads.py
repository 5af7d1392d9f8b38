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


def test_numba_follows_the_setting():
    numba = pytest.importorskip("numba")
    fastconv.set_num_threads(1)
    assert numba.get_num_threads() == 1
    numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)  # e.g. another library changed it
    x, w = np.ones((1, 2, 6, 6), np.float32), np.ones((3, 2, 3, 3), np.float32)
    fastconv.conv2d(x, w)  # every planned call re-applies it
    assert numba.get_num_threads() == 1


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
