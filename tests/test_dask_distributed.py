"""Convolution over Dask arrays on a distributed LocalCluster (2 worker processes on loopback),
including a worker killed in the middle of the computation."""

from __future__ import annotations

import os
import signal

import numpy as np
import pytest

da = pytest.importorskip("dask.array")
distributed = pytest.importorskip("distributed")

from fastconv import functional as F  # noqa: E402

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


def _die_the_first_time(block, marker):
    """Identity on ``block``, except that the first call anywhere kills its own worker process."""
    try:
        fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        return block
    os.write(fd, str(os.getpid()).encode())
    os.close(fd)
    os.kill(os.getpid(), signal.SIGKILL)


def test_killed_worker_does_not_change_the_result(client, tmp_path):
    x = RNG.standard_normal((2, 4, 64, 48))
    w = RNG.standard_normal((5, 4, 3, 3))
    marker = str(tmp_path / "killed")
    before = set(client.run(os.getpid).values())
    xd = da.from_array(x, chunks=(1, 4, 16, 16))
    # The last chunk kills its worker: by then the other worker has convolved blocks of its own
    # and the killed worker holds chunks and results, all of which the scheduler must redo.
    killer = xd.map_blocks(lambda b, block_info=None: _die_the_first_time(b, marker)
                           if block_info[0]["chunk-location"] == (1, 0, 3, 2) else b, dtype=x.dtype)
    y = client.compute(F.conv2d(killer, w, padding=1, stride=(1, 2))).result()
    np.testing.assert_allclose(y, F.conv2d(x, w, padding=1, stride=(1, 2)), rtol=1e-10, atol=1e-10)
    killed = int(open(marker).read())
    assert killed in before  # one of the original workers ran the killing task ...
    with pytest.raises(ProcessLookupError):
        os.kill(killed, 0)  # ... and is gone
    client.wait_for_workers(2)
    after = set(client.run(os.getpid).values())
    assert killed not in after and len(after) == 2  # the nanny started a replacement
