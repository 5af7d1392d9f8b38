"""Torch as the oracle: the same call in torch, including fastconv's per-side padding extension."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

_CONV = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}
_CONV_T = {1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}


def t(a):
    return None if a is None else torch.from_numpy(np.ascontiguousarray(a))


def split_pairs(padding, nd):
    """(explicit F.pad widths or None, padding torch accepts)."""
    if isinstance(padding, tuple) and any(isinstance(p, tuple) for p in padding):
        widths = []
        for lo, hi in reversed(padding):
            widths += [lo, hi]
        return widths, 0
    return None, padding


def conv(x, w, b, nd, stride=1, padding=0, dilation=1, groups=1, requires_grad=False):
    """Torch forward; returns (y, x_tensor, w_tensor, b_tensor) so callers can backprop."""
    xt, wt, bt = t(x), t(w), t(b)
    for a in (xt, wt, bt):
        if a is not None and requires_grad:
            a.requires_grad_(True)
    widths, pad = split_pairs(padding, nd)
    inp = F.pad(xt, widths) if widths else xt
    y = _CONV[nd](inp, wt, bt, stride=stride, padding=pad, dilation=dilation, groups=groups)
    return y, xt, wt, bt


def conv_transpose(x, w, b, nd, **kw):
    return _CONV_T[nd](t(x), t(w), t(b), **kw).detach().numpy()


def assert_close(ours: np.ndarray, expected: np.ndarray, dtype, scale: float | None = None):
    """Max error relative to the result's magnitude, with a tolerance per dtype."""
    tol = {"float64": 1e-11, "complex128": 1e-11, "float32": 2e-5, "complex64": 2e-5, "float16": 1e-2}[np.dtype(dtype).name]
    expected = np.asarray(expected)
    assert ours.shape == expected.shape, (ours.shape, expected.shape)
    assert ours.dtype == np.dtype(dtype), (ours.dtype, dtype)
    if expected.size == 0:
        return
    scale = scale or max(float(np.abs(expected.astype(np.complex128)).max()), 1.0)
    err = float(np.abs(ours.astype(np.complex128) - expected.astype(np.complex128)).max()) / scale
    assert err <= tol, f"relative error {err:.3g} > {tol} ({dtype})"
