"""The channel-blocked depthwise convolution: values against the reference algorithm on each path
of its kernel (partial channel blocks, strides 1 and 2, dilation, asymmetric and cropping padding,
rows longer than a register tile, 1-D and 3-D), gradients through its forward pass checked by
their adjoint identity, float32 error, several threads, non-contiguous inputs, and every reason
it declines."""

from __future__ import annotations

import numpy as np
import pytest

from fastconv import _config
from fastconv import functional as F
from fastconv._errors import CallContext
from fastconv._geometry import ConvGeometry
from fastconv.algorithms import ALGORITHMS

from adjoint_check import assert_gradients_via_forward_are_adjoints

DW_BLOCKED, REFERENCE = ALGORITHMS["depthwise_blocked"], ALGORITHMS["reference"]

# (input shape, kernel, stride, padding, dilation): one filter per channel
GEOMETRIES = [
    ((2, 20, 9, 11), (3, 3), 1, 1, 1),  # partial channel block (20 = 16 + 4)
    ((2, 16, 9, 40), (5, 5), 1, 2, 1),  # rows of 40: tiles of 16, 16 and 8 pixels
    ((1, 33, 30, 31), (3, 3), 2, 1, 1),  # stride 2, three channel blocks
    ((2, 16, 12, 40), (3, 5), (1, 2), ((2, 0), (0, 3)), (2, 1)),  # asymmetric padding, dilation
    ((3, 7, 50), (4,), 1, 3, 2),  # 1-D, dilated, fewer channels than a block
    ((1, 9, 5, 6, 7), (3, 3, 3), (2, 1, 2), 1, 1),  # 3-D
    ((2, 17, 8, 8), (3, 3), 1, 0, 1),  # no padding
    ((1, 16, 20, 20), (7, 7), 1, 3, 1),  # large kernel
]


def _geometry(xs, kernel, stride, padding, dilation):
    return ConvGeometry.for_conv(xs, (xs[1], 1, *kernel), stride, padding, dilation, xs[1], CallContext("test"))


@pytest.mark.parametrize("geometry", GEOMETRIES)
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_forward_matches_reference(geometry, dtype):
    geom = _geometry(*geometry)
    assert DW_BLOCKED.supports(geom, np.dtype(dtype), "forward") is None
    rng = np.random.default_rng(0)
    x = rng.standard_normal(geom.input_shape).astype(dtype)
    w = rng.standard_normal(geom.weight_shape).astype(dtype)
    frozen = x.copy(), w.copy()
    ours, expected = DW_BLOCKED.forward(x, w, geom), REFERENCE.forward(x.astype(np.float64), w.astype(np.float64), geom)
    assert ours.shape == expected.shape and ours.dtype == np.dtype(dtype)
    tol = 1e-12 if dtype == "float64" else 1e-6
    np.testing.assert_allclose(ours, expected, rtol=tol, atol=tol * np.abs(expected).max())
    assert np.array_equal(x, frozen[0]) and np.array_equal(w, frozen[1]), "depthwise_blocked modified its inputs"


def test_float32_error_within_budget():
    geom = _geometry((2, 240, 28, 28), (5, 5), 1, 2, 1)
    rng = np.random.default_rng(1)
    x, w = rng.standard_normal(geom.input_shape), rng.standard_normal(geom.weight_shape)
    truth = REFERENCE.forward(x, w, geom)
    ours = DW_BLOCKED.forward(x.astype(np.float32), w.astype(np.float32), geom)
    assert np.linalg.norm(ours - truth) / np.linalg.norm(truth) < 1e-6 < _config.max_relative_error


def test_gradients_via_forward_satisfy_adjoint_identity():
    """<conv(x, w), dy> = <x, dx(dy)> = <w, dw(x, dy)> with both gradients computed by this forward
    pass on the adjoint geometries where it supports them. Padding beyond the kernel's reach makes
    the input gradient's padding negative: the packing crops."""
    geom = _geometry((2, 24, 11, 10), (3, 3), 1, ((3, 0), (1, 4)), 1)
    assert min(lo for lo, _ in geom.for_input_grad().padding) < 0
    assert_gradients_via_forward_are_adjoints(DW_BLOCKED.forward, geom, weight_grad=False)


def test_threads_give_the_same_result():
    import fastconv
    rng = np.random.default_rng(4)
    x = rng.standard_normal((4, 48, 30, 30)).astype(np.float32)
    w = rng.standard_normal((48, 1, 5, 5)).astype(np.float32)
    results = []
    for threads in (1, 2):
        fastconv.set_num_threads(threads)
        try:
            results.append(F.conv2d(x, w, padding=2, groups=48, algorithm="depthwise_blocked"))
        finally:
            fastconv.set_num_threads(None)
    assert np.array_equal(results[0], results[1])


def test_non_contiguous_input_through_the_api():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 20, 12, 36)).astype(np.float32)[:, :, :, ::2]
    w = rng.standard_normal((20, 1, 3, 3)).astype(np.float32)
    ours = F.conv2d(x, w, padding=1, groups=20, algorithm="depthwise_blocked")
    np.testing.assert_allclose(ours, F.conv2d(x, w, padding=1, groups=20, algorithm="reference"), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("xs, ws, groups, stride, dtype, reason", [
    ((1, 16, 8, 8), (32, 1, 3, 3), 16, 1, "float32", "one filter per channel"),
    ((1, 32, 8, 8), (32, 16, 3, 3), 2, 1, "float32", "groups=2"),
    ((1, 16, 8, 8), (16, 1, 3, 3), 16, 1, "complex64", "complex"),
    ((1, 16, 9, 9), (16, 1, 3, 3), 16, 3, "float32", "stride 3 along the last axis"),
    ((1, 16, 4, 4, 4, 4), (16, 1, 1, 1, 1, 1), 16, 1, "float32", "4 spatial dimensions"),
])
def test_declines_with_reason(xs, ws, groups, stride, dtype, reason):
    geom = ConvGeometry.for_conv(xs, ws, stride, 0, 1, groups, CallContext("test"))
    assert reason in DW_BLOCKED.supports(geom, np.dtype(dtype), "forward")


def test_declines_beyond_workspace(monkeypatch):
    geom = _geometry((1, 16, 512, 512), (3, 3), 1, 1, 1)
    monkeypatch.setattr(_config, "workspace_bytes", 2**20)
    assert "workspace" in DW_BLOCKED.supports(geom, np.dtype("float32"), "forward")


def test_declared_strides_are_the_compiled_ones():
    """The plug-in declines the strides its micro-kernel is not compiled for: the kernels take their
    STRIDES from the plug-in."""
    from fastconv.algorithms import _depthwise_blocked_kernels, depthwise_blocked
    assert depthwise_blocked.STRIDES == _depthwise_blocked_kernels.STRIDES
