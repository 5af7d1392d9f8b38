"""The depthwise plug-in through the public API, against torch autograd in float64: 1-D to 3-D,
channel multipliers 1 (one output per pass) and 4+ (four outputs sharing loads), odd strides."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch_ref import t

import fastconv
from fastconv import grad as fg

CASES = [  # (input shape, multiplier, kernel, stride, padding, dilation)
    ((2, 3, 13), 1, (5,), 2, 2, 2),
    ((1, 2, 40), 5, (4,), 3, 1, 1),
    ((2, 3, 9, 8), 1, (3, 3), 1, 1, 1),
    ((2, 2, 12, 11), 4, (5, 3), (2, 3), (2, 0), (1, 2)),
    ((1, 2, 5, 6, 7), 2, (3, 2, 3), (1, 2, 1), 1, (2, 1, 1)),
]


@pytest.mark.parametrize("case", CASES, ids=str)
def test_depthwise_matches_torch_autograd(case):
    shape, multiplier, kernel, stride, padding, dilation = case
    nd = len(kernel)
    channels = shape[1]
    rng = np.random.default_rng(7)
    x = rng.standard_normal(shape)
    w = rng.standard_normal((channels * multiplier, 1, *kernel))
    kw = {"stride": stride, "padding": padding, "dilation": dilation, "groups": channels}
    xt, wt = t(x).requires_grad_(True), t(w).requires_grad_(True)
    yt = getattr(torch.nn.functional, f"conv{nd}d")(xt, wt, **kw)
    dy = rng.standard_normal(tuple(yt.shape))
    yt.backward(t(dy))
    y = getattr(fastconv, f"conv{nd}d")(x, w, **kw, algorithm="depthwise")
    dx = getattr(fg, f"conv{nd}d_input")(shape, w, dy, **kw, algorithm="depthwise")
    dw = getattr(fg, f"conv{nd}d_weight")(x, w.shape, dy, **kw, algorithm="depthwise")
    for ours, theirs in ((y, yt), (dx, xt.grad), (dw, wt.grad)):
        np.testing.assert_allclose(ours, theirs.detach().numpy(), rtol=1e-10, atol=1e-10)


def test_depthwise_unbatched_float32():
    rng = np.random.default_rng(8)
    x = rng.standard_normal((4, 10, 9)).astype(np.float32)
    w = rng.standard_normal((4, 1, 3, 3)).astype(np.float32)
    ours = fastconv.conv2d(x, w, padding="same", groups=4, algorithm="depthwise")
    expected = torch.nn.functional.conv2d(t(x.astype(np.float64)), t(w.astype(np.float64)), padding="same", groups=4)
    assert ours.dtype == np.float32 and ours.shape == (4, 10, 9)
    assert np.linalg.norm(ours - expected.numpy()) / np.linalg.norm(expected.numpy()) < 1e-6


def test_planner_offers_depthwise_for_depthwise_layers():
    plan = fastconv.plan_for("conv2d", (4, 32, 28, 28), (32, 1, 3, 3), padding=1, groups=32)
    assert any(c.algorithm == "depthwise" and c.cost is not None for c in plan.candidates)
    dense = fastconv.plan_for("conv2d", (4, 32, 28, 28), (32, 32, 3, 3), padding=1)
    assert all(c.cost is None for c in dense.candidates if c.algorithm == "depthwise")
