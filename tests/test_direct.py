"""The direct kernels (``direct`` and ``depthwise`` plug-ins): every op against the reference
algorithm and torch in float64, on geometries chosen to reach each code path (blocked and
single outputs, stride phases, long rows cut into chunks, cropping adjoint geometries)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch_ref import t

import fastconv
from fastconv import _config
from fastconv import grad as fg
from fastconv._errors import CallContext
from fastconv._geometry import ConvGeometry
from fastconv.algorithms import ALGORITHMS, direct

REFERENCE = ALGORITHMS["reference"]

# (input shape, weight shape, stride, padding, dilation, groups)
GEOMETRIES = [
    ((2, 4, 9, 10), (8, 2, 3, 3), 1, 1, 1, 2),  # grouped, 4 outputs per group: blocked kernels
    ((2, 6, 9, 8), (6, 2, 3, 2), 2, 1, 1, 3),  # 2 outputs per group: single-output kernels
    ((1, 3, 17), (6, 3, 5), 3, 2, 2, 1),  # stride 3 with dilation: 3 phases, uneven taps per phase
    ((2, 6, 5, 6, 7), (12, 3, 2, 3, 2), (1, 2, 2), 1, (2, 1, 1), 2),  # 3-D, per-dimension stride/dilation
    ((2, 8, 12, 11), (16, 2, 3, 3), (2, 3), ((0, 2), (1, 0)), (1, 2), 4),  # asymmetric padding pairs
    ((2, 9, 7, 7), (10, 9, 1, 1), 1, 0, 1, 1),  # 1x1, 10 outputs (blocked + remainder)
    ((1, 2, 5000), (4, 1, 9), 2, 4, 3, 2),  # rows longer than a run: cut into chunks
    ((3, 5, 6, 6), (5, 1, 3, 3), 1, 1, 1, 5),  # depthwise
    ((2, 3, 11, 9), (12, 1, 5, 3), (2, 1), (2, 1), 1, 3),  # depthwise, channel multiplier 4
    ((2, 4, 7, 8), (4, 1, 4, 4), 3, 2, 2, 4),  # depthwise, kernel wider than the stride phases
    ((1, 1, 300), (5, 1, 7), 1, 3, 1, 1),  # single-channel 1-D stem
    ((2, 2, 4, 5, 6), (6, 1, 3, 2, 3), 2, (1, 0, 1), 1, 2),  # 3-D depthwise, multiplier 3
    ((2, 3, 10, 9), (13, 3, 3, 3), 1, 1, 1, 1),  # 13 outputs: an 8-output tile, a 4-output one, a single
    ((1, 1, 300), (9, 1, 7), 2, 3, 1, 1),  # single-channel stem, multiplier 9: 8-output tiles over stride phases
]


def _geometry(xs, ws, stride, padding, dilation, groups):
    return ConvGeometry.for_conv(xs, ws, stride, padding, dilation, groups, CallContext("test"))


def _algorithm(geom):
    return ALGORITHMS["depthwise" if geom.groups == geom.in_channels else "direct"]


def _arrays(geom, dtype=np.float64, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal(geom.input_shape).astype(dtype), rng.standard_normal(geom.weight_shape).astype(dtype),
            rng.standard_normal(geom.output_shape).astype(dtype))


def _ops(alg, ref, geom, x, w, dy):
    yield "forward", alg.forward(x, w, geom), ref.forward(x, w, geom)
    yield "input_grad", alg.input_grad(dy, w, geom), ref.input_grad(dy, w, geom)
    yield "weight_grad", alg.weight_grad(x, dy, geom), ref.weight_grad(x, dy, geom)


@pytest.mark.parametrize("case", GEOMETRIES, ids=str)
def test_ops_match_reference_float64(case):
    geom = _geometry(*case)
    alg = _algorithm(geom)
    assert alg.supports(geom, np.dtype("float64"), "forward") is None
    x, w, dy = _arrays(geom)
    frozen = [a.copy() for a in (x, w, dy)]
    for op, ours, expected in _ops(alg, REFERENCE, geom, x, w, dy):
        assert ours.shape == expected.shape and ours.dtype == np.float64, op
        np.testing.assert_allclose(ours, expected, rtol=1e-11, atol=1e-11 * np.abs(expected).max(), err_msg=op)
    assert all(np.array_equal(a, b) for a, b in zip((x, w, dy), frozen)), "inputs were modified"


@pytest.mark.parametrize("case", GEOMETRIES[::2], ids=str)
def test_float32_error_against_float64(case):
    """Computed in float32 (fused multiply-adds in tap order): relative L2 error near 1e-7."""
    geom = _geometry(*case)
    alg = _algorithm(geom)
    x, w, dy = _arrays(geom)
    single = [a.astype(np.float32) for a in (x, w, dy)]
    for (op, truth, _), (_, ours, _) in zip(_ops(alg, REFERENCE, geom, x, w, dy),
                                            _ops(alg, REFERENCE, geom, *single)):
        assert ours.dtype == np.float32, op
        assert np.linalg.norm(ours - truth) / np.linalg.norm(truth) < 1e-6, op


@pytest.mark.parametrize("case", [
    ((2, 3, 11, 9), (3, 1, 5, 3), (2, 1), (2, 1), 1, 3),  # stride 2 in rows: taps of a row class by phase
    ((1, 2, 9, 300), (2, 1, 3, 5), 1, (1, 2), (1, 3), 2),  # rows longer than a run: column chunks
    ((1, 4, 10, 12), (2, 2, 7, 5), 1, 3, 1, 2),  # two input channels per group
    ((1, 2, 5, 6, 7), (4, 1, 3, 3, 2), 1, 1, (2, 1, 1), 2),  # 3-D
    ((2, 2, 40), (2, 1, 9), 3, 4, 1, 2),  # 1-D: a single output row
], ids=str)
def test_both_forward_layouts_match_reference(case, monkeypatch):
    """Runs of whole output rows, and runs of 4 output rows sharing their loads (chosen by cost)."""
    geom = _geometry(*case)
    alg = _algorithm(geom)
    x, w, _ = _arrays(geom)
    expected = REFERENCE.forward(x, w, geom)
    for make in (direct._flat_layout, direct._rows_layout):
        def forced(g, itemsize, rowwise, make=make):
            return make(g, direct.spatial3d(g), itemsize)
        monkeypatch.setattr(direct, "forward_layout", forced)
        np.testing.assert_allclose(alg.forward(x, w, geom), expected, rtol=1e-11, atol=1e-11 * np.abs(expected).max(),
                                   err_msg=make.__name__)


def test_adjoint_geometries_with_cropping():
    """Forward on the adjoint geometries (negative padding = crop) serves the planner's 'via forward'."""
    for case in GEOMETRIES[:5]:
        for geom in (_geometry(*case).for_input_grad(), _geometry(*case).for_weight_grad()):
            alg = ALGORITHMS["direct"]
            if alg.supports(geom, np.dtype("float64"), "forward"):
                continue
            x, w, _ = _arrays(geom)
            np.testing.assert_allclose(alg.forward(x, w, geom), REFERENCE.forward(x, w, geom), rtol=1e-11,
                                       atol=1e-11 * max(1.0, np.abs(x).max() * np.abs(w).max()))


