"""The plug-in contract every convolution algorithm follows."""

from __future__ import annotations

import numpy as np

from .._geometry import ConvGeometry

#: The three primitives. input_grad is also transposed convolution.
OPS = ("forward", "input_grad", "weight_grad")


class Algorithm:
    """One way to compute convolutions.

    Arrays reach an algorithm already in the compute dtype (float32, float64, complex64
    or complex128) with a batch of at least one; any memory layout. Each method returns a
    new array in that dtype:

    * ``forward(x, w, geom)``: x ``geom.input_shape``, w ``geom.weight_shape`` -> ``geom.output_shape``
    * ``input_grad(dy, w, geom)``: dy ``geom.output_shape`` -> ``geom.input_shape``
    * ``weight_grad(x, dy, geom)``: -> ``geom.weight_shape``

    ``native_ops`` lists the methods it implements; the planner can still serve the other
    two ops through ``forward`` on the adjoint geometries (``geom.for_input_grad()`` ...).
    """

    name: str = ""
    native_ops: tuple[str, ...] = ("forward",)
    #: Whether it runs numba kernels (whose first use in a process pays numba's start-up).
    compiled: bool = True

    def needs_compiler(self, geom: ConvGeometry, op: str) -> bool:
        """Whether running ``op`` on ``geom`` calls compiled (numba) kernels."""
        return self.compiled

    def supports(self, geom: ConvGeometry, dtype: np.dtype, op: str) -> str | None:
        """None when this algorithm can run ``op`` on ``geom``; otherwise the reason it declines,
        starting with the algorithm's name (``"gemm: ..."``), as errors and ``explain()`` show it."""
        return None

    def cost(self, geom: ConvGeometry, dtype: np.dtype, op: str) -> float:
        """Estimated seconds for one call; only compared between algorithms."""
        raise NotImplementedError

    def forward(self, x: np.ndarray, w: np.ndarray, geom: ConvGeometry) -> np.ndarray:
        raise NotImplementedError

    def input_grad(self, dy: np.ndarray, w: np.ndarray, geom: ConvGeometry) -> np.ndarray:
        raise NotImplementedError

    def weight_grad(self, x: np.ndarray, dy: np.ndarray, geom: ConvGeometry) -> np.ndarray:
        raise NotImplementedError
