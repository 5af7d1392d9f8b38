"""im2col + BLAS matmul, one matrix product per group.

The columns hold, for each output position, the receptive field of every input channel
of the group; they are built one batch slice at a time so the scratch stays within
the workspace budget. Input gradient is the matmul with the transposed weight followed
by a col2im scatter-add (no multiplications by inserted zeros); weight gradient is
``dy @ cols^T`` summed over the batch. A 1x1 stride-1 unpadded convolution skips the
columns altogether: it is a plain matmul on the input.
"""

from __future__ import annotations

import math

import numpy as np

from .. import _config
from .._geometry import ConvGeometry
from ._base import Algorithm
from ._layout import batch_chunks, grouped, pad_input, unpad_input


class Gemm(Algorithm):
    name = "gemm"
    native_ops = ("forward", "input_grad", "weight_grad")

    def cost(self, geom, dtype, op):
        from .._cost_model import GEMM_SECONDS_PER_MAC, GEMM_SECONDS_PER_COLUMN_BYTE
        column_bytes = 0 if geom.is_pointwise else _column_bytes(geom, dtype) * geom.batch
        return geom.macs * GEMM_SECONDS_PER_MAC + column_bytes * GEMM_SECONDS_PER_COLUMN_BYTE

    def forward(self, x, w, geom):
        wm = _weight_matrix(w, geom)
        if geom.is_pointwise:
            y = wm @ _flat(x, geom, geom.in_per_group)
            return y.reshape(geom.output_shape)
        xp = pad_input(x, geom)
        y = np.empty((geom.batch, geom.groups, geom.out_per_group, math.prod(geom.out_size)), dtype=x.dtype)
        for part in _chunks(geom, x.dtype):
            np.matmul(wm, _im2col(xp[part], geom), out=y[part])
        return y.reshape(geom.output_shape)

    def input_grad(self, dy, w, geom):
        wt = np.swapaxes(_weight_matrix(w, geom), -1, -2)  # (G, Cg*K, Og)
        dyf = _flat(dy, geom, geom.out_per_group)
        if geom.is_pointwise:
            return (wt @ dyf).reshape(geom.input_shape)
        dxp = np.zeros((geom.batch, geom.groups, geom.in_per_group, *geom.padded_size), dtype=dy.dtype)
        for part in _chunks(geom, dy.dtype):
            _col2im_add(wt @ dyf[part], dxp[part], geom)
        return unpad_input(dxp.reshape(geom.batch, geom.in_channels, *geom.padded_size), geom)

    def weight_grad(self, x, dy, geom):
        dyf = _flat(dy, geom, geom.out_per_group)
        if geom.is_pointwise:
            cols_t = np.swapaxes(_flat(x, geom, geom.in_per_group), -1, -2)
            dw = np.matmul(dyf, cols_t).sum(axis=0)
        else:
            xp = pad_input(x, geom)
            dw = np.zeros((geom.groups, geom.out_per_group, geom.in_per_group * geom.kernel_volume), dtype=x.dtype)
            for part in _chunks(geom, x.dtype):
                dw += np.matmul(dyf[part], np.swapaxes(_im2col(xp[part], geom), -1, -2)).sum(axis=0)
        return dw.reshape(geom.weight_shape)


def _column_bytes(geom: ConvGeometry, dtype) -> int:
    """Scratch of one sample's columns."""
    return geom.in_channels * geom.kernel_volume * math.prod(geom.out_size) * np.dtype(dtype).itemsize


def _chunks(geom: ConvGeometry, dtype):
    return batch_chunks(geom.batch, _column_bytes(geom, dtype), _config.workspace_bytes)


def _weight_matrix(w: np.ndarray, geom: ConvGeometry) -> np.ndarray:
    """(O, Cg, *k) -> (G, Og, Cg*K)."""
    return w.reshape(geom.groups, geom.out_per_group, geom.in_per_group * geom.kernel_volume)


def _flat(a: np.ndarray, geom: ConvGeometry, per_group: int) -> np.ndarray:
    """(N, C, *spatial) -> (N, G, C/G, L)."""
    return a.reshape(a.shape[0], geom.groups, per_group, -1)


def _im2col(xp: np.ndarray, geom: ConvGeometry) -> np.ndarray:
    """Padded input slice (n, C, *P) -> columns (n, G, Cg*K, L)."""
    n = xp.shape[0]
    xg = grouped(xp, geom.groups)
    cols = np.empty((n, geom.groups, geom.in_per_group, geom.kernel_volume, *geom.out_size), dtype=xp.dtype)
    for tap, window in geom.tap_slices():
        cols[:, :, :, tap] = xg[(Ellipsis, *window)]
    return cols.reshape(n, geom.groups, geom.in_per_group * geom.kernel_volume, -1)


def _col2im_add(cols: np.ndarray, dxp: np.ndarray, geom: ConvGeometry) -> None:
    """Adjoint of :func:`_im2col`: scatter-add columns (n, G, Cg*K, L) into dxp (n, G, Cg, *P)."""
    taps = cols.reshape(cols.shape[0], geom.groups, geom.in_per_group, geom.kernel_volume, *geom.out_size)
    for tap, window in geom.tap_slices():
        dxp[(Ellipsis, *window)] += taps[:, :, :, tap]
