"""The algorithm zoo. Each module holds one plug-in (see ``_base.Algorithm``)."""

from __future__ import annotations

from ._base import OPS, Algorithm
from .blocked import Blocked
from .depthwise import Depthwise
from .depthwise_blocked import DepthwiseBlocked
from .direct import Direct
from .fft import FFT
from .gemm import Gemm
from .reference import Reference
from .subpixel import Subpixel
from .subpixel_blocked import SubpixelBlocked
from .taps import Taps
from .winograd import Winograd
from .winograd_blocked import WinogradBlocked

#: Every algorithm by name, in the order the planner lists them.
ALGORITHMS: dict[str, Algorithm] = {alg.name: alg for alg in (Reference(), Gemm(), Taps(), FFT(), Direct(), Blocked(), Depthwise(),
                                                                DepthwiseBlocked(), Subpixel(), SubpixelBlocked(), Winograd(2),
                                                                Winograd(4), WinogradBlocked(2), WinogradBlocked(4))}

__all__ = ["ALGORITHMS", "OPS", "Algorithm"]
