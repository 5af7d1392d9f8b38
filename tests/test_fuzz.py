"""Hypothesis draws geometries torch accepts (and some it refuses) and compares fastconv with torch in float64."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fastconv
from fastconv import grad as fg

settings.register_profile("ci", max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("ci")


@st.composite
def geometries(draw, transposed=False):
    nd = draw(st.integers(1, 3))
    per_dim = lambda lo, hi: st.tuples(*[st.integers(lo, hi)] * nd)  # noqa: E731
    groups = draw(st.integers(1, 3))
    cin, cout = groups * draw(st.integers(1, 2)), groups * draw(st.integers(1, 2))
    return dict(
        nd=nd, batch=draw(st.integers(0, 2)), cin=cin, cout=cout, groups=groups,
        size=draw(per_dim(1, 7)), kernel=draw(per_dim(1, 4)), stride=draw(per_dim(1, 3)),
        dilation=draw(per_dim(1, 3)), padding=draw(per_dim(0, 3)), bias=draw(st.booleans()),
        output_padding=draw(per_dim(0, 2)), seed=draw(st.integers(0, 2**16)),
    )


def _outcome(call):
    try:
        return call(), None
    except Exception as exc:  # noqa: BLE001 - we compare whether both sides refuse
        return None, exc


def _arrays(g, transposed):
    rng = np.random.default_rng(g["seed"])
    x = rng.standard_normal((g["batch"], g["cin"], *g["size"]))
    wshape = (g["cin"], g["cout"] // g["groups"]) if transposed else (g["cout"], g["cin"] // g["groups"])
    w = rng.standard_normal((*wshape, *g["kernel"]))
    b = rng.standard_normal(g["cout"]) if g["bias"] else None
    return x, w, b


@given(geometries())
def test_conv_agrees_with_torch_or_both_refuse(g):
    x, w, b = _arrays(g, transposed=False)
    kw = dict(stride=g["stride"], padding=g["padding"], dilation=g["dilation"], groups=g["groups"])
    t = lambda a: None if a is None else torch.from_numpy(a)  # noqa: E731
    expected, torch_error = _outcome(lambda: F.__dict__[f"conv{g['nd']}d"](t(x), t(w), t(b), **kw).numpy())
    ours, our_error = _outcome(lambda: fastconv.conv(x, w, b, **kw))
    assert (torch_error is None) == (our_error is None), (torch_error, our_error)
    if our_error is not None:
        assert isinstance(our_error, (ValueError, TypeError)), our_error
        return
    np.testing.assert_allclose(ours, expected, rtol=1e-10, atol=1e-10)
    if g["batch"]:
        dy = np.random.default_rng(1).standard_normal(ours.shape)
        lhs = np.vdot(ours - (0 if b is None else b.reshape(-1, *[1] * g["nd"])), dy)
        assert np.isclose(lhs, np.vdot(x, fg.conv_input(x.shape, w, dy, **kw)))
        assert np.isclose(lhs, np.vdot(w, fg.conv_weight(x, w.shape, dy, **kw)))


@given(geometries(transposed=True))
def test_conv_transpose_agrees_with_torch_or_both_refuse(g):
    x, w, b = _arrays(g, transposed=True)
    kw = dict(stride=g["stride"], padding=g["padding"], output_padding=g["output_padding"],
              dilation=g["dilation"], groups=g["groups"])
    t = lambda a: None if a is None else torch.from_numpy(a)  # noqa: E731
    expected, torch_error = _outcome(lambda: F.__dict__[f"conv_transpose{g['nd']}d"](t(x), t(w), t(b), **kw).numpy())
    ours, our_error = _outcome(lambda: fastconv.conv_transpose(x, w, b, **kw))
    if g["batch"] == 0 and torch_error is None:
        # torch skips output_padding checks on an empty batch; fastconv validates every call alike
        one = np.ones((1, *x.shape[1:]))
        torch_error = _outcome(lambda: F.__dict__[f"conv_transpose{g['nd']}d"](t(one), t(w), t(b), **kw))[1]
    assert (torch_error is None) == (our_error is None), (torch_error, our_error)
    if our_error is not None:
        assert isinstance(our_error, (ValueError, TypeError)), our_error
        return
    np.testing.assert_allclose(ours, expected, rtol=1e-10, atol=1e-10)
