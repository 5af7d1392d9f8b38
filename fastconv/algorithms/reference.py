"""The oracle: a loop over kernel taps, each an einsum over the channels of its group.

Handles every geometry and dtype. Obviously correct rather than fast; every other
algorithm is tested against it.
"""

from __future__ import annotations

import numpy as np

from .._geometry import ConvGeometry
from ._base import Algorithm
from ._layout import grouped, pad_input, unpad_input


class Reference(Algorithm):
    name = "reference"
    compiled = False  # NumPy (and SciPy) only
    native_ops = ("forward", "input_grad", "weight_grad")

    def cost(self, geom, dtype, op):
        from .._cost_model import REFERENCE_SECONDS_PER_MAC
        return geom.macs * REFERENCE_SECONDS_PER_MAC

    @staticmethod
    def _weight_taps(w: np.ndarray, geom: ConvGeometry) -> np.ndarray:
        # (O, Cg, *k) -> (G, Og, Cg, K): one (Og, Cg) matrix per group and tap
        return w.reshape(geom.groups, geom.out_per_group, geom.in_per_group, geom.kernel_volume)

    def forward(self, x, w, geom):
        xg = grouped(pad_input(x, geom), geom.groups)
        wt = self._weight_taps(w, geom)
        y = np.zeros((geom.batch, geom.groups, geom.out_per_group, *geom.out_size), dtype=x.dtype)
        for tap, window in geom.tap_slices():
            y += np.einsum("ngc...,goc->ngo...", xg[(Ellipsis, *window)], wt[..., tap])
        return y.reshape(geom.output_shape)

    def input_grad(self, dy, w, geom):
        dyg = grouped(dy, geom.groups)
        wt = self._weight_taps(w, geom)
        dxg = np.zeros((geom.batch, geom.groups, geom.in_per_group, *geom.padded_size), dtype=dy.dtype)
        for tap, window in geom.tap_slices():
            dxg[(Ellipsis, *window)] += np.einsum("ngo...,goc->ngc...", dyg, wt[..., tap])
        return unpad_input(dxg.reshape(geom.batch, geom.in_channels, *geom.padded_size), geom)

    def weight_grad(self, x, dy, geom):
        xg = grouped(pad_input(x, geom), geom.groups)
        dyf = grouped(dy, geom.groups).reshape(geom.batch, geom.groups, geom.out_per_group, -1)
        dw = np.zeros((geom.groups, geom.out_per_group, geom.in_per_group, geom.kernel_volume), dtype=x.dtype)
        for tap, window in geom.tap_slices():
            xs = xg[(Ellipsis, *window)].reshape(geom.batch, geom.groups, geom.in_per_group, -1)
            dw[..., tap] = np.einsum("ngcl,ngol->goc", xs, dyf)
        return dw.reshape(geom.weight_shape)
