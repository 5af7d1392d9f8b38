"""The GEMM plug-in: every op against the reference algorithm and torch in float64, on geometries
chosen to reach each code path (pointwise, 1x1 subsample, channel-rows and channels-last forward,
groups, dilation, asymmetric and cropping padding), with tiles forced by a tiny workspace, in
complex dtypes, within the float32 error budget, and within its memory bound."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
import torch
from torch_ref import t

import fastconv
from fastconv import _config
from fastconv import grad as fg
from fastconv._errors import CallContext
from fastconv._geometry import ConvGeometry
from fastconv.algorithms import ALGORITHMS, gemm

GEMM, REFERENCE = ALGORITHMS["gemm"], ALGORITHMS["reference"]

# (input shape, weight shape, stride, padding, dilation, groups)
GEOMETRIES = [
    ((2, 6, 7, 8), (4, 6, 1, 1), 1, 0, 1, 1),  # pointwise: a plain matmul
    ((2, 4, 9, 8), (6, 2, 1, 1), 2, 0, 1, 2),  # 1x1 strided: a subsample, grouped
    ((2, 3, 9, 10), (5, 3, 3, 3), 1, 1, 1, 1),
    ((1, 4, 11, 9), (6, 2, 3, 2), (2, 1), ((0, 2), (1, 0)), (1, 2), 2),  # asymmetric padding, dilation, groups
    ((2, 2, 13), (3, 2, 4), 3, 2, 2, 1),  # 1-D, stride and dilation
    ((1, 4, 5, 6, 7), (4, 2, 3, 2, 3), (1, 2, 1), 1, (2, 1, 1), 2),  # 3-D, per-dimension stride/dilation
    ((2, 2, 6, 7), (12, 2, 2, 2), 1, 0, 1, 1),  # more outputs than columns
]


def _geometry(xs, ws, stride, padding, dilation, groups):
    return ConvGeometry.for_conv(xs, ws, stride, padding, dilation, groups, CallContext("test"))


def _arrays(geom, dtype, seed=0):
    rng = np.random.default_rng(seed)

    def draw(shape):
        a = rng.standard_normal(shape)
        return (a + 1j * rng.standard_normal(shape) if np.dtype(dtype).kind == "c" else a).astype(dtype)

    return draw(geom.input_shape), draw(geom.weight_shape), draw(geom.output_shape)


def _assert_ops_match_reference(geom, dtype, tol):
    x, w, dy = _arrays(geom, dtype)
    frozen = [a.copy() for a in (x, w, dy)]
    for op, a, b in (("forward", x, w), ("input_grad", dy, w), ("weight_grad", x, dy)):
        ours, expected = getattr(GEMM, op)(a, b, geom), getattr(REFERENCE, op)(a, b, geom)
        assert ours.shape == expected.shape and ours.dtype == expected.dtype, op
        err = np.abs(ours - expected).max() / max(np.abs(expected).max(), 1e-30)
        assert err <= tol, f"{op}: relative error {err:.3g}"
    assert all(np.array_equal(a, b) for a, b in zip((x, w, dy), frozen)), "gemm modified its inputs"


@pytest.fixture(params=["channels-last", "channel-rows"])
def orientation(request, monkeypatch):
    """Run the forward pass in either orientation (normally chosen by the output width)."""
    monkeypatch.setattr(gemm, "CHANNELS_LAST_MIN_DEPTH", 0 if request.param == "channels-last" else 10**9)
    return request.param


@pytest.mark.parametrize("spec", GEOMETRIES)
def test_matches_reference_float64(spec, orientation):
    _assert_ops_match_reference(_geometry(*spec), np.float64, 1e-12)


@pytest.mark.parametrize("spec", GEOMETRIES)
def test_tiled_matches_reference(spec, orientation, tiny_workspace, workers):
    _assert_ops_match_reference(_geometry(*spec), np.float64, 1e-12)


@pytest.mark.parametrize("spec", GEOMETRIES[2:6])
@pytest.mark.parametrize("dtype", [np.complex128, np.complex64])
def test_complex_matches_reference(spec, dtype, workers):
    _assert_ops_match_reference(_geometry(*spec), dtype, 1e-12 if dtype == np.complex128 else 1e-5)


@pytest.mark.parametrize("padding", [((-1, 2), (0, -2)), ((3, -1), (-2, 1))])
def test_cropping_padding_of_derived_geometries(padding, orientation, tiny_workspace, workers):
    """Negative padding (crop), as the adjoint geometries of gradients produce it."""
    geom = ConvGeometry(2, 4, 6, 2, (9, 10), (3, 2), (2, 1), (1, 2), padding)
    _assert_ops_match_reference(geom, np.float64, 1e-12)
    for adjoint in (geom.for_input_grad(), geom.for_weight_grad()):
        _assert_ops_match_reference(adjoint, np.float64, 1e-12)


@pytest.mark.parametrize("xs, ws, stride, padding, dilation, groups", GEOMETRIES)
def test_public_api_matches_torch_float64(xs, ws, stride, padding, dilation, groups):
    nd = len(ws) - 2
    x, w, _ = _arrays(_geometry(xs, ws, stride, padding, dilation, groups), np.float64)
    kw = {"stride": stride, "dilation": dilation, "groups": groups}
    pad = padding if not isinstance(padding, tuple) else 0
    if pad != padding:  # asymmetric: pad explicitly on both sides, as torch cannot
        widths = [v for lo_hi in reversed(padding) for v in lo_hi]
        xt = torch.nn.functional.pad(t(x), widths)
    else:
        xt = t(x)
    tconv = getattr(torch.nn.functional, f"conv{nd}d")
    xt.requires_grad_(True)
    wt = t(w).requires_grad_(True)
    yt = tconv(xt, wt, padding=pad, **kw)
    dy = np.random.default_rng(3).standard_normal(tuple(yt.shape))
    yt.backward(t(dy))
    y = getattr(fastconv, f"conv{nd}d")(x, w, padding=padding, algorithm="gemm", **kw)
    np.testing.assert_allclose(y, yt.detach().numpy(), rtol=1e-10, atol=1e-10)
    dw = getattr(fg, f"conv{nd}d_weight")(x, w.shape, dy, padding=padding, algorithm="gemm", **kw)
    np.testing.assert_allclose(dw, wt.grad.numpy(), rtol=1e-10, atol=1e-10)
    dx = getattr(fg, f"conv{nd}d_input")(x.shape, w, dy, padding=padding, algorithm="gemm", **kw)
    expected_dx = xt.grad.numpy()
    if pad != padding:  # torch's gradient covers the explicitly padded input: crop it
        expected_dx = expected_dx[(Ellipsis, *(slice(lo, lo + n) for (lo, _), n in zip(padding, xs[2:])))]
    np.testing.assert_allclose(dx, expected_dx, rtol=1e-10, atol=1e-10)


def test_non_contiguous_inputs():
    geom = _geometry((2, 4, 9, 8), (6, 4, 3, 3), 1, 1, 1, 1)
    x, w, dy = _arrays(geom, np.float64)
    xv = np.asfortranarray(x)[..., ::1]
    wv = np.ascontiguousarray(w[:, :, ::-1, :])[:, :, ::-1, :]
    dyv = np.ascontiguousarray(dy.transpose(0, 1, 3, 2)).transpose(0, 1, 3, 2)
    np.testing.assert_allclose(GEMM.forward(xv, wv, geom), REFERENCE.forward(x, w, geom), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(GEMM.input_grad(dyv, wv, geom), REFERENCE.input_grad(dy, w, geom), rtol=1e-12,
                               atol=1e-12)
    np.testing.assert_allclose(GEMM.weight_grad(xv, dyv, geom), REFERENCE.weight_grad(x, dy, geom), rtol=1e-12,
                               atol=1e-12)


@pytest.mark.parametrize("spec", GEOMETRIES[2:4])
def test_float32_error_within_budget(spec):
    geom = _geometry(*spec)
    x, w, dy = _arrays(geom, np.float64)
    for op, a, b in (("forward", x, w), ("input_grad", dy, w), ("weight_grad", x, dy)):
        truth = getattr(REFERENCE, op)(a, b, geom)
        ours = getattr(GEMM, op)(a.astype(np.float32), b.astype(np.float32), geom)
        assert ours.dtype == np.float32
        rel = np.linalg.norm(ours - truth) / np.linalg.norm(truth)
        assert rel <= _config.max_relative_error, f"{op}: relative L2 error {rel:.2g}"


def test_extra_memory_stays_within_output_plus_workspace():
    """A 3-D layer whose full im2col (~7 MB) exceeds a 1 MiB workspace stays within output + workspace."""
    geom = _geometry((1, 8, 12, 24, 24), (8, 8, 3, 3, 3), 1, 1, 1, 1)
    x, w, _ = _arrays(geom, np.float32)
    saved = _config.workspace_bytes
    fastconv.set_workspace_limit(1)
    try:
        GEMM.forward(x, w, geom)  # compile or load the kernels outside the measurement
        tracemalloc.start()
        y = GEMM.forward(x, w, geom)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        _config.workspace_bytes = saved
    full_im2col = 8 * 27 * y[0, 0].size * 4
    assert peak <= y.nbytes + 2**20 + 64 * 1024 < y.nbytes + full_im2col


def test_declines_more_than_three_spatial_dimensions():
    geom = ConvGeometry(1, 2, 2, 1, (3, 3, 3, 3), (1, 1, 1, 1), (1,) * 4, (1,) * 4, ((0, 0),) * 4)
    assert "4 spatial dimensions" in GEMM.supports(geom, np.dtype("float32"), "forward")
