"""Convolution over Dask arrays equals the NumPy result for every chunking (synchronous scheduler)."""

from __future__ import annotations

import pickle
import subprocess
import sys

import numpy as np
import pytest

da = pytest.importorskip("dask.array")
dask = pytest.importorskip("dask")

from fastconv import functional as F  # noqa: E402

RNG = np.random.default_rng(5)

# (spatial size, chunks of the spatial dims): batch-only, spatial, uneven, smaller than the halo
CHUNKINGS_2D = {
    "batch-only": ((11, 13), (11, 13)),
    "spatial": ((11, 13), (4, 5)),
    "uneven": ((11, 13), ((2, 6, 3), (7, 1, 5))),
    "smaller-than-halo": ((11, 13), (1, 2)),
}

FORWARD_2D = {
    "plain": dict(),
    "stride-not-dividing": dict(stride=(3, 2), padding=1),
    "dilation-not-dividing": dict(dilation=(3, 2), padding=2),
    "stride+dilation": dict(stride=2, dilation=3, padding=(4, 1)),
    "same-even-kernel": dict(padding="same", dilation=(2, 1)),
    "valid": dict(padding="valid"),
    "asymmetric": dict(padding=((0, 3), (2, 0)), stride=(2, 3)),
    "groups+bias": dict(groups=2, padding=1, bias=True),
    "padding-beyond-kernel": dict(padding=((6, 1), (0, 7)), stride=(3, 1)),
    "reflect": dict(padding=2, padding_mode="reflect"),
    "replicate": dict(padding=(3, 1), padding_mode="replicate", stride=2),
    "circular": dict(padding=2, padding_mode="circular", groups=2),
}

TRANSPOSE_2D = {
    "plain": dict(),
    "stride": dict(stride=(2, 3)),
    "stride+padding+output-padding": dict(stride=3, padding=(1, 2), output_padding=(2, 1)),
    "dilation": dict(dilation=(2, 3), padding=1),
    "output-padding-below-dilation": dict(stride=2, dilation=3, output_padding=2),
    "stride-above-kernel": dict(stride=(5, 4), padding=(1, 0)),
    "groups+bias": dict(groups=2, stride=2, bias=True),
}


