"""Transposed convolution by sub-pixel decomposition: against torch's conv_transpose in float64
(stride, padding, output_padding including output_padding >= stride under dilation, groups,
kernels that are and are not multiples of the stride), against the reference algorithm on
cropping geometries, with tiles forced by a tiny workspace, and in complex dtypes."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch_ref import t

import fastconv
from fastconv import _config
from fastconv._errors import CallContext
from fastconv._geometry import ConvGeometry
from fastconv.algorithms import ALGORITHMS

SUBPIXEL, REFERENCE = ALGORITHMS["subpixel"], ALGORITHMS["reference"]

# (input shape, weight shape, stride, padding, output_padding, dilation, groups)
TRANSPOSED = [
    ((2, 6, 5, 4), (6, 3, 2, 2), 2, 0, 0, 1, 1),  # kernel == stride: one matmul and a pixel shuffle
    ((2, 4, 4, 5), (4, 3, 4, 4), 2, 1, 0, 1, 1),  # DCGAN: kernel a multiple of the stride
    ((1, 4, 9), (4, 2, 16), 8, 4, 0, 1, 2),  # HiFi-GAN-like 1-D, grouped
    ((2, 4, 5, 6), (4, 3, 3, 3), 2, 1, 1, 1, 2),  # 3 taps at stride 2: phases with 2 and 1 taps
    ((1, 3, 5, 4), (3, 2, 3, 2), (3, 2), (2, 0), (1, 1), (1, 1), 1),  # per-dimension stride, output_padding
    ((2, 2, 6), (2, 3, 3), 2, 1, 2, 3, 1),  # output_padding >= stride (allowed below the dilation)
    ((1, 2, 4, 5), (2, 2, 3, 2), 2, 0, (3, 1), (4, 2), 1),  # output_padding 3 >= stride 2, dilation 4
    ((1, 4, 3, 4, 3), (4, 2, 2, 2, 2), 2, 0, 0, 1, 1),  # U-Net 3-D upsampling
    ((1, 4, 3, 4, 5), (4, 1, 3, 2, 4), (2, 1, 3), (1, 0, 2), (1, 0, 2), (1, 2, 1), 2),  # 3-D, everything
]


def _draw(shape, dtype, rng):
    a = rng.standard_normal(shape)
    return (a + 1j * rng.standard_normal(shape) if np.dtype(dtype).kind == "c" else a).astype(dtype)


@pytest.mark.parametrize("workspace", ["default", "tiny"])
@pytest.mark.parametrize("xs, ws, stride, padding, output_padding, dilation, groups", TRANSPOSED)
def test_matches_torch_float64(xs, ws, stride, padding, output_padding, dilation, groups, workspace, workers,
                               request):
    if workspace == "tiny":
        request.getfixturevalue("tiny_workspace")
    nd = len(ws) - 2
    rng = np.random.default_rng(0)
    x, w, b = _draw(xs, np.float64, rng), _draw(ws, np.float64, rng), _draw((ws[1] * groups,), np.float64, rng)
    kw = {"stride": stride, "padding": padding, "output_padding": output_padding, "dilation": dilation,
          "groups": groups}
    plan = fastconv.plan_for(f"conv_transpose{nd}d", xs, ws, "float64", algorithm="subpixel", **kw)
    assert plan.choice.algorithm == "subpixel" and plan.choice.route == "native"
    ours = getattr(fastconv, f"conv_transpose{nd}d")(x, w, b, algorithm="subpixel", **kw)
    expected = getattr(torch.nn.functional, f"conv_transpose{nd}d")(t(x), t(w), t(b), **kw).numpy()
    np.testing.assert_allclose(ours, expected, rtol=1e-11, atol=1e-11)


@pytest.mark.parametrize("xs, ws, stride, padding, output_padding, dilation, groups", TRANSPOSED)
def test_output_needs_no_zeroing(xs, ws, stride, padding, output_padding, dilation, groups, monkeypatch, workers):
    """Where the phase windows cover the output, it is allocated uninitialised and stored into
    once per element: NaN-filled allocations must not leak into the result."""
    from fastconv.algorithms import subpixel
    empty = np.empty
    monkeypatch.setattr(subpixel.np, "empty", lambda shape, dtype=float: (
        np.full(shape, np.nan, dtype=dtype) if np.dtype(dtype).kind in "fc" else empty(shape, dtype)))
    nd = len(ws) - 2
    rng = np.random.default_rng(1)
    x, w = _draw(xs, np.float64, rng), _draw(ws, np.float64, rng)
    kw = {"stride": stride, "padding": padding, "output_padding": output_padding, "dilation": dilation,
          "groups": groups}
    ours = getattr(fastconv, f"conv_transpose{nd}d")(x, w, algorithm="subpixel", **kw)
    expected = getattr(torch.nn.functional, f"conv_transpose{nd}d")(t(x), t(w), **kw).numpy()
    np.testing.assert_allclose(ours, expected, rtol=1e-11, atol=1e-11)


@pytest.mark.parametrize("padding", [((-2, 1), (3, -1)), ((0, -3), (-1, 4))])
def test_cropping_geometries_match_reference(padding, tiny_workspace, workers):
    """Negative and uneven padding, as derived geometries produce them (including a crop wider than
    a phase row, and padding wider than the kernel's reach)."""
    geom = ConvGeometry(2, 4, 6, 2, (11, 9), (3, 4), (2, 3), (2, 1), padding)
    rng = np.random.default_rng(1)
    w, dy = _draw(geom.weight_shape, np.float64, rng), _draw(geom.output_shape, np.float64, rng)
    np.testing.assert_allclose(SUBPIXEL.input_grad(dy, w, geom), REFERENCE.input_grad(dy, w, geom), rtol=1e-12,
                               atol=1e-12)


@pytest.mark.parametrize("dtype", [np.complex128, np.complex64])
def test_complex_matches_reference(dtype):
    geom = ConvGeometry.for_conv_transpose((2, 4, 5, 6), (4, 3, 3, 4), 2, 1, 1, 1, 2, CallContext("test"))
    rng = np.random.default_rng(2)
    w, dy = _draw(geom.weight_shape, dtype, rng), _draw(geom.output_shape, dtype, rng)
    ours, expected = SUBPIXEL.input_grad(dy, w, geom), REFERENCE.input_grad(dy, w, geom)
    assert ours.dtype == dtype
    tol = 1e-12 if dtype == np.complex128 else 1e-5
    assert np.abs(ours - expected).max() <= tol * np.abs(expected).max()


def test_float32_error_within_budget():
    geom = ConvGeometry.for_conv_transpose((2, 8, 6, 6), (8, 4, 4, 4), 2, 1, 0, 1, 1, CallContext("test"))
    rng = np.random.default_rng(3)
    w, dy = _draw(geom.weight_shape, np.float64, rng), _draw(geom.output_shape, np.float64, rng)
    truth = REFERENCE.input_grad(dy, w, geom)
    ours = SUBPIXEL.input_grad(dy.astype(np.float32), w.astype(np.float32), geom)
    assert ours.dtype == np.float32
    assert np.linalg.norm(ours - truth) / np.linalg.norm(truth) <= _config.max_relative_error


def test_output_beyond_every_input_is_zero():
    """Padding so large on the low side that no phase row reaches the output window."""
    geom = ConvGeometry(1, 2, 2, 1, (3,), (2,), (2,), (1,), ((9, -9),))
    dy = np.ones(geom.output_shape)
    np.testing.assert_array_equal(SUBPIXEL.input_grad(dy, np.ones(geom.weight_shape), geom),
                                  REFERENCE.input_grad(dy, np.ones(geom.weight_shape), geom))


def test_declines_with_reasons():
    f32 = np.dtype("float32")
    strided = ConvGeometry(1, 2, 2, 1, (8, 8), (2, 2), (2, 2), (1, 1), ((0, 0), (0, 0)))
    assert "input_grad" in SUBPIXEL.supports(strided, f32, "forward")
    assert "input_grad" in SUBPIXEL.supports(strided, f32, "weight_grad")
    unit = ConvGeometry(1, 2, 2, 1, (8,), (3,), (1,), (1,), ((1, 1),))
    assert "stride 1" in SUBPIXEL.supports(unit, f32, "input_grad")
    assert SUBPIXEL.supports(strided, f32, "input_grad") is None
