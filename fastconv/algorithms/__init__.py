"""The algorithm zoo. Each module holds one plug-in (see ``_base.Algorithm``)."""

from __future__ import annotations

from ._base import OPS, Algorithm
from .gemm import Gemm
from .reference import Reference

#: Every algorithm by name, in the order the planner lists them.
ALGORITHMS: dict[str, Algorithm] = {alg.name: alg for alg in (Reference(), Gemm())}

__all__ = ["ALGORITHMS", "OPS", "Algorithm"]
