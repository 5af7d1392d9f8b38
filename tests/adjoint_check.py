"""The adjoint identity of gradients computed through a forward algorithm (the planner's "via
forward" routes), shared by the algorithms' tests."""

from __future__ import annotations

import numpy as np
import pytest

from fastconv import _adjoint


def assert_gradients_via_forward_are_adjoints(forward, geom, *, weight_grad: bool = True, seed: int = 2) -> None:
    """<conv(x, w), dy> = <x, dx(dy)> (= <w, dw(x, dy)> with ``weight_grad``), both gradients
    computed by ``forward`` on the adjoint geometries, to float64 rounding."""
    rng = np.random.default_rng(seed)
    x, w = rng.standard_normal(geom.input_shape), rng.standard_normal(geom.weight_shape)
    dy = rng.standard_normal(geom.output_shape)
    inner = np.vdot(forward(x, w, geom), dy)
    assert np.vdot(x, _adjoint.input_grad_via_forward(forward, geom, dy, w)) == pytest.approx(inner, rel=1e-11)
    if weight_grad:
        assert np.vdot(w, _adjoint.weight_grad_via_forward(forward, geom, x, dy)) == pytest.approx(inner, rel=1e-11)
