"""Module mechanics (registration, state_dict, load_state_dict, Sequential), the padding adjoint,
and fastconv.nn.init against torch.nn.init."""

from __future__ import annotations

import math
from collections import OrderedDict

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn as tnn

from fastconv import nn
from fastconv.nn import _padding, init


def _nested():
    ours = nn.Sequential(nn.Conv2d(1, 4, 3), nn.Sequential(nn.Conv2d(4, 4, 1, bias=False)),
                         nn.SeparableConv2d(4, 2, 3), nn.ConvTranspose2d(2, 1, 2))
    theirs = tnn.Sequential(tnn.Conv2d(1, 4, 3), tnn.Sequential(tnn.Conv2d(4, 4, 1, bias=False)),
                            tnn.Sequential(OrderedDict(depthwise=tnn.Conv2d(4, 4, 3, groups=4, bias=False),
                                                       pointwise=tnn.Conv2d(4, 2, 1))),
                            tnn.ConvTranspose2d(2, 1, 2))
    return ours, theirs


def test_state_dict_keys_and_shapes_match_torch():
    ours, theirs = _nested()
    expected = {k: tuple(v.shape) for k, v in theirs.state_dict().items()}
    assert {k: v.shape for k, v in ours.state_dict().items()} == expected
    assert list(ours.state_dict()) == list(theirs.state_dict())
    assert [n for n, _ in ours.named_parameters()] == [n for n, _ in theirs.named_parameters()]


def test_whole_torch_model_loads_and_matches():
    ours, theirs = _nested()
    ours.load_state_dict(theirs.state_dict())
    x = np.random.default_rng(0).standard_normal((2, 1, 9, 9)).astype(np.float32)
    np.testing.assert_allclose(ours(x), theirs(torch.from_numpy(x)).detach().numpy(), atol=1e-5)


def test_state_dict_shares_memory_and_load_copies_in_place():
    layer = nn.Conv1d(1, 2, 3, generator=0)
    state = layer.state_dict()
    assert state["weight"] is layer.weight.data
    before = layer.weight.data
    new = np.full((2, 1, 3), 0.5, np.float16)  # float16 -> float32 is lossless: accepted
    layer.load_state_dict({"weight": new, "bias": [1.0, 2.0]})
    assert layer.weight.data is before and np.all(before == 0.5)
    np.testing.assert_array_equal(layer.bias.data, [1, 2])


def _snapshot(module):
    return {k: v.copy() for k, v in module.state_dict().items()}


@pytest.mark.parametrize("change,error,match", [
    (lambda s: s.pop("2.depthwise.weight"), ValueError, r"missing key\(s\) \['2.depthwise.weight'\]"),
    (lambda s: s.update({"2.extra": np.zeros(1)}), ValueError, r"unexpected key\(s\) \['2.extra'\]"),
    (lambda s: s.update({"3.weight": np.zeros((2, 1, 3, 3), np.float32)}), ValueError,
     r"size mismatch for '3.weight': got shape \(2, 1, 3, 3\).*\(2, 1, 2, 2\)"),
    (lambda s: s.update({"3.bias": np.zeros(1, np.float64)}), TypeError, r"dtype mismatch for '3.bias': got float64"),
    (lambda s: s.update({"3.bias": np.zeros(1, np.int64)}), TypeError, r"'3.bias'"),
])
def test_bad_state_dicts_name_the_key_and_change_nothing(change, error, match):
    ours, theirs = _nested()
    state = {k: v.detach().numpy().copy() for k, v in theirs.state_dict().items()}
    change(state)
    before = _snapshot(ours)
    with pytest.raises(error, match=match):
        ours.load_state_dict(state)
    for key, value in ours.state_dict().items():
        np.testing.assert_array_equal(value, before[key])


def test_non_strict_loading_reports_keys():
    layer = nn.Conv2d(1, 1, 3)
    result = layer.load_state_dict({"weight": np.ones((1, 1, 3, 3), np.float32), "other": np.zeros(2)}, strict=False)
    assert result == nn.IncompatibleKeys(["bias"], ["other"])
    assert np.all(layer.weight.data == 1)
    with pytest.raises(TypeError, match="mapping"):
        layer.load_state_dict([("weight", np.ones(1))])


def test_registration_and_traversal():
    net = nn.Sequential(nn.Conv1d(1, 2, 3), nn.Conv1d(2, 2, 1, bias=False))
    assert len(net) == 2 and isinstance(net[1], nn.Conv1d) and len(net[:1]) == 1
    assert [name for name, _ in net.named_modules()] == ["", "0", "1"]
    assert len(list(net.parameters())) == 3
    net.append(nn.Conv1d(2, 1, 1))
    assert list(net.state_dict())[-2:] == ["2.weight", "2.bias"]
    with pytest.raises(TypeError, match="holds a Parameter"):
        net[0].weight = np.zeros((2, 1, 3))
    net[0].bias = None
    assert "0.bias" not in net.state_dict()
    with pytest.raises(TypeError, match="fastconv.nn.Module"):
        nn.Sequential(tnn.Conv1d(1, 1, 1))
    shared = nn.Conv1d(1, 1, 1)
    assert len(list(nn.Sequential(shared, shared).parameters())) == 2  # each shared parameter once


