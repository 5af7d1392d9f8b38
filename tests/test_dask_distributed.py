"""Convolution over Dask arrays on a distributed LocalCluster (2 worker processes on loopback),
including a worker killed in the middle of the computation."""

from __future__ import annotations

import os
import signal
import sys

import numpy as np
import pytest

da = pytest.importorskip("dask.array")
distributed = pytest.importorskip("distributed")
cloudpickle = pytest.importorskip("cloudpickle")

from fastconv import functional as F  # noqa: E402

# the workers unpickle this module's functions by value, whatever name pytest imported it under
cloudpickle.register_pickle_by_value(sys.modules[__name__])

RNG = np.random.default_rng(11)


@pytest.fixture(scope="module")
def client():
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                                  dashboard_address=None, memory_limit="1GB") as cluster, \
            distributed.Client(cluster) as c:
        yield c


def test_forward_and_transposed_match_numpy(client):
    x = RNG.standard_normal((4, 6, 23, 19))
    w = RNG.standard_normal((8, 3, 3, 3))
    wt = RNG.standard_normal((6, 4, 3, 2))
    b = RNG.standard_normal(8)
    xd = da.from_array(x, chunks=(2, 3, (5, 11, 7), 4))
    kw = dict(stride=(2, 1), padding=((2, 0), (1, 3)), dilation=(1, 2), groups=2)
    np.testing.assert_allclose(client.compute(F.conv2d(xd, w, b, **kw)).result(), F.conv2d(x, w, b, **kw),
                               rtol=1e-10, atol=1e-10)
    kwt = dict(stride=(3, 2), padding=1, output_padding=(2, 1), groups=2)
    np.testing.assert_allclose(client.compute(F.conv_transpose2d(xd, wt, **kwt)).result(),
                               F.conv_transpose2d(x, wt, **kwt), rtol=1e-10, atol=1e-10)


def _count_then_die_halfway(block, log, marker, total):
    """Identity on a result block that logs it; the first call to find half the blocks logged kills
    its own worker process (once: the marker file is created atomically)."""
    with open(log, "a") as f:
        f.write("block\n")
    with open(log) as f:
        done = sum(1 for _ in f)
    if done >= total // 2:
        try:
            fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            return block
        os.write(fd, f"{os.getpid()} {done}".encode())
        os.close(fd)
        os.kill(os.getpid(), signal.SIGKILL)
    return block


def test_killed_worker_does_not_change_the_result(client, tmp_path):
    x = RNG.standard_normal((2, 4, 64, 48))
    w = RNG.standard_normal((5, 4, 3, 3))
    log, marker = str(tmp_path / "log"), str(tmp_path / "killed")
    before = set(client.run(os.getpid).values())
    y = F.conv2d(da.from_array(x, chunks=(1, 4, 16, 16)), w, padding=1, stride=(1, 2))
    # Half-way through the convolution a worker dies with the result blocks it holds; the scheduler
    # must recompute them (and what they came from) on the survivor and the replacement.
    watched = y.map_blocks(_count_then_die_halfway, log=log, marker=marker, total=y.npartitions, dtype=y.dtype)
    np.testing.assert_allclose(client.compute(watched).result(), F.conv2d(x, w, padding=1, stride=(1, 2)),
                               rtol=1e-10, atol=1e-10)
    killed, done = (int(v) for v in open(marker).read().split())
    assert killed in before and y.npartitions // 2 <= done < y.npartitions  # one of ours, mid-way
    with pytest.raises(ProcessLookupError):
        os.kill(killed, 0)  # ... and it is gone
    client.wait_for_workers(2)
    after = set(client.run(os.getpid).values())
    assert killed not in after and len(after) == 2  # the nanny started a replacement
