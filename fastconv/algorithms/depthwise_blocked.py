"""Channel-blocked depthwise convolution: vectorised along channels, every load aligned.

``depthwise`` vectorises along output pixels: each tap reads the input shifted by its column,
an unaligned vector that straddles two cache lines for all but one column of the kernel, and
loads bound it. Here, as in oneDNN's depthwise kernels, a vector holds the same pixel of ``L``
channels (16 in float32, 8 in float64): a job packs the zero-padded planes of one sample's block
of channels, interleaved per pixel, by in-register transposes, and the micro-kernel then runs
every tap of up to 16 output pixels as one aligned weight vector and one aligned input vector per
pixel (``_depthwise_blocked_kernels``). Stride and dilation only change the tap offsets.

Forward only, channel multiplier 1 (``groups == in_channels == out_channels``), real dtypes;
gradients go through the planner's "via forward" routes, or to ``depthwise``'s native kernels.
"""

from __future__ import annotations

import functools
import math

import numpy as np

from .. import _config
from .._geometry import ConvGeometry
from ._base import Algorithm
from ._layout import spatial3d
from .direct import _threads, call_seconds, estimate, parallel

#: Strides along the last axis the micro-kernel (``_depthwise_blocked_kernels``) is compiled for.
STRIDES = (1, 2)


class DepthwiseBlocked(Algorithm):
    name = "depthwise_blocked"

    def supports(self, geom, dtype, op):
        if not geom.groups == geom.in_channels == geom.out_channels:
            return (f"depthwise_blocked: groups={geom.groups}, {geom.in_channels} -> {geom.out_channels} channels; "
                    f"it runs one filter per channel (groups == in_channels == out_channels)")
        if geom.nd > 3:
            return f"depthwise_blocked: {geom.nd} spatial dimensions; its kernels handle 1 to 3"
        if np.dtype(dtype).kind == "c":
            return f"depthwise_blocked: {np.dtype(dtype)} is complex; its micro-kernel is real"
        if geom.stride[-1] not in STRIDES:
            return (f"depthwise_blocked: stride {geom.stride[-1]} along the last axis; its micro-kernel is "
                    f"compiled for {STRIDES}")
        need = _threads() * math.prod(_padded(geom)) * 64
        if need > _config.workspace_bytes:
            return (f"depthwise_blocked: needs {need / 2**20:.0f} MiB of scratch (each thread's packed planes) > "
                    f"workspace {_config.workspace_bytes / 2**20:.0f} MiB")
        return None

    def cost(self, geom, dtype, op):
        from .. import _cost_model as cm
        lanes = 64 // np.dtype(dtype).itemsize
        blocks = -(-geom.in_channels // lanes)
        vector_macs = geom.batch * blocks * math.prod(geom.out_size) * geom.kernel_volume
        moved = geom.batch * blocks * lanes * math.prod(_padded(geom)) + math.prod(geom.output_shape)
        seconds = (vector_macs * cm.DEPTHWISE_BLOCKED_SECONDS_PER_VECTOR_MAC
                   + moved * np.dtype(dtype).itemsize * cm.DEPTHWISE_BLOCKED_SECONDS_PER_BYTE)
        return call_seconds(seconds, geom.batch * blocks)

    def forward(self, x, w, geom):
        from . import _depthwise_blocked_kernels as k
        lanes = 64 // x.itemsize
        blocks = -(-geom.in_channels // lanes)
        y = np.empty(geom.output_shape, dtype=x.dtype)
        in_shape, offsets, out_size, lo, stride, padded = _tables(geom, lanes)
        run = parallel(k.forward, estimate(self, geom, x.dtype, "forward"), geom.batch * blocks)
        run(np.ascontiguousarray(x).reshape(-1), in_shape, np.ascontiguousarray(w).reshape(geom.in_channels, -1),
            offsets, y.reshape(-1), out_size, lo, stride, padded)
        return y


@functools.lru_cache(maxsize=256)
def _padded(geom: ConvGeometry) -> tuple[int, int, int]:
    """Pixels (Dp, Hp, Wp) of a job's packed planes: every input position the outputs read."""
    s3 = spatial3d(geom)
    return tuple((o - 1) * s + (k - 1) * d + 1 for o, s, k, d in zip(s3.out_size, s3.stride, s3.kernel, s3.dilation))


@functools.lru_cache(maxsize=256)
def _tables(geom: ConvGeometry, lanes: int) -> tuple[np.ndarray, ...]:
    """The kernel's index arrays, built once per geometry (~70 us a call before): the input's shape
    (N, C, D, H, W), per tap (weight order) its offset into the packed planes from an output
    pixel's first tap, and the 3-D output size, padding before, stride and packed planes. Shared
    between calls: never modified."""
    s3 = spatial3d(geom)
    _, hp, wp = _padded(geom)
    kd, kh, kw = (np.arange(k) * d for k, d in zip(s3.kernel, s3.dilation))
    pixels = (kd[:, None, None] * hp + kh[None, :, None]) * wp + kw[None, None, :]
    offsets = (pixels * lanes).reshape(-1).astype(np.int64)
    return (np.array((geom.batch, geom.in_channels, *s3.in_size)), offsets, np.array(s3.out_size), np.array(s3.lo),
            np.array(s3.stride), np.array(_padded(geom)))
