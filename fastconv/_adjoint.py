"""Gradients as forward convolutions: the array side of ``ConvGeometry.for_input_grad``
and ``ConvGeometry.for_weight_grad``. Any forward algorithm thereby serves training."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ._geometry import ConvGeometry

Forward = Callable[[np.ndarray, np.ndarray, ConvGeometry], np.ndarray]


def input_grad_via_forward(forward: Forward, geom: ConvGeometry, dy: np.ndarray, w: np.ndarray) -> np.ndarray:
    """dx = conv(dy zero-stuffed by stride, weight flipped with in/out channels swapped per group)."""
    adjoint = geom.for_input_grad()
    if any(s > 1 for s in geom.stride):
        stuffed = np.zeros((geom.batch, geom.out_channels, *adjoint.in_size), dtype=dy.dtype)
        stuffed[(Ellipsis, *(slice(None, None, s) for s in geom.stride))] = dy
        dy = stuffed
    g, og, cg = geom.groups, geom.out_per_group, geom.in_per_group
    # one contiguous copy: (G, Og, Cg, taps) -> (G, Cg, Og, taps reversed), taps flattened so that
    # the flip of every spatial axis is one reversal
    flipped = np.ascontiguousarray(w.reshape(g, og, cg, -1).swapaxes(1, 2)[..., ::-1])
    return forward(dy, flipped.reshape(geom.in_channels, og, *geom.kernel), adjoint)


def weight_grad_via_forward(forward: Forward, geom: ConvGeometry, x: np.ndarray, dy: np.ndarray) -> np.ndarray:
    """dw = conv(x as (C/G, G*N, ...), dy as the weight (G*Og, N, ...)), channels swapped back."""
    adjoint = geom.for_weight_grad()
    n, g, og, cg = geom.batch, geom.groups, geom.out_per_group, geom.in_per_group
    x_swapped = x.reshape(n, g, cg, *geom.in_size).transpose(2, 1, 0, *range(3, 3 + geom.nd))
    dy_swapped = dy.reshape(n, g, og, *geom.out_size).transpose(1, 2, 0, *range(3, 3 + geom.nd))
    out = forward(x_swapped.reshape(cg, g * n, *geom.in_size), dy_swapped.reshape(g * og, n, *geom.out_size), adjoint)
    return out.swapaxes(0, 1)
