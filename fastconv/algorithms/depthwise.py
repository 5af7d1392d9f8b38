"""Depthwise convolution (``groups == in_channels``, any channel multiplier), 1-D to 3-D.

Each input channel meets only its own ``out_channels / in_channels`` filters, so there is no
channel sum for a matrix product to exploit: the work is a per-plane correlation, done by the
direct kernels (packed planes, every tap a constant offset, long vectorised runs; see
``direct``), one job per (sample, channel). A channel multiplier of 4 or more (a single-channel
stem with many filters, for instance) computes four filters per pass sharing their loads.
``depthwise_blocked`` vectorises along channels instead (aligned loads, faster from 5x5 kernels
on); the planner picks between them.
"""

from __future__ import annotations

from .._geometry import ConvGeometry
from .direct import Direct


class Depthwise(Direct):
    name = "depthwise"

    def _declines(self, geom: ConvGeometry, op: str) -> str | None:
        if geom.groups != geom.in_channels:
            return f"depthwise: groups={geom.groups} is not in_channels={geom.in_channels}"
        return None
