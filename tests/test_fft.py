"""The fft algorithm: exact against torch and the reference, its accuracy bound, tiling and reasons."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import fastconv
from fastconv import _config
from fastconv._errors import CallContext
from fastconv._geometry import ConvGeometry
from fastconv.algorithms import ALGORITHMS, _fft_backend, _fft_layout
from fastconv.algorithms.fft import relative_error_bound
from fastconv.grad import conv1d_weight, conv2d_input, conv2d_weight

FFT = ALGORITHMS["fft"]
REFERENCE = ALGORITHMS["reference"]
TORCH = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}

# input shape, weight shape, stride, padding (int, tuple or per-side pairs), dilation, groups
CASES = [
    ((2, 3, 40), (4, 3, 9), 1, 4, 1, 1),
    ((2, 4, 37), (6, 2, 7), 3, 2, 2, 2),  # stride and dilation sharing a factor
    ((1, 2, 50), (3, 2, 5), 4, ((7, 1),), 1, 1),  # asymmetric padding, stride > kernel phases
    ((2, 6, 17, 19), (6, 1, 9, 7), 1, (4, 3), 1, 6),  # depthwise
    ((2, 4, 16, 15), (8, 1, 5, 5), (2, 1), 2, (1, 2), 4),  # channel multiplier 2
    ((1, 4, 13, 14), (6, 2, 4, 3), (1, 3), ((0, 3), (2, 0)), 1, 2),
    ((1, 2, 9, 8, 10), (3, 2, 3, 5, 4), (2, 1, 1), (1, 2, 0), (1, 1, 2), 1),
]


@pytest.fixture(autouse=True)
def restore_settings():
    saved = _config.workspace_bytes, _config.max_relative_error
    yield
    _config.workspace_bytes, _config.max_relative_error = saved


@pytest.fixture(params=["fft", "matrix"])
def method(request, monkeypatch):
    """Transform every axis by this method, whatever the cost model prefers."""
    costed = _fft_layout._line_seconds
    monkeypatch.setattr(_fft_layout, "_line_seconds", lambda *args: (costed(*args)[0], request.param))
    _fft_layout.layout.cache_clear()
    yield request.param
    _fft_layout.layout.cache_clear()


def _torch_conv(x, w, stride, padding, dilation, groups):
    nd = w.ndim - 2
    xt = torch.from_numpy(x)
    if isinstance(padding, tuple) and isinstance(padding[0], tuple):
        xt = F.pad(xt, [p for pair in reversed(padding) for p in pair])
        padding = 0
    return TORCH[nd](xt, torch.from_numpy(w), stride=stride, padding=padding, dilation=dilation,
                     groups=groups).numpy()


def _arrays(x_shape, w_shape, dtype, seed=0):
    rng = np.random.default_rng(seed)
    x, w = rng.standard_normal(x_shape), rng.standard_normal(w_shape)
    if np.dtype(dtype).kind == "c":
        x, w = x + 1j * rng.standard_normal(x_shape), w + 1j * rng.standard_normal(w_shape)
    return x.astype(dtype), w.astype(dtype)


def _geometry(x, w, stride, padding, dilation, groups):
    return ConvGeometry.for_conv(x.shape, w.shape, stride, padding, dilation, groups, CallContext("test"))


@pytest.mark.parametrize("case", CASES)
def test_forward_matches_torch_float64(case, method):
    xs, ws, stride, padding, dilation, groups = case
    x, w = _arrays(xs, ws, np.float64)
    y = fastconv.conv(x, w, stride=stride, padding=padding, dilation=dilation, groups=groups, algorithm="fft")
    np.testing.assert_allclose(y, _torch_conv(x, w, stride, padding, dilation, groups), rtol=1e-11, atol=1e-11)


@pytest.mark.parametrize("dtype, tol", [("complex128", 1e-12), ("complex64", 2e-6)])
@pytest.mark.parametrize("case", CASES[1::2])
def test_complex_matches_reference(case, dtype, tol, method):
    xs, ws, stride, padding, dilation, groups = case
    x, w = _arrays(xs, ws, dtype)
    geom = _geometry(x, w, stride, padding, dilation, groups)
    y = FFT.forward(x, w, geom)
    exact = REFERENCE.forward(x.astype(np.complex128), w.astype(np.complex128), geom)
    assert y.dtype == np.dtype(dtype)
    assert np.linalg.norm(y - exact) / np.linalg.norm(exact) <= tol


@pytest.mark.parametrize("xs, ws, padding, groups", [
    ((2, 8, 28, 28), (8, 1, 31, 31), 15, 8),
    ((1, 4, 3000), (4, 4, 401), 200, 1),
    ((2, 16, 12, 12), (16, 16, 7, 7), 3, 1),
])
def test_float32_error_within_its_bound(xs, ws, padding, groups):
    x, w = _arrays(xs, ws, np.float64, seed=3)
    geom = _geometry(x, w, 1, padding, 1, groups)
    exact = REFERENCE.forward(x, w, geom)
    y = FFT.forward(x.astype(np.float32), w.astype(np.float32), geom)
    error = np.linalg.norm(y - exact) / np.linalg.norm(exact)
    layout = _fft_layout.layout(geom, np.dtype(np.float32), _config.workspace_bytes)
    bound = relative_error_bound(layout, np.float32)
    assert error <= bound <= _config.max_relative_error
    assert error <= 1e-6  # about as accurate as direct summation


@pytest.mark.parametrize("case, megabytes", [(CASES[0], 0.01), (CASES[3], 0.1), (CASES[6], 0.15)])
def test_tiny_workspace_forces_overlap_save_tiles(case, megabytes, method):
    xs, ws, stride, padding, dilation, groups = case
    x, w = _arrays(xs, ws, np.float64)
    geom = _geometry(x, w, stride, padding, dilation, groups)
    fastconv.set_workspace_limit(megabytes)
    layout = _fft_layout.layout(geom, np.dtype(np.float64), _config.workspace_bytes)
    assert layout.tile_count > 1 and len(list(layout.blocks())) > 1
    np.testing.assert_allclose(FFT.forward(x, w, geom), _torch_conv(x, w, stride, padding, dilation, groups),
                               rtol=1e-11, atol=1e-11)


def test_long_signal_is_tiled_by_cost():
    x, w = _arrays((1, 2, 20000), (3, 2, 33), np.float64)
    geom = _geometry(x, w, 1, 16, 1, 1)
    layout = _fft_layout.layout(geom, np.dtype(np.float64), _config.workspace_bytes)
    assert layout.tile_count > 1  # short transforms beat one of length 20000 for a 33-tap kernel
    np.testing.assert_allclose(FFT.forward(x, w, geom), _torch_conv(x, w, 1, 16, 1, 1), rtol=1e-11, atol=1e-11)


def test_gradients_via_forward_on_the_adjoint_geometries(method):
    x, w = _arrays((2, 4, 15, 14), (6, 2, 5, 4), np.float64)
    kw = dict(stride=2, padding=(2, 1), dilation=(1, 2), groups=2)
    xt, wt = torch.from_numpy(x).requires_grad_(), torch.from_numpy(w).requires_grad_()
    y = F.conv2d(xt, wt, **kw)
    dy = np.random.default_rng(1).standard_normal(y.shape)
    y.backward(torch.from_numpy(dy))
    plan = fastconv.plan_for("conv2d_weight", x.shape, w.shape, "float64", algorithm="fft", **kw)
    assert plan.choice.route == "via forward"
    np.testing.assert_allclose(conv2d_input(x.shape, w, dy, algorithm="fft", **kw), xt.grad.numpy(), atol=1e-11)
    np.testing.assert_allclose(conv2d_weight(x, w.shape, dy, algorithm="fft", **kw), wt.grad.numpy(), atol=1e-10)
    y_t = fastconv.conv_transpose2d(dy, w, stride=2, padding=(2, 1), dilation=(1, 2), groups=2, output_padding=1,
                                    algorithm="fft")
    expected = F.conv_transpose2d(torch.from_numpy(dy), torch.from_numpy(w), stride=2, padding=(2, 1),
                                  dilation=(1, 2), groups=2, output_padding=1).numpy()
    np.testing.assert_allclose(y_t, expected, atol=1e-11)


def test_weight_gradient_of_a_long_strided_signal():
    """The weight gradient's kernel is the whole output, dilated by the stride."""
    x, w = _arrays((3, 1, 800), (4, 1, 20), np.float64)
    xt, wt = torch.from_numpy(x), torch.from_numpy(w).requires_grad_()
    y = F.conv1d(xt, wt, stride=4)
    dy = np.random.default_rng(2).standard_normal(y.shape)
    y.backward(torch.from_numpy(dy))
    np.testing.assert_allclose(conv1d_weight(x, w.shape, dy, stride=4, algorithm="fft"), wt.grad.numpy(),
                               rtol=1e-10, atol=1e-10)


