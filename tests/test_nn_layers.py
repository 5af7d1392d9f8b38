"""fastconv.nn layers against torch.nn: outputs and every gradient, repr, construction errors, init."""

from __future__ import annotations

import math
from collections import OrderedDict

import numpy as np
import pytest
import torch
from torch import nn as tnn

from fastconv import nn

MODES = ("zeros", "reflect", "replicate", "circular")
SIZES = {1: (9,), 2: (7, 6), 3: (5, 4, 5)}


def _torch_layer(name: str, nd: int, kw: dict, dtype) -> tnn.Module:
    """The torch module equivalent to fastconv's ``name(**kw)`` (same parameter names)."""
    conv = getattr(tnn, f"Conv{nd}d")
    kw = dict(kw)
    if name.startswith("Depthwise"):
        c, m = kw.pop("in_channels"), kw.pop("channel_multiplier", 1)
        return conv(c, c * m, groups=c, dtype=dtype, **kw)
    if name.startswith("Separable"):
        c, m, out, bias = kw.pop("in_channels"), kw.pop("channel_multiplier", 1), kw.pop("out_channels"), kw.pop("bias", True)
        return tnn.Sequential(OrderedDict(depthwise=conv(c, c * m, groups=c, bias=False, dtype=dtype, **kw),
                                          pointwise=conv(c * m, out, 1, bias=bias, dtype=dtype)))
    return getattr(tnn, name)(dtype=dtype, **kw)


def _cases():
    cases = []
    for nd in (1, 2, 3):
        for mode in MODES:
            cases += [
                (f"Conv{nd}d", nd, dict(in_channels=4, out_channels=6, kernel_size=3, stride=2, padding=1, groups=2,
                                        padding_mode=mode)),
                (f"Conv{nd}d", nd, dict(in_channels=3, out_channels=2, kernel_size=(2,) + (3,) * (nd - 1),
                                        padding="same", dilation=2 if nd < 3 else 1, bias=False, padding_mode=mode)),
                (f"DepthwiseConv{nd}d", nd, dict(in_channels=3, kernel_size=3, stride=(2,) + (1,) * (nd - 1),
                                                 padding=1, channel_multiplier=2, padding_mode=mode)),
                (f"SeparableConv{nd}d", nd, dict(in_channels=3, out_channels=5, kernel_size=3, padding=(1,) * nd,
                                                 dilation=(1,) * (nd - 1) + (2,), channel_multiplier=2,
                                                 padding_mode=mode)),
            ]
        cases += [
            (f"Conv{nd}d", nd, dict(in_channels=2, out_channels=3, kernel_size=1)),
            (f"Conv{nd}d", nd, dict(in_channels=2, out_channels=4, kernel_size=3, padding="valid", stride=(1,) * (nd - 1) + (2,))),
            (f"SeparableConv{nd}d", nd, dict(in_channels=2, out_channels=3, kernel_size=3, stride=2, bias=False)),
            (f"ConvTranspose{nd}d", nd, dict(in_channels=4, out_channels=6, kernel_size=3, stride=2, padding=1,
                                             output_padding=1, groups=2)),
            (f"ConvTranspose{nd}d", nd, dict(in_channels=2, out_channels=3, kernel_size=(2,) * nd, stride=(1,) * (nd - 1) + (3,),
                                             dilation=2, bias=False)),
            # output_padding >= stride is allowed while below the dilation: the backward crops
            (f"ConvTranspose{nd}d", nd, dict(in_channels=2, out_channels=2, kernel_size=3, stride=1, dilation=2,
                                             output_padding=1)),
        ]
    return cases


CASES = _cases()


def _id(case):
    name, _, kw = case
    return name + "-" + ",".join(f"{k}={v}" for k, v in kw.items() if k not in ("in_channels", "out_channels"))


def _build(case, np_dtype=np.float64):
    name, nd, kw = case
    theirs = _torch_layer(name, nd, kw, getattr(torch, np.dtype(np_dtype).name))
    ours = getattr(nn, name)(**kw, dtype=np_dtype, generator=0)
    ours.load_state_dict(theirs.state_dict())  # torch tensors load directly
    return ours, theirs


def _random(shape, dtype, seed):
    rng = np.random.default_rng(seed)
    values = rng.standard_normal(shape) + (1j * rng.standard_normal(shape) if np.dtype(dtype).kind == "c" else 0)
    return values.astype(dtype)


