"""Every registered algorithm against the `reference` oracle, on every case its supports() accepts,
for each op and both routes (native and via the forward pass on the adjoint geometry)."""

from __future__ import annotations

import numpy as np
import pytest

from fastconv import _adjoint, _config
from fastconv._errors import CallContext
from fastconv._geometry import ConvGeometry
from fastconv.algorithms import ALGORITHMS

from cases import arrays, case_id, forward_cases

CASES = forward_cases(per_dim=25, seed=11)
REFERENCE = ALGORITHMS["reference"]


def _geometry(case, x, w):
    return ConvGeometry.for_conv(x.shape, w.shape, case["stride"], case["padding"], case["dilation"],
                                 case["groups"], CallContext("test"))


def _routes(alg, geom, dtype):
    """(label, callable(x, w, dy) -> (result, expected)) for every route the algorithm accepts."""
    if "forward" in alg.native_ops and alg.supports(geom, dtype, "forward") is None:
        yield "forward", lambda x, w, dy: (alg.forward(x, w, geom), REFERENCE.forward(x, w, geom))
    if "input_grad" in alg.native_ops and alg.supports(geom, dtype, "input_grad") is None:
        yield "input_grad", lambda x, w, dy: (alg.input_grad(dy, w, geom), REFERENCE.input_grad(dy, w, geom))
    if "weight_grad" in alg.native_ops and alg.supports(geom, dtype, "weight_grad") is None:
        yield "weight_grad", lambda x, w, dy: (alg.weight_grad(x, dy, geom), REFERENCE.weight_grad(x, dy, geom))
    if alg.supports(geom.for_input_grad(), dtype, "forward") is None:
        yield "input_grad via forward", lambda x, w, dy: (
            _adjoint.input_grad_via_forward(alg.forward, geom, dy, w), REFERENCE.input_grad(dy, w, geom))
    if alg.supports(geom.for_weight_grad(), dtype, "forward") is None:
        yield "weight_grad via forward", lambda x, w, dy: (
            _adjoint.weight_grad_via_forward(alg.forward, geom, x, dy), REFERENCE.weight_grad(x, dy, geom))


@pytest.mark.parametrize("name", [n for n in ALGORITHMS if n != "reference"])
@pytest.mark.parametrize("case", CASES, ids=map(case_id, CASES))
def test_algorithm_matches_reference_float64(name, case):
    alg = ALGORITHMS[name]
    x, w, _ = arrays(dict(case, batch=case["batch"] or 1), "float64")
    geom = _geometry(case, x, w)
    dy = np.random.default_rng(5).standard_normal(geom.output_shape)
    ran = 0
    for label, route in _routes(alg, geom, np.dtype("float64")):
        frozen = [a.copy() for a in (x, w, dy)]
        ours, expected = route(x, w, dy)
        assert ours.shape == expected.shape and ours.dtype == expected.dtype, label
        np.testing.assert_allclose(ours, expected, rtol=1e-9, atol=1e-9 * max(1, np.abs(expected).max()), err_msg=label)
        assert all(np.array_equal(a, b) for a, b in zip((x, w, dy), frozen)), f"{label} modified its inputs"
        ran += 1
    if ran == 0:
        pytest.skip(f"{name} declines: {alg.supports(geom, np.dtype('float64'), 'forward')}")


@pytest.mark.parametrize("name", list(ALGORITHMS))
@pytest.mark.parametrize("case", CASES[::3], ids=map(case_id, CASES[::3]))
def test_algorithm_float32_error_within_budget(name, case):
    """Whatever an algorithm accepts by default stays within the default accuracy budget in float32."""
    alg = ALGORITHMS[name]
    x64, w64, _ = arrays(dict(case, batch=case["batch"] or 1), "float64")
    geom = _geometry(case, x64, w64)
    dy64 = np.random.default_rng(5).standard_normal(geom.output_shape)
    x32, w32, dy32 = (a.astype(np.float32) for a in (x64, w64, dy64))
    truths = {"forward": REFERENCE.forward(x64, w64, geom), "input_grad": REFERENCE.input_grad(dy64, w64, geom),
              "weight_grad": REFERENCE.weight_grad(x64, dy64, geom)}
    checked = 0
    for label, route in _routes(alg, geom, np.dtype("float32")):
        ours, _ = route(x32, w32, dy32)
        truth = truths[label.split()[0]]
        assert ours.dtype == np.float32, label
        rel = np.linalg.norm(ours - truth) / max(np.linalg.norm(truth), 1e-30)
        assert rel <= _config.max_relative_error, f"{name} {label}: relative L2 error {rel:.2g}"
        checked += 1
    if checked == 0:
        pytest.skip(f"{name} declines this case")


@pytest.mark.parametrize("name", list(ALGORITHMS))
def test_complex_or_declined(name):
    """Complex input either runs correctly or is declined with a reason (never a wrong answer)."""
    alg = ALGORITHMS[name]
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2, 4, 7, 6)) + 1j * rng.standard_normal((2, 4, 7, 6))
    w = rng.standard_normal((6, 2, 3, 3)) + 1j * rng.standard_normal((6, 2, 3, 3))
    geom = ConvGeometry.for_conv(x.shape, w.shape, 1, 1, 1, 2, CallContext("test"))
    reason = alg.supports(geom, np.dtype("complex128"), "forward")
    if reason is not None:
        assert isinstance(reason, str) and reason
        return
    np.testing.assert_allclose(alg.forward(x, w, geom), REFERENCE.forward(x, w, geom), rtol=1e-10, atol=1e-10)
