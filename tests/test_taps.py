"""The taps plug-in (one BLAS product per kernel tap on shifted views of the padded input):
values against the reference algorithm on each code path (accumulating into y, extended rows
copied out, 3-D garbage rows, cropping padding, groups, dilation, several chunks), complex
dtypes, non-contiguous inputs, and every reason it declines."""

from __future__ import annotations

import numpy as np
import pytest

import fastconv
from fastconv import _config
from fastconv import functional as F
from fastconv import grad as fg
from fastconv._errors import CallContext
from fastconv._geometry import ConvGeometry
from fastconv.algorithms import ALGORITHMS, taps

TAPS, REFERENCE = ALGORITHMS["taps"], ALGORITHMS["reference"]

# (input shape, weight shape, padding, dilation, groups)
GEOMETRIES = [
    ((2, 3, 40), (4, 3, 2), 0, 7, 1),  # 1-D dilated, unpadded: views of x itself, accumulated into y
    ((1, 4, 17), (6, 2, 3), ((2, 1),), 2, 2),  # 1-D asymmetric padding, groups
    ((2, 3, 9, 10), (5, 3, 3, 3), 1, 1, 1),  # 2-D: extended rows copied out
    ((1, 4, 11, 9), (6, 2, 3, 2), ((0, 2), (1, 0)), (1, 2), 2),  # asymmetric padding, dilation, groups
    ((2, 3, 8, 7), (4, 3, 3, 1), ((1, 1), (0, 0)), (2, 1), 1),  # 2-D kernel (k, 1): direct layout
    ((1, 4, 5, 6, 7), (4, 2, 3, 2, 3), 1, (2, 1, 1), 2),  # 3-D: garbage rows in every plane
    ((2, 6, 7, 8), (6, 1, 3, 3), 1, 1, 6),  # depthwise
    ((2, 6, 7, 8), (4, 6, 1, 1), 0, 1, 1),  # pointwise
]


def _geometry(xs, ws, padding, dilation, groups, stride=1):
    return ConvGeometry.for_conv(xs, ws, stride, padding, dilation, groups, CallContext("test"))


def _draw(shape, dtype, rng):
    a = rng.standard_normal(shape)
    return (a + 1j * rng.standard_normal(shape) if np.dtype(dtype).kind == "c" else a).astype(dtype)


def _assert_matches_reference(geom, dtype, rtol):
    rng = np.random.default_rng(0)
    x, w = _draw(geom.input_shape, dtype, rng), _draw(geom.weight_shape, dtype, rng)
    frozen = x.copy(), w.copy()
    ours, expected = TAPS.forward(x, w, geom), REFERENCE.forward(x, w, geom)
    assert ours.shape == expected.shape and ours.dtype == expected.dtype
    np.testing.assert_allclose(ours, expected, rtol=rtol, atol=rtol * np.abs(expected).max())
    assert np.array_equal(x, frozen[0]) and np.array_equal(w, frozen[1]), "taps modified its inputs"


@pytest.mark.parametrize("dtype", ["float64", "complex128"])
@pytest.mark.parametrize("geometry", GEOMETRIES)
def test_forward_matches_reference(geometry, dtype):
    _assert_matches_reference(_geometry(*geometry), dtype, 1e-10)


@pytest.mark.parametrize("dtype", ["float32", "complex64"])
def test_single_precision(dtype):
    _assert_matches_reference(_geometry(*GEOMETRIES[3]), dtype, 1e-4)


def test_cropping_padding():
    # negative padding (the adjoint geometries use it): the padded copy crops
    geom = ConvGeometry(2, 3, 4, 1, (9, 10), (3, 2), (1, 1), (2, 1), ((-1, 2), (1, -2)))
    _assert_matches_reference(geom, "float64", 1e-10)


@pytest.mark.parametrize("geometry", [GEOMETRIES[0], GEOMETRIES[2], GEOMETRIES[5]])
def test_many_chunks(monkeypatch, geometry):
    # chunks of one padded row (or the fewest positions): several per sample, a short last one
    monkeypatch.setattr(taps, "CHUNK_BYTES", 1)
    monkeypatch.setattr(taps, "MIN_CHUNK_POSITIONS", 3)
    _assert_matches_reference(_geometry(*geometry), "float64", 1e-10)