def _check_against_torch(ours, theirs, x, tol, **forward_kw):
    xt = torch.tensor(x, requires_grad=True)
    yt = theirs(xt, **forward_kw)
    y = ours(x, **forward_kw)
    scale = max(1.0, float(np.abs(yt.detach().numpy()).max()))
    np.testing.assert_allclose(y, yt.detach().numpy(), rtol=0, atol=tol * scale)
    g = _random(y.shape, x.dtype, seed=2)
    yt.backward(torch.from_numpy(g))
    dx = ours.backward(g)
    assert dx.shape == x.shape and dx.dtype == x.dtype
    np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=0, atol=tol * max(1.0, float(np.abs(dx).max())))
    torch_params = dict(theirs.named_parameters())
    ours_params = dict(ours.named_parameters())
    assert set(ours_params) == set(torch_params)
    for key, p in ours_params.items():
        expected = torch_params[key].grad.numpy()
        np.testing.assert_allclose(p.grad, expected, rtol=0, atol=tol * max(1.0, float(np.abs(expected).max())),
                                   err_msg=key)


@pytest.mark.parametrize("case", CASES, ids=[_id(c) for c in CASES])
def test_layer_matches_torch_float64(case):
    ours, theirs = _build(case)
    channels = case[2]["in_channels"]
    x = np.random.default_rng(1).standard_normal((2, channels, *SIZES[case[1]]))
    _check_against_torch(ours, theirs, x, 1e-12)


@pytest.mark.parametrize("case", [c for c in CASES if c[2].get("padding_mode") in (None, "reflect")][::3],
                         ids=lambda c: _id(c))
def test_layer_matches_torch_float32_unbatched(case):
    ours, theirs = _build(case, np.float32)
    x = np.random.default_rng(3).standard_normal((case[2]["in_channels"], *SIZES[case[1]])).astype(np.float32)
    _check_against_torch(ours, theirs, x, 2e-5)


@pytest.mark.parametrize("case", [c for i, c in enumerate(CASES) if i % 5 == 0 or c[0].startswith("ConvTranspose")],
                         ids=lambda c: _id(c))
def test_layer_matches_torch_complex128(case):
    """Complex gradients are adjoints, as torch's autograd: transposed layers conjugate where roles swap."""
    ours, theirs = _build(case, np.complex128)
    x = _random((2, case[2]["in_channels"], *SIZES[case[1]]), np.complex128, seed=5)
    _check_against_torch(ours, theirs, x, 1e-12)


@pytest.mark.parametrize("output_size", [(13, 12), (14, 11)])
def test_conv_transpose_output_size_matches_torch(output_size):
    kw = dict(in_channels=2, out_channels=3, kernel_size=3, stride=2, padding=1)
    ours, theirs = _build(("ConvTranspose2d", 2, kw))
    x = np.random.default_rng(4).standard_normal((2, 2, 7, 6))
    _check_against_torch(ours, theirs, x, 1e-12, output_size=output_size)
    assert ours(x, output_size=output_size).shape[2:] == output_size


def test_gradients_accumulate_until_zero_grad():
    layer = nn.Conv2d(2, 3, 3, padding=1, padding_mode="circular", dtype=np.float64, generator=0)
    x = np.random.default_rng(0).standard_normal((2, 2, 5, 5))
    g = np.ones((2, 3, 5, 5))
    layer(x)
    layer.backward(g)
    once = layer.weight.grad.copy(), layer.bias.grad.copy()
    layer(x)
    layer.backward(g)
    np.testing.assert_allclose(layer.weight.grad, 2 * once[0])
    np.testing.assert_allclose(layer.bias.grad, 2 * once[1])
    layer.zero_grad()
    assert layer.weight.grad is None and layer.bias.grad is None


def test_backward_needs_a_training_forward():
    layer = nn.Conv1d(1, 1, 3)
    x = np.ones((1, 1, 5), np.float32)
    with pytest.raises(ValueError, match="Conv1d.backward: no saved input"):
        layer.backward(np.ones((1, 1, 3), np.float32))
    layer(x)
    layer.backward(np.ones((1, 1, 3), np.float32))
    with pytest.raises(ValueError, match="once per forward"):  # saved input is released after use
        layer.backward(np.ones((1, 1, 3), np.float32))
    layer.eval()(x)
    assert layer._saved is None
    with pytest.raises(ValueError, match="no saved input"):
        layer.backward(np.ones((1, 1, 3), np.float32))


