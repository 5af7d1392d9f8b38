"""The channel-blocked direct convolution: values against the reference algorithm on each path
of its layouts (stride phases, dilation, cropping and asymmetric padding, partial channel
blocks, several input blocks per kernel call, column chunks and row ranges of jobs, 1-D and
3-D), gradients through its forward pass checked by their adjoint identity, float32 error,
non-contiguous inputs, and every reason it declines."""

from __future__ import annotations

import numpy as np
import pytest

from fastconv import _config
from fastconv import functional as F
from fastconv._errors import CallContext
from fastconv._geometry import ConvGeometry
from fastconv.algorithms import ALGORITHMS, blocked
from fastconv.algorithms import _gemm_parallel as par

from adjoint_check import assert_gradients_via_forward_are_adjoints

BLOCKED, REFERENCE = ALGORITHMS["blocked"], ALGORITHMS["reference"]

# (input shape, weight shape, stride, padding, dilation)
GEOMETRIES = [
    ((2, 32, 9, 11), (40, 32, 3, 3), 1, 1, 1),  # partial output block (40 = 32 + 8)
    ((2, 20, 9, 11), (33, 20, 3, 3), 2, ((2, 2), (0, 0)), 2),  # partial input block, stride 2, dilation
    ((1, 16, 30), (16, 16, 2), 1, 0, 5),  # 1-D dilated, several input blocks per call (chunk)
    ((1, 40, 500), (24, 40, 3), 1, ((1, 2),), 1),  # 1-D, columns cut into chunks, last chunk partial
    ((2, 40, 700), (24, 40, 3), 2, ((3, 1),), 4),  # 1-D slabs with stride phases and padding
    ((3, 64, 1500), (64, 64, 2), 1, 0, 64),  # 1-D slabs, dilated (wavenet-like)
    ((2, 17, 5, 6, 7), (35, 17, 3, 2, 3), (1, 2, 3), 1, 1),  # 3-D, stride 3 phases
    ((3, 48, 15, 29), (64, 48, 5, 5), (2, 3), 2, 1),  # 5x5, uneven strides
    ((2, 64, 7, 7), (64, 64, 1, 1), 1, 0, 1),  # pointwise
    ((2, 16, 12, 13), (32, 16, 3, 3), 1, ((0, 2), (3, 1)), (2, 1)),  # asymmetric padding
    ((2, 32, 40, 40), (64, 32, 3, 3), 1, 1, 1),  # accumulators over budget: several row ranges per block
]


def _geometry(xs, ws, stride, padding, dilation):
    return ConvGeometry.for_conv(xs, ws, stride, padding, dilation, 1, CallContext("test"))


@pytest.mark.parametrize("geometry", GEOMETRIES)
def test_forward_matches_reference_float64(geometry):
    geom = _geometry(*geometry)
    assert BLOCKED.supports(geom, np.dtype("float64"), "forward") is None
    rng = np.random.default_rng(0)
    x, w = rng.standard_normal(geom.input_shape), rng.standard_normal(geom.weight_shape)
    frozen = x.copy(), w.copy()
    ours, expected = BLOCKED.forward(x, w, geom), REFERENCE.forward(x, w, geom)
    assert ours.shape == expected.shape and ours.dtype == expected.dtype
    np.testing.assert_allclose(ours, expected, rtol=1e-10, atol=1e-10 * np.abs(expected).max())
    assert np.array_equal(x, frozen[0]) and np.array_equal(w, frozen[1]), "blocked modified its inputs"


