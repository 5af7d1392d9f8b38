"""What arrays are accepted and what comes back: array-likes, layouts, dtypes, batching; inputs untouched."""

from __future__ import annotations

import numpy as np
import pytest

import fastconv
from fastconv import functional as fc
from fastconv import grad as fg

RNG = np.random.default_rng(0)
X = RNG.standard_normal((2, 4, 9, 8))
W = RNG.standard_normal((6, 2, 3, 2))
B = RNG.standard_normal(6)
KW = dict(stride=(2, 1), padding=(1, 0), dilation=(1, 2), groups=2)


def _layouts(a):
    yield "list", a.tolist()
    yield "fortran", np.asfortranarray(a)
    yield "negative strides", np.ascontiguousarray(a[..., ::-1])[..., ::-1]
    big = np.zeros(tuple(2 * n for n in a.shape))
    view = big[tuple(slice(None, None, 2) for _ in a.shape)]
    view[...] = a
    yield "strided view", view


@pytest.mark.parametrize("which", ["input", "weight", "bias"])
def test_any_layout_gives_the_contiguous_result(which):
    expected = fc.conv2d(X, W, B, **KW)
    for label, variant in _layouts({"input": X, "weight": W, "bias": B}[which]):
        args = {"input": X, "weight": W, "bias": B, which: variant}
        before = np.array(variant, copy=True)
        np.testing.assert_allclose(fc.conv2d(**args, **KW), expected, rtol=1e-12, atol=1e-12, err_msg=label)
        np.testing.assert_array_equal(np.asarray(variant), before, err_msg=f"{label} was modified")


def test_gradients_accept_views_and_leave_them_untouched():
    dy = RNG.standard_normal(fc.conv2d(X, W, **KW).shape)
    expected_in, expected_w = fg.conv2d_input(X.shape, W, dy, **KW), fg.conv2d_weight(X, W.shape, dy, **KW)
    for (label, dyv), (_, xv) in zip(_layouts(dy), _layouts(X)):
        np.testing.assert_allclose(fg.conv2d_input(list(X.shape), W, dyv, **KW), expected_in, err_msg=label)
        np.testing.assert_allclose(fg.conv2d_weight(xv, W.shape, dyv, **KW), expected_w, err_msg=label)


@pytest.mark.parametrize("dtype", ["float16", "float32", "float64", "complex64", "complex128"])
def test_output_dtype_is_input_dtype(dtype):
    x, w = X.astype(dtype), W.astype(dtype)
    assert fc.conv2d(x, w, **KW).dtype == dtype
    assert fc.conv_transpose2d(fc.conv2d(x, w, **KW), w, **KW).dtype == dtype
    dy = fc.conv2d(x, w, **KW)
    assert fg.conv2d_input(x.shape, w, dy, **KW).dtype == dtype
    assert fg.conv2d_weight(x, w.shape, dy, **KW).dtype == dtype
    assert fg.conv_bias(dy).dtype == dtype


def test_float16_is_computed_in_float32():
    x16, w16 = X.astype(np.float16), W.astype(np.float16)
    in_float32 = fc.conv2d(x16.astype(np.float32), w16.astype(np.float32), **KW).astype(np.float16)
    np.testing.assert_array_equal(fc.conv2d(x16, w16, **KW), in_float32)


def test_unbatched_equals_batched_first_item():
    np.testing.assert_array_equal(fc.conv2d(X[0], W, B, **KW), fc.conv2d(X[:1], W, B, **KW)[0])
    y = fc.conv2d(X, W, **KW)
    np.testing.assert_array_equal(fc.conv_transpose2d(y[1], W, **KW), fc.conv_transpose2d(y, W, **KW)[1])


def test_padding_modes_match_explicit_padding():
    for mode, np_mode in (("reflect", "reflect"), ("replicate", "edge"), ("circular", "wrap")):
        padded = np.pad(X, [(0, 0), (0, 0), (2, 2), (1, 1)], mode=np_mode)
        np.testing.assert_allclose(fc.conv2d(X, W, padding=(2, 1), groups=2, padding_mode=mode),
                                   fc.conv2d(padded, W, groups=2), err_msg=mode)


def test_explain_names_the_choice_and_the_rejections():
    plan = fastconv.plan_for("conv2d", (2, 4, 9, 8), (6, 2, 3, 2), groups=2)
    text = plan.explain()
    assert "->" in text and plan.choice.algorithm in text and "reference" in text
    forced = fastconv.plan_for("conv2d", (2, 4, 9, 8), (6, 2, 3, 2), groups=2, algorithm="reference")
    assert forced.choice.algorithm == "reference" and "forced" in forced.explain()