@pytest.mark.parametrize("name,case", [("direct", GEOMETRIES[0]), ("depthwise", GEOMETRIES[8]),
                                       ("depthwise", GEOMETRIES[11])], ids=str)
def test_public_api_matches_torch(name, case):
    xs, ws, stride, padding, dilation, groups = case
    nd = len(xs) - 2
    geom = _geometry(*case)
    x, w, dy = _arrays(geom, seed=3)
    if any(isinstance(p, tuple) for p in np.atleast_1d(padding)):
        pytest.skip("pairs of padding are a fastconv extension")
    kw = {"stride": stride, "padding": padding, "dilation": dilation, "groups": groups}
    tconv = getattr(torch.nn.functional, f"conv{nd}d")
    xt, wt = t(x).requires_grad_(True), t(w).requires_grad_(True)
    yt = tconv(xt, wt, **kw)
    yt.backward(t(dy))
    y = getattr(fastconv, f"conv{nd}d")(x, w, **kw, algorithm=name)
    dx = getattr(fg, f"conv{nd}d_input")(xs, w, dy, **kw, algorithm=name)
    dw = getattr(fg, f"conv{nd}d_weight")(x, ws, dy, **kw, algorithm=name)
    for ours, theirs in ((y, yt), (dx, xt.grad), (dw, wt.grad)):
        np.testing.assert_allclose(ours, theirs.detach().numpy(), rtol=1e-10, atol=1e-10)