def test_conv_transpose_backward_checks_grad_shape():
    layer = nn.ConvTranspose1d(1, 1, 3, stride=2)
    layer(np.ones((1, 1, 4), np.float32))
    with pytest.raises(ValueError, match=r"grad_output has shape \(1, 1, 8\); expected \(1, 1, 9\)"):
        layer.backward(np.ones((1, 1, 8), np.float32))


def test_layers_refuse_mixed_dtypes():
    with pytest.raises(TypeError, match="dtype"):
        nn.Conv2d(1, 1, 3)(np.ones((1, 1, 4, 4)))  # float64 input, float32 weights


def test_reflect_padding_larger_than_input_is_refused_as_torch():
    with pytest.raises(ValueError, match="reflect"):
        nn.Conv1d(1, 1, 3, padding=3, padding_mode="reflect")(np.ones((1, 1, 3), np.float32))


# ---- repr ----------------------------------------------------------------------------------
REPR_CASES = [
    ("Conv2d", (3, 64, 3), dict(stride=2, padding=1, bias=False)),
    ("Conv2d", (3, 6, 3), dict(padding="same", padding_mode="reflect", groups=3, dilation=2)),
    ("Conv2d", (4, 4, (3, 1)), dict(stride=(2, 1), padding=(1, 0), padding_mode="circular")),
    ("Conv1d", (2, 2, 3), dict(padding="valid")),
    ("Conv1d", (2, 4, 5), dict(padding_mode="replicate", padding=2)),
    ("Conv3d", (2, 4, 3), dict(dilation=(1, 2, 1), groups=2, bias=False)),
    ("ConvTranspose1d", (2, 3, 4), dict(stride=2)),
    ("ConvTranspose2d", (4, 6, 3), dict(stride=2, output_padding=1, groups=2, dilation=(1, 2))),
    ("ConvTranspose3d", (2, 2, 2), dict(padding=1, bias=False, output_padding=(0, 0, 0))),
]


@pytest.mark.parametrize("name,args,kw", REPR_CASES)
def test_repr_matches_torch(name, args, kw):
    assert repr(getattr(nn, name)(*args, **kw)) == repr(getattr(tnn, name)(*args, **kw))


def test_nested_repr_matches_torch():
    ours = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Sequential(nn.Conv1d(1, 1, 1, bias=False)), nn.ConvTranspose2d(2, 2, 2))
    theirs = tnn.Sequential(tnn.Conv2d(1, 2, 3), tnn.Sequential(tnn.Conv1d(1, 1, 1, bias=False)), tnn.ConvTranspose2d(2, 2, 2))
    assert repr(ours) == repr(theirs)


def test_depthwise_and_separable_repr():
    assert repr(nn.DepthwiseConv2d(8, 3, padding=1, channel_multiplier=2, padding_mode="reflect")) == (
        "DepthwiseConv2d(8, kernel_size=(3, 3), stride=(1, 1), padding=(1, 1), channel_multiplier=2, "
        "padding_mode=reflect)")
    assert repr(nn.SeparableConv1d(4, 6, 3, bias=False)) == (
        "SeparableConv1d(\n  (depthwise): DepthwiseConv1d(4, kernel_size=(3,), stride=(1,), bias=False)\n"
        "  (pointwise): Conv1d(4, 6, kernel_size=(1,), stride=(1,), bias=False)\n)")


def test_attributes_match_torch():
    ours, theirs = nn.ConvTranspose2d(4, 6, (3, 2), 2, 1, 1, 2, False, 1), tnn.ConvTranspose2d(4, 6, (3, 2), 2, 1, 1, 2, False, 1)
    for attr in ("in_channels", "out_channels", "kernel_size", "stride", "padding", "dilation", "output_padding",
                 "groups", "padding_mode", "transposed"):
        assert getattr(ours, attr) == getattr(theirs, attr), attr
    assert ours.weight.shape == tuple(theirs.weight.shape) and ours.bias is None


# ---- construction errors ------------------------------------------------------------------------
TORCH_ERRORS = [
    ("Conv2d", (4, 4, 3), dict(groups=0)),
    ("Conv2d", (4, 4, 3), dict(groups=3)),
    ("Conv2d", (4, 5, 3), dict(groups=2)),
    ("Conv2d", (4, 4, 3), dict(padding="foo")),
    ("Conv2d", (4, 4, 3), dict(padding="same", stride=2)),
    ("Conv2d", (4, 4, 3), dict(padding_mode="zero")),
    ("ConvTranspose2d", (4, 4, 3), dict(padding_mode="reflect")),
]