def test_custom_modules_train_inside_sequential():
    class Square(nn.Module):
        def forward(self, x):
            self.x = x
            return x * x

        def backward(self, grad):
            return 2 * self.x * grad

    net = nn.Sequential(nn.Conv1d(1, 2, 3, dtype=np.float64, generator=0), Square())
    theirs = tnn.Conv1d(1, 2, 3, dtype=torch.float64)
    theirs.load_state_dict({k: torch.from_numpy(v) for k, v in net[0].state_dict().items()})
    x = np.random.default_rng(0).standard_normal((2, 1, 6))
    xt = torch.tensor(x, requires_grad=True)
    (theirs(xt) ** 2).sum().backward()
    y = net(x)
    dx = net.backward(np.ones_like(y))
    np.testing.assert_allclose(dx, xt.grad.numpy(), atol=1e-12)
    np.testing.assert_allclose(net[0].weight.grad, theirs.weight.grad.numpy(), atol=1e-12)
    assert repr(net).endswith("(1): Square()\n)")
    with pytest.raises(NotImplementedError, match="Module does not implement forward"):
        nn.Module()(x)


def test_parameter_behaves_like_its_array():
    p = nn.Parameter(np.arange(3.0))
    assert p.shape == (3,) and p.ndim == 1 and p.dtype == np.float64
    np.testing.assert_array_equal(np.asarray(p), [0, 1, 2])
    assert repr(p).startswith("Parameter containing:\narray([0., 1., 2.])")
    p.accumulate(np.ones(3))
    p.accumulate(np.ones(3))
    np.testing.assert_array_equal(p.grad, [2, 2, 2])


# ---- the padding adjoint --------------------------------------------------------------------------
_TORCH_MODES = {"reflect": "reflect", "replicate": "replicate", "circular": "circular"}


@pytest.mark.parametrize("mode", _padding.MODES)
@pytest.mark.parametrize("padding", [((2, 0),), ((1, 3), (0, 2)), ((1, 1), (2, 0), (0, 3))])
def test_pad_and_its_adjoint_match_torch(mode, padding):
    nd = len(padding)
    shape = (2, 3, *(4 for _ in range(nd)))
    x = np.random.default_rng(0).standard_normal(shape)
    widths = [w for pair in reversed(padding) for w in pair]
    xt = torch.tensor(x, requires_grad=True)
    padded = F.pad(xt, widths, mode=mode)
    ours = _padding.pad(x, padding, mode)
    np.testing.assert_array_equal(ours, padded.detach().numpy())
    np.testing.assert_array_equal(ours, np.pad(x, [(0, 0), (0, 0), *padding],
                                               mode={"reflect": "reflect", "replicate": "edge", "circular": "wrap"}[mode]))
    g = np.random.default_rng(1).standard_normal(ours.shape)
    padded.backward(torch.from_numpy(g))
    back = _padding.pad_adjoint(g, padding, mode)
    np.testing.assert_allclose(back, xt.grad.numpy(), atol=1e-12)
    assert np.isclose(np.vdot(ours, g), np.vdot(x, back))  # <pad(x), g> == <x, pad*(g)>


# ---- init against torch.nn.init ---------------------------------------------------------------------
@pytest.mark.parametrize("nonlinearity,param", [("linear", None), ("conv2d", None), ("sigmoid", None), ("tanh", None),
                                                ("relu", None), ("leaky_relu", None), ("leaky_relu", 0.2),
                                                ("leaky_relu", math.sqrt(5)), ("selu", None)])
def test_calculate_gain_matches_torch(nonlinearity, param):
    assert init.calculate_gain(nonlinearity, param) == pytest.approx(tnn.init.calculate_gain(nonlinearity, param))


@pytest.mark.parametrize("name,kw", [("kaiming_uniform_", dict(a=math.sqrt(5))), ("kaiming_uniform_", dict(mode="fan_out", nonlinearity="relu")),
                                     ("kaiming_normal_", dict(nonlinearity="relu")), ("xavier_uniform_", dict(gain=2.0)),
                                     ("xavier_normal_", {}), ("uniform_", dict(a=-2, b=3)), ("normal_", dict(mean=1, std=2))])
def test_init_functions_match_torch_statistics(name, kw):
    shape = (64, 32, 3, 3)
    ours = getattr(init, name)(np.empty(shape), **kw, generator=0)
    theirs = getattr(tnn.init, name)(torch.empty(shape, dtype=torch.float64), **kw).numpy()
    for stat in (np.mean, np.std, np.min, np.max):
        scale = float(theirs.std())
        tol = 0.05 * scale if stat in (np.mean, np.std) else (0.02 * scale if "uniform" in name else 1.2 * scale)
        assert abs(stat(ours) - stat(theirs)) < tol, stat.__name__


def test_init_errors():
    with pytest.raises(ValueError, match="nonlinearity"):
        init.calculate_gain("swish")
    with pytest.raises(ValueError, match="at least 2 dimensions"):
        init.kaiming_uniform_(np.empty(3))
    with pytest.raises(TypeError, match="floating"):
        init.uniform_(np.empty(3, dtype=np.int32))
    p = nn.Parameter(np.ones((2, 2)))
    assert init.zeros_(p) is p and not p.data.any()