def test_unbatched_and_non_contiguous_inputs():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((6, 12, 20))[:, ::2, ::2]  # (C, H, W) unbatched, strided view
    w = rng.standard_normal((6, 3, 3, 3)).transpose(0, 1, 3, 2)  # non-contiguous weight
    ours = fastconv.conv2d(x, w, padding=1, groups=2, algorithm="direct")
    expected = torch.nn.functional.conv2d(t(x), t(w), padding=1, groups=2).numpy()
    np.testing.assert_allclose(ours, expected, rtol=1e-11, atol=1e-11)


def test_transposed_convolution_runs_native_input_grad():
    rng = np.random.default_rng(2)
    x, w = rng.standard_normal((2, 4, 5, 6)), rng.standard_normal((4, 1, 3, 3))
    ours = fastconv.conv_transpose2d(x, w, stride=2, padding=1, output_padding=1, groups=4, algorithm="depthwise")
    expected = torch.nn.functional.conv_transpose2d(t(x), t(w), stride=2, padding=1, output_padding=1, groups=4)
    np.testing.assert_allclose(ours, expected.numpy(), rtol=1e-11, atol=1e-11)


@pytest.mark.parametrize("width", [1, 2, 3, 4, 5, 33])
@pytest.mark.parametrize("padding", [0, 1, 3])
@pytest.mark.parametrize("algorithm, groups", [("direct", 1), ("depthwise", 4)])
def test_stride2_packing_at_every_width(width, padding, algorithm, groups):
    """Stride-2 rows are split into their two column phases by vector shuffles between scalar
    edges; narrow rows leave the shuffled part empty or reach into the padding on either side."""
    rng = np.random.default_rng(width)
    x, w = rng.standard_normal((2, 4, 5, width)), rng.standard_normal((4, 4 // groups, 3, 3))
    if width + 2 * padding < 3:
        return  # no output
    ours = fastconv.conv2d(x, w, stride=2, padding=padding, groups=groups, algorithm=algorithm)
    expected = torch.nn.functional.conv2d(t(x), t(w), stride=2, padding=padding, groups=groups)
    np.testing.assert_allclose(ours, expected.numpy(), rtol=1e-11, atol=1e-11)


def test_declines_with_reasons():
    dense = _geometry((1, 4, 8, 8), (4, 4, 3, 3), 1, 1, 1, 1)
    depthwise = _geometry((1, 4, 8, 8), (4, 1, 3, 3), 1, 1, 1, 4)
    assert ALGORITHMS["direct"].supports(dense, np.dtype("complex64"), "forward") == "direct: complex dtypes"
    assert "depthwise" in ALGORITHMS["direct"].supports(depthwise, np.dtype("float32"), "forward")
    assert "in_channels" in ALGORITHMS["depthwise"].supports(dense, np.dtype("float32"), "forward")
    wide = _geometry((1, 64, 8, 8), (64, 64, 3, 3), 1, 1, 1, 1)  # BLAS wins the forward pass, not the weight gradient
    assert "gemm" in ALGORITHMS["direct"].supports(wide, np.dtype("float32"), "forward")
    assert ALGORITHMS["direct"].supports(wide, np.dtype("float32"), "weight_grad") is None
    wider = _geometry((1, 128, 8, 8), (128, 128, 3, 3), 1, 1, 1, 1)
    assert "gemm" in ALGORITHMS["direct"].supports(wider, np.dtype("float32"), "weight_grad")
    four_d = ConvGeometry(1, 1, 1, 1, (3, 3, 3, 3), (1, 1, 1, 1), (1,) * 4, (1,) * 4, ((0, 0),) * 4)
    assert "4 spatial dimensions" in ALGORITHMS["direct"].supports(four_d, np.dtype("float32"), "forward")
    big = _geometry((1, 64, 512, 512), (64, 16, 3, 3), 1, 1, 1, 4)
    saved = _config.workspace_bytes
    try:
        _config.workspace_bytes = 2**20
        assert "workspace" in ALGORITHMS["direct"].supports(big, np.dtype("float32"), "forward")
    finally:
        _config.workspace_bytes = saved


def test_cost_is_positive_and_grows_with_work():
    small = _geometry((1, 8, 16, 16), (8, 1, 3, 3), 1, 1, 1, 8)
    large = _geometry((4, 8, 64, 64), (8, 1, 3, 3), 1, 1, 1, 8)
    alg = ALGORITHMS["depthwise"]
    for op in ("forward", "input_grad", "weight_grad"):
        assert 0 < alg.cost(small, np.dtype("float32"), op) < alg.cost(large, np.dtype("float32"), op)