def test_inputs_untouched_and_any_layout():
    x, w = _arrays((2, 6, 20, 22), (6, 3, 5, 5), np.float64)
    x_view, w_view = x[:, :, ::-1, 1:], np.asfortranarray(w)[:, :, :, ::-1]
    frozen = x.copy(), w.copy()
    geom = _geometry(x_view, w_view, 1, 2, 1, 2)
    np.testing.assert_allclose(FFT.forward(x_view, w_view, geom),
                               _torch_conv(np.ascontiguousarray(x_view), np.ascontiguousarray(w_view), 1, 2, 1, 2),
                               rtol=1e-11, atol=1e-11)
    assert np.array_equal(x, frozen[0]) and np.array_equal(w, frozen[1])


def test_numpy_fft_fallback(monkeypatch):
    x, w = _arrays((2, 4, 11, 12), (4, 2, 5, 3), np.float32)
    geom = _geometry(x, w, (2, 1), 2, 1, 2)
    with_scipy = FFT.forward(x, w, geom)
    monkeypatch.setattr(_fft_backend, "_module", lambda: np.fft)
    _fft_backend.next_fast_len.cache_clear()
    _fft_layout.layout.cache_clear()
    try:
        np.testing.assert_allclose(FFT.forward(x, w, geom), with_scipy, rtol=1e-5, atol=1e-5)
    finally:
        _fft_backend.next_fast_len.cache_clear()
        _fft_layout.layout.cache_clear()


