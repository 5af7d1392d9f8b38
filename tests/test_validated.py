"""Validation outcomes remembered between identical calls (``_validated``): a remembered call
gives the same result, and anything its checks depend on that differs is checked afresh."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch_ref import t

import fastconv as fc
from fastconv import _validated
from fastconv import grad as G

RNG = np.random.default_rng(0)
X, W = RNG.standard_normal((2, 4, 9, 9)), RNG.standard_normal((6, 2, 3, 3))


def test_repeated_calls_are_remembered_and_agree():
    _validated._KNOWN.clear()
    first = fc.conv2d(X, W, stride=2, padding=1, groups=2)
    assert len(_validated._KNOWN) == 1
    again = fc.conv2d(X, W, stride=2, padding=1, groups=2)
    assert len(_validated._KNOWN) == 1
    np.testing.assert_array_equal(first, again)
    np.testing.assert_allclose(again, torch.nn.functional.conv2d(t(X), t(W), stride=2, padding=1, groups=2).numpy(),
                               rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("valid, invalid, error", [
    (dict(stride=1), dict(stride=True), TypeError),  # equal as keys of a dict, not to the checks
    (dict(stride=2), dict(stride=2.0), TypeError),
    (dict(padding=1), dict(padding=(1, 1, 1)), ValueError),
])
def test_a_remembered_call_does_not_let_a_different_one_through(valid, invalid, error):
    fc.conv2d(X, W, groups=2, **valid)
    with pytest.raises(error, match="conv2d"):
        fc.conv2d(X, W, groups=2, **invalid)


def test_operands_that_differ_in_dtype_or_rank_are_checked_afresh():
    fc.conv2d(X, W, groups=2)
    with pytest.raises(TypeError, match="dtype"):
        fc.conv2d(X.astype(np.float32), W, groups=2)
    unbatched = fc.conv2d(X[0], W, groups=2)
    assert unbatched.shape == (6, 7, 7)
    np.testing.assert_allclose(fc.conv2d(X[0], W, groups=2), fc.conv2d(X, W, groups=2)[0], rtol=1e-12)
    with pytest.raises(ValueError, match="bias"):
        fc.conv2d(X, W, np.zeros(5), groups=2)


def test_non_array_operands_are_not_remembered():
    _validated._KNOWN.clear()
    fc.conv1d(X[0, :, 0].tolist(), W[:, :, 0], groups=2)
    assert not _validated._KNOWN


def test_gradients_and_transposed_calls_are_remembered_per_argument():
    y = fc.conv2d(X, W, padding=1, groups=2)
    for _ in range(2):
        dx = G.conv2d_input(X.shape, W, y, padding=1, groups=2)
        dw = G.conv2d_weight(X, W.shape, y, padding=1, groups=2)
        up = fc.conv_transpose2d(y, W, padding=1, groups=2)
    np.testing.assert_allclose(dx, up, rtol=1e-12, atol=1e-12)
    expected = torch.nn.grad.conv2d_weight(t(X), W.shape, t(y), padding=1, groups=2).numpy()
    np.testing.assert_allclose(dw, expected, rtol=1e-10, atol=1e-10)
    with pytest.raises(ValueError, match="input_size"):
        G.conv2d_input((2, 4, 9, 10, 1), W, y, padding=1, groups=2)
    with pytest.raises(ValueError, match="weight_size"):
        G.conv2d_weight(X, (6, 2, 3), y, padding=1, groups=2)


def test_the_memory_is_bounded(monkeypatch):
    monkeypatch.setattr(_validated, "_KNOWN_MAX", 3)
    _validated._KNOWN.clear()
    for size in range(5, 10):
        fc.conv1d(X[:, :, :size, 0], W[:, :, :, 0], groups=2)
    assert 1 <= len(_validated._KNOWN) <= 3