@pytest.mark.parametrize("threads", [1, 2])
def test_threads_and_functional_api(threads, monkeypatch):
    from fastconv.algorithms import _gemm_parallel
    monkeypatch.setattr(_gemm_parallel, "PARALLEL_MIN_MACS", 0)
    before = fastconv.get_num_threads()
    fastconv.set_num_threads(threads)
    try:
        rng = np.random.default_rng(1)
        x, w = rng.standard_normal((3, 8, 12, 11)), rng.standard_normal((6, 4, 3, 3))
        kwargs = {"padding": 2, "dilation": 2, "groups": 2}
        np.testing.assert_allclose(F.conv2d(x, w, algorithm="taps", **kwargs),
                                   F.conv2d(x, w, algorithm="reference", **kwargs), rtol=1e-10, atol=1e-10)
    finally:
        fastconv.set_num_threads(before)


def test_non_contiguous_and_unbatched_inputs():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((5, 12, 20))[::2, ::-2].transpose(1, 0, 2)  # (6, 3, 20), negative strides
    w = np.asfortranarray(rng.standard_normal((4, 3, 3)))
    for args, kwargs in (((x, w), {"padding": (2,), "dilation": 3}), ((x[0], w), {"padding": "same"})):
        np.testing.assert_allclose(F.conv1d(*args, algorithm="taps", **kwargs),
                                   F.conv1d(*args, algorithm="reference", **kwargs), rtol=1e-10, atol=1e-10)


def test_gradients_via_forward():
    rng = np.random.default_rng(3)
    x, w = rng.standard_normal((2, 4, 9, 8)), rng.standard_normal((6, 4, 3, 3))
    dy = rng.standard_normal((2, 6, 9, 8))
    np.testing.assert_allclose(fg.conv2d_input(x.shape, w, dy, padding=1, algorithm="taps"),
                               fg.conv2d_input(x.shape, w, dy, padding=1, algorithm="reference"),
                               rtol=1e-10, atol=1e-10)


def test_declines_with_reasons(monkeypatch):
    f32 = np.dtype("float32")
    strided = _geometry((1, 2, 9, 9), (2, 2, 3, 3), 1, 1, 1, stride=2)
    assert "stride (2, 2); shifted views would be strided" in TAPS.supports(strided, f32, "forward")
    four_d = ConvGeometry(1, 2, 2, 1, (4, 4, 4, 4), (2,) * 4, (1,) * 4, (1,) * 4, ((0, 0),) * 4)
    assert "4 spatial dimensions" in TAPS.supports(four_d, f32, "forward")
    large = _geometry((1, 2, 40, 40), (2, 2, 9, 9), 4, 1, 1)
    assert f"81 kernel taps > {taps.MAX_TAPS}" in TAPS.supports(large, f32, "forward")
    # the weight gradient's adjoint geometry has a kernel as large as the output
    assert "kernel taps >" in TAPS.supports(_geometry(*GEOMETRIES[2]).for_weight_grad(), f32, "forward")
    assert "only forward" in TAPS.supports(_geometry(*GEOMETRIES[2]), f32, "input_grad")
    padded = _geometry((1, 64, 64, 64), (2, 64, 3, 3), 1, 1, 1)
    monkeypatch.setattr(_config, "workspace_bytes", 2**20)
    assert "padded input needs 1 MiB > workspace 1 MiB" in TAPS.supports(padded, f32, "forward")
    assert TAPS.supports(_geometry(*GEOMETRIES[0]), f32, "forward") is None  # no padded copy at all


def test_weight_gradient_geometry_is_not_chosen():
    plan = fastconv.plan_for("conv2d_weight", (2, 8, 16, 16), (8, 8, 3, 3), padding=1)
    assert all(c.cost is None for c in plan.candidates if c.algorithm == "taps" and c.route == "via forward")
