"""Parity with torch on the generated case list: forward, transposed and gradients, every dtype."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import fastconv
from fastconv import functional as fc
from fastconv import grad as fg

from cases import arrays, case_id, explicit_padding, forward_cases, kwargs, transposed_cases
from torch_ref import assert_close, conv as torch_conv, conv_transpose as torch_conv_transpose, t

FORWARD = forward_cases()
TRANSPOSED = transposed_cases()
FUNCS = {1: fc.conv1d, 2: fc.conv2d, 3: fc.conv3d}
FUNCS_T = {1: fc.conv_transpose1d, 2: fc.conv_transpose2d, 3: fc.conv_transpose3d}
# float64 on every case; the other dtypes on a spread of cases
DTYPE_CASES = [(c, "float64") for c in FORWARD] + [
    (c, dt) for i, c in enumerate(FORWARD) for dt in ("float32", "float16", "complex64", "complex128") if i % 5 == 0
]


@pytest.mark.parametrize("case,dtype", DTYPE_CASES, ids=[f"{dt}-{case_id(c)}" for c, dt in DTYPE_CASES])
def test_forward_matches_torch(case, dtype):
    x, w, b = arrays(case, dtype)
    ours = FUNCS[case["nd"]](x, w, b, **kwargs(case))
    expected, *_ = torch_conv(x, w, b, case["nd"], **kwargs(case))
    assert_close(ours, expected.detach().numpy(), dtype)
    # the N-d entry point is the same function
    np.testing.assert_array_equal(fastconv.conv(x, w, b, **kwargs(case)), ours)


T_DTYPE_CASES = [(c, "float64") for c in TRANSPOSED] + [
    (c, dt) for i, c in enumerate(TRANSPOSED) for dt in ("float32", "float16", "complex128") if i % 6 == 0
]


@pytest.mark.parametrize("case,dtype", T_DTYPE_CASES, ids=[f"{dt}-{case_id(c)}" for c, dt in T_DTYPE_CASES])
def test_transposed_matches_torch(case, dtype):
    x, w, b = arrays(case, dtype, transposed=True)
    ours = FUNCS_T[case["nd"]](x, w, b, **kwargs(case))
    assert_close(ours, torch_conv_transpose(x, w, b, case["nd"], **kwargs(case)), dtype)
    np.testing.assert_array_equal(fastconv.conv_transpose(x, w, b, **kwargs(case)), ours)


GRAD_CASES = [c for c in FORWARD if c["padding"] != "same"]


@pytest.mark.parametrize("dtype", ["float64", "complex128"])
@pytest.mark.parametrize("case", GRAD_CASES, ids=map(case_id, GRAD_CASES))
def test_gradients_match_torch_autograd(case, dtype):
    if dtype == "complex128" and GRAD_CASES.index(case) % 4:
        pytest.skip("complex gradients on a spread of cases")
    nd = case["nd"]
    x, w, b = arrays(dict(case, batch=case["batch"] or 1), dtype)
    kw = kwargs(case)
    y, xt, wt, bt = torch_conv(x, w, b, nd, requires_grad=True, **kw)
    dy = arrays(dict(case, batch=x.shape[0], cin=case["cout"], size=tuple(y.shape[2:]), bias=False), dtype, seed=1)[0]
    y.backward(t(dy))
    grad_kw = dict(kw, padding=0 if kw["padding"] == "valid" else kw["padding"])
    name = f"conv{nd}d"
    assert_close(getattr(fg, f"{name}_input")(x.shape, w, dy, **grad_kw), xt.grad.numpy(), dtype)
    assert_close(getattr(fg, f"{name}_weight")(x, w.shape, dy, **grad_kw), wt.grad.numpy(), dtype)
    if b is not None:
        assert_close(fg.conv_bias(dy), bt.grad.numpy(), dtype)


@pytest.mark.parametrize("case", [c for c in GRAD_CASES if explicit_padding(c) is not None][::3], ids=case_id)
def test_gradients_match_torch_nn_grad(case):
    nd = case["nd"]
    x, w, _ = arrays(dict(case, batch=2), "float64")
    kw = dict(kwargs(case), padding=explicit_padding(case))
    y, *_ = torch_conv(x, w, None, nd, **kw)
    dy = np.random.default_rng(3).standard_normal(tuple(y.shape))
    tg = torch.nn.grad
    name = f"conv{nd}d"
    expected_in = getattr(tg, f"{name}_input")(x.shape, t(w), t(dy), **kw).numpy()
    expected_w = getattr(tg, f"{name}_weight")(t(x), w.shape, t(dy), **kw).numpy()
    assert_close(getattr(fg, f"{name}_input")(x.shape, w, dy, **kw), expected_in, "float64")
    assert_close(getattr(fg, f"{name}_weight")(x, w.shape, dy, **kw), expected_w, "float64")
    assert_close(fg.conv_input(x.shape, w, dy, **kw), expected_in, "float64")
    assert_close(fg.conv_weight(x, w.shape, dy, **kw), expected_w, "float64")


@pytest.mark.parametrize("case", FORWARD, ids=map(case_id, FORWARD))
def test_adjoint_identity(case):
    """<conv(x, w), g> = <x, conv_input(g)> = <w, conv_weight(x, g)>, exactly up to rounding."""
    if case["padding"] == "same":
        pytest.skip("gradient APIs take explicit padding")
    x, w, _ = arrays(dict(case, batch=case["batch"] or 1), "float64")
    kw = dict(kwargs(case), padding=0 if case["padding"] == "valid" else case["padding"])
    y = fastconv.conv(x, w, **kw)
    g = np.random.default_rng(7).standard_normal(y.shape)
    lhs = np.vdot(y, g)
    assert np.isclose(lhs, np.vdot(x, fg.conv_input(x.shape, w, g, **kw)), rtol=1e-10, atol=1e-10)
    assert np.isclose(lhs, np.vdot(w, fg.conv_weight(x, w.shape, g, **kw)), rtol=1e-10, atol=1e-10)


INVERTIBLE = [c for c in TRANSPOSED if all(op < s for op, s in zip(c["output_padding"], c["stride"]))]


@pytest.mark.parametrize("case", INVERTIBLE[::2], ids=case_id)
def test_transposed_is_the_input_gradient(case):
    """conv_transpose(y, w) is exactly conv_input of the forward convolution that maps back
    (when output_padding < stride, so that the forward convolution of that size returns y's size)."""
    x, w, _ = arrays(dict(case, batch=2), "float64", transposed=True)
    kw = kwargs(case)
    out = fastconv.conv_transpose(x, w, **kw)
    fwd = {k: kw[k] for k in ("stride", "padding", "dilation", "groups")}
    np.testing.assert_allclose(fg.conv_input(out.shape, w, x, **fwd), out, rtol=1e-12, atol=1e-12)


def test_finite_differences():
    """The gradients are the derivatives: central differences of a scalar loss in float64."""
    rng = np.random.default_rng(0)
    x, w = rng.standard_normal((2, 4, 6, 5)), rng.standard_normal((6, 2, 3, 2))
    kw = dict(stride=(2, 1), padding=((1, 0), (2, 1)), dilation=(1, 2), groups=2)
    g = rng.standard_normal(fastconv.conv2d(x, w, **kw).shape)

    def loss(x_, w_):
        return float(np.sum(fastconv.conv2d(x_, w_, **kw) * g))

    dx, dw = fg.conv2d_input(x.shape, w, g, **kw), fg.conv2d_weight(x, w.shape, g, **kw)
    eps = 1e-6
    for arr, grad in ((x, dx), (w, dw)):
        for idx in [tuple(rng.integers(0, s) for s in arr.shape) for _ in range(8)]:
            bumped = arr.copy()
            bumped[idx] += eps
            up = loss(bumped, w) if arr is x else loss(x, bumped)
            bumped[idx] -= 2 * eps
            down = loss(bumped, w) if arr is x else loss(x, bumped)
            assert abs((up - down) / (2 * eps) - grad[idx]) < 1e-6


def test_four_dimensional_conv():
    """The N-d entry points reach beyond 3-D: 4-D checked against a sum of 3-D convolutions,
    and its transposed convolution against the adjoint identity <conv_t(y, w), x> = <y, conv(x, w)>."""
    rng = np.random.default_rng(4)
    x, w = rng.standard_normal((2, 2, 4, 5, 4, 3)), rng.standard_normal((3, 2, 2, 2, 3, 2))
    y = fastconv.conv(x, w, padding=(0, 1, 1, 1))
    expected = np.stack([sum(fc.conv3d(x[:, :, j + i], w[:, :, i], padding=1) for i in range(2))
                         for j in range(y.shape[2])], axis=2)
    np.testing.assert_allclose(y, expected, rtol=1e-12, atol=1e-12)
    g = rng.standard_normal(y.shape)
    back = fastconv.conv_transpose(g, w, padding=(0, 1, 1, 1))
    assert back.shape == x.shape
    assert np.isclose(np.vdot(back, x), np.vdot(g, y))