def _arrays(nd, size, c_in, c_out, kernel, groups, transposed, dtype=np.float64):
    x = RNG.standard_normal((3, c_in, *size)).astype(dtype)
    shape = (c_in, c_out // groups, *kernel) if transposed else (c_out, c_in // groups, *kernel)
    return x, RNG.standard_normal(shape).astype(dtype), RNG.standard_normal(c_out).astype(dtype)


def _check(lazy, expected, rtol=1e-10):
    assert isinstance(lazy, da.Array)
    assert lazy.shape == expected.shape and lazy.dtype == expected.dtype
    got = lazy.compute(scheduler="sync")
    scale = float(np.abs(expected).max(initial=1.0))
    np.testing.assert_allclose(got, expected, rtol=rtol, atol=rtol * scale)


def _call(function, x, w, b, params):
    params = dict(params)
    use_bias = params.pop("bias", False)
    return function(x, w, b if use_bias else None, **params)


@pytest.mark.parametrize("chunking", CHUNKINGS_2D)
@pytest.mark.parametrize("case", FORWARD_2D)
def test_conv2d_parity_across_chunkings(chunking, case):
    size, chunks = CHUNKINGS_2D[chunking]
    x, w, b = _arrays(2, size, 4, 6, (3, 4), FORWARD_2D[case].get("groups", 1), False)
    xd = da.from_array(x, chunks=(2, 4, *chunks))
    _check(_call(F.conv2d, xd, w, b, FORWARD_2D[case]), _call(F.conv2d, x, w, b, FORWARD_2D[case]))


@pytest.mark.parametrize("chunking", CHUNKINGS_2D)
@pytest.mark.parametrize("case", TRANSPOSE_2D)
def test_conv_transpose2d_parity_across_chunkings(chunking, case):
    size, chunks = CHUNKINGS_2D[chunking]
    x, w, b = _arrays(2, size, 4, 6, (3, 2), TRANSPOSE_2D[case].get("groups", 1), True)
    xd = da.from_array(x, chunks=(1, 4, *chunks))
    _check(_call(F.conv_transpose2d, xd, w, b, TRANSPOSE_2D[case]),
           _call(F.conv_transpose2d, x, w, b, TRANSPOSE_2D[case]))


@pytest.mark.parametrize("transposed", [False, True])
@pytest.mark.parametrize("nd, chunks", [(1, ((3, 1, 9, 4),)), (3, (3, (2, 5), 4)), (4, (2, 3, (1, 4), 5))])
def test_other_dimensions(nd, chunks, transposed):
    size = (17, 7, 5, 5)[:nd]
    x, w, b = _arrays(nd, size, 2, 4, (3, 2, 3, 2)[:nd], 1, transposed)
    params = dict(stride=(2, 1, 3, 1)[:nd], dilation=(1, 2, 1, 2)[:nd], padding=(2, 0, 1, 1)[:nd])
    if transposed:
        params["output_padding"] = (1, 0, 2, 0)[:nd]
    xd = da.from_array(x, chunks=(2, 2, *chunks))
    if nd in (1, 3):
        name = f"conv{'_transpose' if transposed else ''}{nd}d"
        _check(getattr(F, name)(xd, w, b, **params), getattr(F, name)(x, w, b, **params))
    function = F.conv_transpose if transposed else F.conv
    _check(function(xd, w, b, **params), function(x, w, b, **params))


def test_output_size_selects_output_padding():
    x, w, _ = _arrays(2, (6, 5), 2, 2, (3, 3), 1, True)
    xd = da.from_array(x, chunks=(1, 1, 2, 3))
    kw = dict(stride=3, padding=1, output_size=(18, 15))
    _check(F.conv_transpose2d(xd, w, **kw), F.conv_transpose2d(x, w, **kw))


@pytest.mark.parametrize("dtype, rtol", [(np.float32, 1e-5), (np.float16, 2e-3), (np.complex64, 1e-5),
                                         (np.complex128, 1e-10)])
def test_dtypes(dtype, rtol):
    x, w, b = _arrays(2, (9, 8), 2, 3, (3, 3), 1, False)
    if np.issubdtype(dtype, np.complexfloating):
        x, w = x + 1j * x[:, :, ::-1], w - 1j * w
    x, w, b = x.astype(dtype), w.astype(dtype), b.astype(dtype)
    xd = da.from_array(x, chunks=(2, 1, 4, 3))
    _check(F.conv2d(xd, w, b, padding=1, stride=2), F.conv2d(x, w, b, padding=1, stride=2), rtol=rtol)


def test_unbatched_and_channel_chunks_are_rechunked():
    x, w, b = _arrays(2, (10, 9), 4, 2, (3, 3), 1, False)
    xd = da.from_array(x[0], chunks=(1, 3, 4))  # channels split in four
    y = F.conv2d(xd, w, b, padding=1)
    assert y.ndim == 3 and y.chunks[0] == (2,)
    _check(y, F.conv2d(x[0], w, b, padding=1))


def test_dask_weight_and_bias():
    x, w, b = _arrays(2, (10, 9), 4, 2, (3, 3), 2, False)
    xd = da.from_array(x, chunks=(1, 4, 5, 5))
    lazy = F.conv2d(xd, da.from_array(w, chunks=(1, 1, 2, 2)), da.from_array(b, chunks=1), groups=2)
    _check(lazy, F.conv2d(x, w, b, groups=2))


def test_blocks_reached_by_no_input_are_bias():
    # padding far beyond the kernel: whole output blocks lie in the padding
    x, w, b = _arrays(1, (4,), 2, 3, (2,), 1, False)
    xd = da.from_array(x, chunks=(3, 2, 1))
    _check(F.conv1d(xd, w, b, padding=9, stride=4), F.conv1d(x, w, b, padding=9, stride=4))
    _check(F.conv1d(xd, w, b, padding=((1, 8), (0, 0))[0:1]), F.conv1d(x, w, b, padding=((1, 8),)))


def test_empty_batch():
    x = np.zeros((0, 2, 7), dtype=np.float32)
    w = np.ones((3, 2, 3), dtype=np.float32)
    _check(F.conv1d(da.from_array(x), w, padding=1), F.conv1d(x, w, padding=1))


def test_forced_algorithm_and_threaded_scheduler():
    x, w, _ = _arrays(2, (9, 8), 2, 3, (3, 3), 1, False)
    xd = da.from_array(x, chunks=(1, 2, 4, 4))
    y = F.conv2d(xd, w, padding=1, algorithm="reference")
    np.testing.assert_allclose(y.compute(scheduler="threads"), F.conv2d(x, w, padding=1), rtol=1e-10)


def test_result_is_lazy_and_halo_reads_only_neighbours():
    calls = []

    def record(block, block_info=None):
        calls.append(block_info[0]["chunk-location"])
        return block

    x, w, _ = _arrays(1, (40,), 1, 1, (3,), 1, False)
    xd = da.from_array(x, chunks=(3, 1, 10)).map_blocks(record, dtype=x.dtype)
    y = F.conv1d(xd, w, padding=1)
    assert calls == []  # nothing computed by the call
    start, stop = y.chunks[2][0], sum(y.chunks[2][:2])
    np.testing.assert_allclose(y.blocks[0, 0, 1].compute(scheduler="sync"),
                               F.conv1d(x, w, padding=1)[:, :, start:stop])
    assert sorted({c[2] for c in calls}) == [1, 2]  # the block and its right neighbour, not the whole array


def test_weight_is_in_the_graph_once():
    x = RNG.standard_normal((4, 64, 16, 16))
    w = RNG.standard_normal((64, 64, 3, 3))
    y = F.conv2d(da.from_array(x, chunks=(1, 64, 4, 4)), w, padding=1)  # 64 blocks
    conv_layer = {k: v for k, v in dict(y.__dask_graph__()).items() if k[0] == y.name}
    assert len(conv_layer) == 64
    assert len(pickle.dumps(conv_layer)) < w.nbytes / 4  # tasks refer to the weight's key
    assert len(pickle.dumps(dict(y.__dask_graph__()))) < x.nbytes + 2 * w.nbytes


@pytest.mark.parametrize("call, error, match", [
    (lambda xd, w: F.conv2d(xd.astype(np.int64), w), TypeError, "conv2d: input has dtype int64"),
    (lambda xd, w: F.conv2d(xd, w.astype(np.float32)), TypeError, "conv2d: input has dtype float64 but weight"),
    (lambda xd, w: F.conv2d(xd, w, groups=3), ValueError, "conv2d: in_channels=2 is not divisible by groups=3"),
    (lambda xd, w: F.conv_transpose2d(xd, w, padding="same"), TypeError, "string padding"),
    (lambda xd, w: F.conv2d(xd, w, padding=5, padding_mode="reflect"), ValueError, "padding_mode='reflect'"),
    (lambda xd, w: F.conv2d(xd[xd[:, 0, 0, 0] > 0], w), ValueError, "compute_chunk_sizes"),
])
def test_errors_match_the_numpy_path(call, error, match):
    xd = da.from_array(RNG.standard_normal((2, 2, 5, 5)), chunks=2)
    with pytest.raises(error, match=match):
        call(xd, RNG.standard_normal((2, 2, 3, 3)))


def test_import_fastconv_does_not_import_dask():
    code = "import sys, fastconv; assert not any(m.split('.')[0] in ('dask', 'distributed', 'zarr') for m in sys.modules)"
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("lead", [0, 1, 2])  # bare (*spatial), unbatched (C, *spatial), batched
def test_conv_store_matches_numpy(lead):
    from fastconv.dask import conv_store

    c_in = 1 if lead == 0 else 2
    x, w, b = _arrays(3, (9, 10, 11), c_in, 4, (3, 2, 3), 1, False)
    store = x[0, 0] if lead == 0 else x[0] if lead == 1 else x
    kw = dict(stride=(2, 1, 3), padding=((1, 2), (0, 1), (2, 2)), dilation=(1, 2, 1))
    expected = F.conv3d(x, w, b, **kw)
    y = conv_store(store, w, b, chunks=(2, 3, 4), **kw)
    assert y.chunks[-3:] == tuple(da.core.normalize_chunks((2, 3, 4), shape=expected.shape[2:]))
    _check(y, expected if lead == 2 else expected[0])


def test_conv_store_reads_zarr(tmp_path):
    zarr = pytest.importorskip("zarr")
    from fastconv.dask import conv_store

    x = RNG.standard_normal((13, 12, 9)).astype(np.float32)
    z = zarr.create_array(str(tmp_path / "v.zarr"), shape=x.shape, chunks=(5, 5, 5), dtype="float32")
    z[:] = x
    w = RNG.standard_normal((2, 1, 3, 3, 3)).astype(np.float32)
    y = conv_store(zarr.open_array(str(tmp_path / "v.zarr"), mode="r"), w, padding="same", chunks=4)
    _check(y, F.conv3d(x[None], w, padding="same"), rtol=1e-5)


def test_conv_store_rejects_what_conv_rejects():
    from fastconv.dask import conv_store

    with pytest.raises(ValueError, match="conv_store: expected a store of 2, 3 or 4 dimensions"):
        conv_store(np.zeros((2, 3, 4, 5, 6)), np.zeros((1, 1, 3, 3)), chunks=2)
    with pytest.raises(TypeError, match="conv_store: input has dtype float32 but weight has dtype float64"):
        conv_store(np.zeros((4, 5), np.float32), np.zeros((1, 1, 3, 3)), chunks=2)
