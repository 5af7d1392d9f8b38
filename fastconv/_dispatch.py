"""From validated arrays and a geometry to a result: dtype promotion, empty batches, planning."""

from __future__ import annotations

import numpy as np

from ._args import COMPUTE_DTYPES
from ._errors import CallContext
from ._geometry import ConvGeometry
from .planner import plan


def run(op: str, geom: ConvGeometry, a: np.ndarray, b: np.ndarray, ctx: CallContext, *,
        algorithm: str | None = None, bias: np.ndarray | None = None) -> np.ndarray:
    """Compute ``op`` in the compute dtype of ``a`` and return it in ``a``'s dtype.

    ``bias`` (optional) is added along axis 1 of the result before the final cast.
    """
    out_dtype = a.dtype
    shape = {"forward": geom.output_shape, "input_grad": geom.input_shape, "weight_grad": geom.weight_shape}[op]
    if 0 in shape or geom.batch == 0:
        result = np.zeros(shape, dtype=COMPUTE_DTYPES[out_dtype])
    else:
        compute = COMPUTE_DTYPES[out_dtype]
        try:
            chosen = plan(geom, compute, op, algorithm)
        except ValueError as exc:  # a forced algorithm that is unknown or declines
            raise ctx.value_error(str(exc)) from None
        result = chosen.execute(a.astype(compute, copy=False), b.astype(compute, copy=False))
    if bias is not None:
        result = result + bias.astype(result.dtype, copy=False).reshape((-1,) + (1,) * (result.ndim - 2))
    return np.ascontiguousarray(result, dtype=out_dtype)
