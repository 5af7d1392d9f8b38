"""One test per class of rejected input: the right exception type, a message naming the function,
the shapes, the offending parameter and the fix; and torch rejects the same call."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import fastconv
from fastconv import functional as fc
from fastconv import grad as fg

X = np.zeros((2, 6, 8, 8), np.float32)
W = np.zeros((4, 3, 3, 3), np.float32)
WT = np.zeros((6, 2, 3, 3), np.float32)  # transposed weight: (C_in, C_out/groups, k, k)
DY = np.zeros((2, 4, 6, 6), np.float32)
tx, tw, twt, tdy = (torch.from_numpy(a) for a in (X, W, WT, DY))

# (id, exception, fastconv call, fragments the message must contain, torch's equivalent call or None)
CASES = [
    ("string input", TypeError, lambda: fc.conv2d("abc", W, groups=2), ["conv2d", "input"], None),
    ("integer dtype", TypeError, lambda: fc.conv2d(X.astype(np.int32), W.astype(np.int32), groups=2),
     ["conv2d", "int32", "astype"], None),
    ("bool dtype", TypeError, lambda: fc.conv2d(X.astype(bool), W, groups=2), ["conv2d", "bool"], None),
    ("mixed input/weight dtypes", TypeError, lambda: fc.conv2d(X.astype(np.float64), W, groups=2),
     ["conv2d", "float64", "float32", "(2, 6, 8, 8)", "(4, 3, 3, 3)"], lambda: F.conv2d(tx.double(), tw, groups=2)),
    ("mixed bias dtype", TypeError, lambda: fc.conv2d(X, W, np.zeros(4), groups=2), ["conv2d", "bias", "float64"],
     lambda: F.conv2d(tx, tw, torch.zeros(4, dtype=torch.float64), groups=2)),
    ("input rank", ValueError, lambda: fc.conv2d(X[0, 0], W, groups=2), ["conv2d", "3-D", "4-D", "2-D"],
     lambda: F.conv2d(tx[0, 0], tw, groups=2)),
    ("weight rank", ValueError, lambda: fc.conv2d(X, W[..., 0], groups=2), ["conv2d", "4-D weight"],
     lambda: F.conv2d(tx, tw[..., 0], groups=2)),
    ("channel mismatch", ValueError, lambda: fc.conv2d(X, W), ["conv2d", "6 channels", "groups=1", "(2, 6, 8, 8)"],
     lambda: F.conv2d(tx, tw)),
    ("in_channels not divisible by groups", ValueError, lambda: fc.conv2d(X, np.zeros((4, 1, 3, 3), np.float32), groups=4),
     ["conv2d", "in_channels=6", "groups=4"], lambda: F.conv2d(tx, torch.zeros(4, 1, 3, 3), groups=4)),
    ("out_channels not divisible by groups", ValueError, lambda: fc.conv2d(X, np.zeros((5, 2, 3, 3), np.float32), groups=3),
     ["conv2d", "out_channels=5", "groups=3"], lambda: F.conv2d(tx, torch.zeros(5, 2, 3, 3), groups=3)),
    ("groups zero", ValueError, lambda: fc.conv2d(X, W, groups=0), ["conv2d", "groups=0"], lambda: F.conv2d(tx, tw, groups=0)),
    ("groups float", TypeError, lambda: fc.conv2d(X, W, groups=2.0), ["conv2d", "groups"], lambda: F.conv2d(tx, tw, groups=2.0)),
    ("stride zero", ValueError, lambda: fc.conv2d(X, W, stride=0, groups=2), ["conv2d", "stride", ">= 1"],
     lambda: F.conv2d(tx, tw, stride=0, groups=2)),
    ("stride float", TypeError, lambda: fc.conv2d(X, W, stride=2.0, groups=2), ["conv2d", "stride"],
     lambda: F.conv2d(tx, tw, stride=2.0, groups=2)),
    ("stride bool", TypeError, lambda: fc.conv2d(X, W, stride=True, groups=2), ["conv2d", "stride"],
     lambda: F.conv2d(tx, tw, stride=True, groups=2)),
    ("stride length", ValueError, lambda: fc.conv2d(X, W, stride=(1, 1, 1), groups=2), ["conv2d", "stride", "2 values"],
     lambda: F.conv2d(tx, tw, stride=(1, 1, 1), groups=2)),
    ("dilation zero", ValueError, lambda: fc.conv2d(X, W, dilation=0, groups=2), ["conv2d", "dilation"],
     lambda: F.conv2d(tx, tw, dilation=0, groups=2)),
    ("negative padding", ValueError, lambda: fc.conv2d(X, W, padding=-1, groups=2), ["conv2d", "padding", ">= 0"],
     lambda: F.conv2d(tx, tw, padding=-1, groups=2)),
    ("negative per-side padding", ValueError, lambda: fc.conv2d(X, W, padding=((0, -1), (0, 0)), groups=2),
     ["conv2d", "negative"], None),
    ("malformed per-side padding", TypeError, lambda: fc.conv2d(X, W, padding=((0, 1, 2), (0, 0)), groups=2),
     ["conv2d", "pair"], None),
    ("'same' with stride", ValueError, lambda: fc.conv2d(X, W, padding="same", stride=2, groups=2),
     ["conv2d", "'same'", "stride"], lambda: F.conv2d(tx, tw, padding="same", stride=2, groups=2)),
    ("unknown padding string", ValueError, lambda: fc.conv2d(X, W, padding="full", groups=2),
     ["conv2d", "'full'", "'same'", "'valid'"], lambda: F.conv2d(tx, tw, padding="full", groups=2)),
    ("kernel larger than input", ValueError, lambda: fc.conv2d(X[..., :2, :2], W, groups=2),
     ["conv2d", "smaller than the dilated kernel", "pad"], lambda: F.conv2d(tx[..., :2, :2], tw, groups=2)),
    ("zero spatial size", ValueError, lambda: fc.conv2d(X[..., :0, :], W, padding=2, groups=2), ["conv2d", "positive"],
     lambda: F.conv2d(tx[..., :0, :], tw, padding=2, groups=2)),
    ("bias shape", ValueError, lambda: fc.conv2d(X, W, np.zeros(3, np.float32), groups=2), ["conv2d", "bias", "(4,)"],
     lambda: F.conv2d(tx, tw, torch.zeros(3), groups=2)),
    ("string padding on transposed", TypeError, lambda: fc.conv_transpose2d(X, WT, padding="same"),
     ["conv_transpose2d", "padding='same'"], lambda: F.conv_transpose2d(tx, twt, padding="same")),
    ("output_padding too large", ValueError, lambda: fc.conv_transpose2d(X, WT, stride=2, output_padding=2),
     ["conv_transpose2d", "output_padding", "stride"], lambda: F.conv_transpose2d(tx, twt, stride=2, output_padding=2)),
    ("transposed channel mismatch", ValueError, lambda: fc.conv_transpose2d(X, WT[:4]),
     ["conv_transpose2d", "weight.shape[0]=4"], lambda: F.conv_transpose2d(tx, twt[:4])),
    ("transposed output not positive", ValueError, lambda: fc.conv_transpose2d(X[..., :1, :1], WT, padding=3),
     ["conv_transpose2d", "padding"], lambda: F.conv_transpose2d(tx[..., :1, :1], twt, padding=3)),
    ("unreachable output_size", ValueError, lambda: fc.conv_transpose2d(X, WT, stride=2, output_size=(30, 30)),
     ["conv_transpose2d", "output_size", "between"], None),
    ("grad_output shape", ValueError, lambda: fg.conv2d_input(X.shape, np.zeros((4, 6, 3, 3), np.float32), DY[..., :5]),
     ["conv2d_input", "grad_output", "(2, 4, 6, 6)"],
     lambda: torch.nn.grad.conv2d_input(X.shape, torch.zeros(4, 6, 3, 3), tdy[..., :5])),
    ("unbatched grad_output", ValueError, lambda: fg.conv2d_input(X.shape[1:], np.zeros((4, 6, 3, 3), np.float32), DY[0]),
     ["conv2d_input", "batched"], lambda: torch.nn.grad.conv2d_input(X.shape[1:], torch.zeros(4, 6, 3, 3), tdy[0])),
    ("string padding on gradients", TypeError,
     lambda: fg.conv2d_weight(X, (4, 6, 3, 3), DY, padding="same"), ["conv2d_weight", "padding"],
     lambda: torch.nn.grad.conv2d_weight(tx, (4, 6, 3, 3), tdy, padding="same")),
    ("unknown algorithm", ValueError, lambda: fc.conv2d(X, W, groups=2, algorithm="magic"),
     ["conv2d", "'magic'", "reference"], None),
    ("unknown padding_mode", ValueError, lambda: fc.conv2d(X, W, padding=1, groups=2, padding_mode="mirror"),
     ["conv2d", "padding_mode", "'reflect'"], None),
    ("reflect padding too large", ValueError, lambda: fc.conv2d(X, W, padding=8, groups=2, padding_mode="reflect"),
     ["conv2d", "reflect", "padding"], None),
]


@pytest.mark.parametrize("label,exc,call,fragments,torch_call", CASES, ids=[c[0] for c in CASES])
def test_rejected_with_a_message_that_says_what_to_fix(label, exc, call, fragments, torch_call):
    with pytest.raises(exc) as info:
        call()
    message = str(info.value)
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} missing from {message!r}"
    if torch_call is not None:
        with pytest.raises(Exception):
            torch_call()


def test_forced_algorithm_that_declines_says_why():
    from fastconv.algorithms import ALGORITHMS
    decliners = [n for n, a in ALGORITHMS.items()
                 if a.supports(fastconv.plan_for("conv2d", (1, 2, 5, 5), (2, 2, 3, 3), "complex128").geom,
                               np.dtype("complex128"), "forward")]
    if not decliners:
        pytest.skip("every algorithm handles complex")
    with pytest.raises(ValueError, match=decliners[0]):
        fc.conv2d(np.ones((1, 2, 5, 5), np.complex128), np.ones((2, 2, 3, 3), np.complex128), algorithm=decliners[0])


def test_accepted_like_torch():
    """Calls torch accepts that are easy to get wrong: 1-sequences broadcast, numpy ints, lists, N = 0."""
    ours = fc.conv2d(X, W, stride=(2,), padding=[1, 1], dilation=np.int64(1), groups=np.int32(2))
    assert ours.shape == F.conv2d(tx, tw, stride=(2,), padding=[1, 1], groups=2).shape
    assert fc.conv2d(X[:0], W, groups=2).shape == (0, 4, 6, 6)
    assert fc.conv_transpose2d(X[:0], WT, stride=2).shape == (0, 2, 17, 17)
    assert fg.conv2d_weight(X[:0], (4, 3, 3, 3), DY[:0], groups=2).shape == (4, 3, 3, 3)


def test_remembered_geometries_still_validate_every_call():
    """Geometries are remembered by the repr of the public arguments: an identical call reuses the
    same object, and a bool, float or bad size after a valid call of the same shapes still raises."""
    from fastconv._errors import CallContext
    from fastconv._geometry import ConvGeometry
    x, w = np.ones((1, 2, 5, 5), np.float32), np.ones((2, 2, 3, 3), np.float32)
    ctx = CallContext("conv2d")
    first = ConvGeometry.for_conv(x.shape, w.shape, 1, 1, 1, 1, ctx)
    assert ConvGeometry.for_conv(x.shape, w.shape, 1, 1, 1, 1, ctx) is first
    assert ConvGeometry.for_conv(x.shape, w.shape, (1, 1), [1, 1], 1, 1, ctx) == first
    fc.conv2d(x, w, groups=1)
    with pytest.raises(TypeError, match="groups must be an int, got True"):
        fc.conv2d(x, w, groups=True)
    with pytest.raises(TypeError, match="padding must be an int"):
        fc.conv2d(x, w, padding=1.0)
    for _ in range(2):
        with pytest.raises(ValueError, match="smaller than the dilated kernel"):
            fc.conv2d(x, np.ones((2, 2, 7, 7), np.float32))