def test_jobs_cover_rows_and_columns_once():
    """Row ranges and column chunks tile every output block exactly once, with several jobs per
    worker when the threads share them."""
    geom = _geometry((2, 32, 40, 300), (64, 32, 3, 3), 1, 1, 1)
    plan = blocked._plan(geom, 4)
    jobs = plan.jobs(2)
    assert len(jobs) >= 2 * par.SHARES_PER_WORKER
    cover = np.zeros((plan.blocks_out, 40, 300), dtype=int)
    for ob, r0, r1, c0, c1, pixels in jobs:
        assert 1 <= pixels <= blocked._PIXELS and -(-(c1 - c0) // pixels) == -(-(c1 - c0) // blocked._PIXELS)
        cover[ob, r0:r1, c0:c1] += 1
        assert geom.batch * (r1 - r0) * (c1 - c0) * plan.obw * 4 <= blocked._ACC_BYTES
    assert (cover == 1).all()


@pytest.fixture
def streamed_weights(monkeypatch):
    """Every layer's weights packed by the workers, an output block before its jobs (as beyond
    ``_STREAMED_WEIGHT_BYTES``), also where the jobs interleave output blocks."""
    monkeypatch.setattr(blocked, "_STREAMED_WEIGHT_BYTES", 0)
    blocked._plan.cache_clear()
    yield
    blocked._plan.cache_clear()


@pytest.mark.parametrize("geometry", GEOMETRIES[:3] + GEOMETRIES[-4:])
def test_weights_packed_by_the_workers(streamed_weights, workers, geometry):
    geom = _geometry(*geometry)
    plan = blocked._plan(geom, 8)
    assert plan.weights_streamed
    rng = np.random.default_rng(0)
    x, w = rng.standard_normal(geom.input_shape), rng.standard_normal(geom.weight_shape)
    np.testing.assert_allclose(BLOCKED.forward(x, w, geom), REFERENCE.forward(x, w, geom), rtol=1e-10, atol=1e-10)


def test_phase_weights_packed_by_the_workers(streamed_weights, workers):
    """subpixel_blocked's phase weights, packed an output block at a time by the workers."""
    geom = ConvGeometry.for_conv_transpose((2, 48, 7, 9), (48, 32, 4, 4), 2, 1, 0, 1, 1, CallContext("test"))
    rng = np.random.default_rng(1)
    dy, w = rng.standard_normal(geom.output_shape), rng.standard_normal(geom.weight_shape)
    np.testing.assert_allclose(ALGORITHMS["subpixel_blocked"].input_grad(dy, w, geom),
                               REFERENCE.input_grad(dy, w, geom), rtol=1e-10, atol=1e-10)


def test_1d_signals_pack_slab_by_slab():
    """Jobs of long 1-D signals pack the columns they read (a slab per job, never the whole
    signal); 2-D maps and signals whose slabs would not stay in L2 pack once."""
    def plan(xs, ws, dilation=1):
        return blocked._plan(_geometry(xs, ws, 1, 0, dilation), 4)

    sliced = plan((3, 64, 1500), (64, 64, 2), 64)
    assert sliced.sliced and sliced.scratch_bytes < 3 * 64 * 1500 * 4
    assert sliced.wq == sliced.columns + 64
    assert not plan((2, 32, 40, 300), (64, 32, 3, 3)).sliced
    assert not plan((64, 256, 3000), (64, 256, 3)).sliced  # slab of 64 samples x 256 channels: too big
    assert not plan((1, 16, 100), (16, 16, 3)).sliced  # one job covers the signal


def test_float32_error_within_budget():
    geom = _geometry((2, 256, 14, 14), (256, 256, 3, 3), 1, 1, 1)
    rng = np.random.default_rng(1)
    x, w = rng.standard_normal(geom.input_shape), rng.standard_normal(geom.weight_shape)
    truth = REFERENCE.forward(x, w, geom)
    ours = BLOCKED.forward(x.astype(np.float32), w.astype(np.float32), geom)
    assert ours.dtype == np.float32
    assert np.linalg.norm(ours - truth) / np.linalg.norm(truth) < 2e-6 < _config.max_relative_error


def test_gradients_via_forward_satisfy_adjoint_identity():
    """<conv(x, w), dy> = <x, dx(dy)> = <w, dw(x, dy)> with both gradients computed by the blocked
    forward pass on the adjoint geometries (the planner's "via forward" routes). Padding beyond
    the kernel's reach makes the input gradient's padding negative: the packing crops."""
    geom = _geometry((2, 24, 11, 10), (32, 24, 3, 3), 1, ((3, 0), (1, 4)), 1)
    assert min(lo for lo, _ in geom.for_input_grad().padding) < 0
    assert_gradients_via_forward_are_adjoints(BLOCKED.forward, geom)


def test_non_contiguous_input_through_the_api():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 20, 12, 18)).astype(np.float32)[:, :, :, ::2]
    w = rng.standard_normal((32, 20, 3, 3)).astype(np.float32)
    ours = F.conv2d(x, w, padding=1, algorithm="blocked")
    np.testing.assert_allclose(ours, F.conv2d(x, w, padding=1, algorithm="reference"), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("xs, ws, groups, dtype, reason", [
    ((1, 32, 8, 8), (32, 16, 3, 3), 2, "float32", "groups=2"),
    ((1, 8, 8, 8), (32, 8, 3, 3), 1, "float32", "8 input channels < 16"),
    ((1, 32, 8, 8), (32, 32, 3, 3), 1, "complex64", "complex"),
    ((1, 32, 4, 4, 4, 4), (32, 32, 1, 1, 1, 1), 1, "float32", "4 spatial dimensions"),
])
def test_declines_with_reason(xs, ws, groups, dtype, reason):
    geom = ConvGeometry.for_conv(xs, ws, 1, 0, 1, groups, CallContext("test"))
    assert reason in BLOCKED.supports(geom, np.dtype(dtype), "forward")


def test_declines_beyond_workspace(monkeypatch):
    geom = _geometry((8, 64, 64, 64), (64, 64, 3, 3), 1, 1, 1)
    monkeypatch.setattr(_config, "workspace_bytes", 2**20)
    assert "workspace" in BLOCKED.supports(geom, np.dtype("float32"), "forward")