@pytest.mark.parametrize("name,args,kw", TORCH_ERRORS)
def test_construction_errors_match_torch(name, args, kw):
    with pytest.raises(ValueError) as theirs:
        getattr(tnn, name)(*args, **kw)
    with pytest.raises(type(theirs.value), match=name):  # ours also name the class
        getattr(nn, name)(*args, **kw)


@pytest.mark.parametrize("name,args,kw,error,match", [
    ("Conv2d", (4, 4, (3, 3, 3)), {}, ValueError, "kernel_size"),
    ("Conv2d", (4, 4, 3.0), {}, TypeError, "kernel_size"),
    ("Conv2d", (0, 4, 3), {}, ValueError, "in_channels"),
    ("Conv2d", (4, "4", 3), {}, TypeError, "out_channels"),
    ("Conv2d", (4, 4, 3), dict(stride=0), ValueError, "stride"),
    ("Conv2d", (4, 4, 3), dict(padding=-1), ValueError, "padding"),
    ("Conv2d", (4, 4, 3), dict(dtype=np.int32), TypeError, "dtype"),
    ("Conv2d", (4, 4, 3), dict(device="cuda"), ValueError, "device"),
    ("ConvTranspose2d", (4, 4, 3), dict(padding="same"), TypeError, "padding"),  # torch fails only at forward
    ("DepthwiseConv2d", (4, 3), dict(channel_multiplier=0), ValueError, "channel_multiplier"),
])
def test_construction_errors_name_the_parameter(name, args, kw, error, match):
    with pytest.raises(error, match=match):
        getattr(nn, name)(*args, **kw)


# ---- initialisation ----------------------------------------------------------------------------
@pytest.mark.parametrize("name,args", [("Conv2d", (8, 16, 3)), ("Conv1d", (6, 4, 5, 1, 0, 1, 2)),
                                       ("ConvTranspose3d", (4, 6, 2)), ("ConvTranspose2d", (4, 6, 3, 1, 0, 0, 2))])
def test_init_distribution_matches_torch(name, args):
    ours, theirs = getattr(nn, name)(*args, generator=0), getattr(tnn, name)(*args)
    fan_in = math.prod(theirs.weight.shape[1:])
    bound = 1 / math.sqrt(fan_in)  # kaiming_uniform(a=sqrt(5)) and the bias both give U(+-1/sqrt(fan_in))
    for p, q in ((ours.weight.data, theirs.weight), (ours.bias.data, theirs.bias)):
        assert p.shape == tuple(q.shape) and p.dtype == np.float32
        assert np.abs(p).max() <= bound and float(q.detach().abs().max()) <= bound
    assert np.abs(ours.weight.data).max() > 0.9 * bound  # fills the interval, not a narrower one
    std = ours.weight.data.std()
    assert abs(std - bound / math.sqrt(3)) < 0.15 * bound / math.sqrt(3)


def test_init_is_seedable():
    a, b, c = nn.Conv2d(2, 3, 3, generator=7), nn.Conv2d(2, 3, 3, generator=7), nn.Conv2d(2, 3, 3, generator=8)
    np.testing.assert_array_equal(a.weight.data, b.weight.data)
    np.testing.assert_array_equal(a.bias.data, b.bias.data)
    assert not np.array_equal(a.weight.data, c.weight.data)
    rng = np.random.default_rng(0)
    first, second = nn.Conv1d(1, 1, 3, generator=rng), nn.Conv1d(1, 1, 3, generator=rng)
    assert not np.array_equal(first.weight.data, second.weight.data)  # a shared Generator moves on


@pytest.mark.parametrize("dtype", [np.float16, np.float64, np.complex64])
def test_init_in_every_dtype(dtype):
    layer = nn.Conv2d(2, 2, 3, dtype=dtype, generator=0)
    assert layer.weight.dtype == dtype and layer.bias.dtype == dtype
    bound = 1 / math.sqrt(18)
    parts = (layer.weight.data.real, layer.weight.data.imag) if np.iscomplexobj(layer.weight.data) else (layer.weight.data,)
    for part in parts:
        assert 0 < np.abs(part).max() <= bound * (1 + 1e-3)