def test_next_fast_len_follows_scipy():
    scipy_fft = pytest.importorskip("scipy.fft")
    for real in (True, False):
        assert [_fft_backend.next_fast_len(n, real) for n in range(1, 400)] == [
            scipy_fft.next_fast_len(n, real=real) for n in range(1, 400)]


def test_reasons_for_declining():
    x, w = _arrays((2, 8, 20, 20), (8, 8, 9, 9), np.float32)
    geom = _geometry(x, w, 1, 4, 1, 1)
    f32, f64 = np.dtype(np.float32), np.dtype(np.float64)
    assert FFT.supports(geom, f32, "forward") is None
    assert "forward only" in FFT.supports(geom, f32, "weight_grad")
    fastconv.set_accuracy(1e-8)
    reason = FFT.supports(geom, f32, "forward")
    assert "estimated relative error" in reason and "max_relative_error=1e-08" in reason
    assert FFT.supports(geom, f64, "forward") is None  # float64 rounding is far below it
    fastconv.set_accuracy(1e-5)
    fastconv.set_workspace_limit(0.001)
    assert "workspace budget" in FFT.supports(geom, f32, "forward")
    with pytest.raises(ValueError, match="fastconv.set_workspace_limit"):
        fastconv.conv2d(x, w, padding=4, algorithm="fft")
