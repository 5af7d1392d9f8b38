"""The Winograd algorithms: exact against torch and the reference, their error bound, the
work split between threads, the native gradients (exact adjoints of the forward algorithm),
gradients through the planner, and the reasons they decline."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import fastconv
from fastconv import _config
from fastconv._errors import CallContext
from fastconv._geometry import ConvGeometry
from fastconv.algorithms import ALGORITHMS, _gemm_parallel, winograd
from fastconv.algorithms import _winograd_transforms as wt
from fastconv.grad import conv2d_input, conv2d_weight

REFERENCE = ALGORITHMS["reference"]
WINOGRAD = [ALGORITHMS["winograd2"], ALGORITHMS["winograd4"]]
TORCH = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}

# input shape, weight shape, padding (int, tuple or per-side pairs), groups
CASES = [
    ((2, 3, 17), (4, 3, 3), 1, 1),
    ((1, 4, 9), (6, 2, 3), ((2, 0),), 2),  # asymmetric padding, groups
    ((2, 3, 11, 13), (5, 3, 3, 3), 1, 1),  # sizes no multiple of any tile
    ((1, 4, 7, 6), (4, 2, 3, 3), ((0, 2), (1, 0)), 2),
    ((3, 2, 5, 9), (3, 2, 3, 3), 0, 1),
    ((1, 2, 3, 3), (2, 2, 3, 3), 2, 1),  # more padding than input
    ((1, 3, 6, 7, 5), (2, 3, 3, 3, 3), ((1, 0), (0, 2), (1, 1)), 1),
    ((2, 4, 5, 4, 6), (4, 1, 3, 3, 3), 1, 4),
]


def _geometry(x_shape, w_shape, padding, groups, stride=1, dilation=1):
    return ConvGeometry.for_conv(x_shape, w_shape, stride, padding, dilation, groups, CallContext("test"))


def _torch(x, w, padding, groups):
    nd = x.ndim - 2
    if isinstance(padding, tuple) and isinstance(padding[0], tuple):
        x = np.pad(x, [(0, 0), (0, 0), *padding])
        padding = 0
    return TORCH[nd](torch.from_numpy(x), torch.from_numpy(w), padding=padding, groups=groups).numpy()


@pytest.fixture(autouse=True)
def restore_settings():
    saved = _config.workspace_bytes, _config.max_relative_error
    yield
    _config.workspace_bytes, _config.max_relative_error = saved


@pytest.mark.parametrize("m", wt.TILE_SIZES)
def test_matrices_compute_the_correlation(m):
    bt, g, at = wt.matrices(m)
    rng = np.random.default_rng(m)
    d, k = rng.standard_normal(m + 2), rng.standard_normal(3)
    np.testing.assert_allclose(at @ ((g @ k) * (bt @ d)), np.correlate(d, k, mode="valid"), rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize("m", wt.TILE_SIZES)
@pytest.mark.parametrize("nd", [1, 2, 3])
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.complex128])
def test_filter_transform_adjoint_is_the_transposed_kronecker_product(m, nd, dtype):
    """dw = du^T @ kron(G, ..., G) on a range of filters (the compiled kernel; complex by BLAS),
    blocks of filters cut short at both ends, rows outside the range left alone."""
    geom = _geometry((1, 3, *[9] * nd), (4, 3, *[3] * nd), 1, 1)
    rng = np.random.default_rng(nd)
    points, filters = (m + 2) ** nd, 700
    du = rng.standard_normal((points, filters)).astype(dtype)
    dw = np.full((filters, 3 ** nd), 7, dtype=dtype)
    wt.weight_transform_adjoint(du, geom, m, dw, (5, 650))
    expected = du.astype(np.complex128).T @ wt.kron_power(m, 1, nd)
    tolerance = 1e-6 if dtype == np.float32 else 1e-13
    np.testing.assert_allclose(dw[5:650], expected[5:650], rtol=tolerance, atol=tolerance * np.abs(expected).max())
    assert (dw[:5] == 7).all() and (dw[650:] == 7).all()


@pytest.mark.parametrize("alg", WINOGRAD, ids=lambda a: a.name)
@pytest.mark.parametrize("case", CASES, ids=str)
def test_float64_matches_torch_and_reference(alg, case):
    x_shape, w_shape, padding, groups = case
    rng = np.random.default_rng(0)
    x, w = rng.standard_normal(x_shape), rng.standard_normal(w_shape)
    geom = _geometry(x_shape, w_shape, padding, groups)
    assert alg.supports(geom, np.dtype("float64"), "forward") is None
    frozen = x.copy(), w.copy()
    ours = alg.forward(x, w, geom)
    np.testing.assert_allclose(ours, _torch(x, w, padding, groups), rtol=1e-11, atol=1e-11)
    np.testing.assert_allclose(ours, REFERENCE.forward(x, w, geom), rtol=1e-11, atol=1e-11)
    assert np.array_equal(x, frozen[0]) and np.array_equal(w, frozen[1])


@pytest.mark.parametrize("alg", WINOGRAD, ids=lambda a: a.name)
@pytest.mark.parametrize("case", CASES, ids=str)
def test_gradients_float64_match_torch_and_reference(alg, case):
    """The native input and weight gradients against torch's autograd and the reference."""
    x_shape, w_shape, padding, groups = case
    rng = np.random.default_rng(5)
    geom = _geometry(x_shape, w_shape, padding, groups)
    x, w, dy = rng.standard_normal(x_shape), rng.standard_normal(w_shape), rng.standard_normal(geom.output_shape)
    xt, wt_ = (torch.tensor(a, requires_grad=True) for a in (x, w))
    if isinstance(padding, tuple):  # per side: padded first, as torch pads both sides alike
        padded, torch_padding = F.pad(xt, [p for pair in reversed(padding) for p in pair]), 0
    else:
        padded, torch_padding = xt, padding
    TORCH[len(x_shape) - 2](padded, wt_, padding=torch_padding, groups=groups).backward(torch.from_numpy(dy))
    frozen = x.copy(), w.copy(), dy.copy()
    for op, ours, truth in [("input_grad", alg.input_grad(dy, w, geom), xt.grad),
                            ("weight_grad", alg.weight_grad(x, dy, geom), wt_.grad)]:
        assert alg.supports(geom, np.dtype("float64"), op) is None
        np.testing.assert_allclose(ours, truth.numpy(), rtol=1e-11, atol=1e-11, err_msg=op)
        reference = REFERENCE.input_grad(dy, w, geom) if op == "input_grad" else REFERENCE.weight_grad(x, dy, geom)
        np.testing.assert_allclose(ours, reference, rtol=1e-11, atol=1e-11, err_msg=op)
    assert all(np.array_equal(a, b) for a, b in zip((x, w, dy), frozen))


@pytest.mark.parametrize("alg", WINOGRAD, ids=lambda a: a.name)
def test_gradients_are_the_adjoints_of_the_forward(alg):
    """<dy, conv(x, w)> = <input_grad(dy, w), x> = <weight_grad(x, dy), w>: the gradients are exact
    adjoints, not just close (groups and asymmetric padding included)."""
    rng = np.random.default_rng(6)
    x, w = rng.standard_normal((2, 6, 10, 11)), rng.standard_normal((4, 3, 3, 3))
    geom = _geometry(x.shape, w.shape, ((2, 0), (1, 1)), 2)
    dy = rng.standard_normal(geom.output_shape)
    lhs = np.vdot(dy, alg.forward(x, w, geom))
    assert abs(lhs - np.vdot(alg.input_grad(dy, w, geom), x)) <= 1e-11 * abs(lhs)
    assert abs(lhs - np.vdot(alg.weight_grad(x, dy, geom), w)) <= 1e-11 * abs(lhs)


@pytest.mark.parametrize("alg", WINOGRAD, ids=lambda a: a.name)
@pytest.mark.parametrize("workspace_mib, image", [(256, 8), (0.06, 8), (256, 64)],
                         ids=["one-chunk", "chunks", "whole-chunks"])
@pytest.mark.parametrize("products", ["complex", "real"])
def test_weight_grad_work_split_between_threads(alg, workspace_mib, image, products, monkeypatch):
    """Two workers sharing the tile rows' chunk, or several whose sums are added up, or each taking
    whole chunks into sums of its own (enough tiles); non-contiguous views; complex data
    (conjugation-free, as the planner passes it) through BLAS's products, real data through the
    compiled ones."""
    monkeypatch.setattr(_gemm_parallel, "workers", lambda macs: 2)
    fastconv.set_workspace_limit(workspace_mib)
    rng = np.random.default_rng(7)
    x = rng.standard_normal((image, 6, 3, 19)).transpose(2, 1, 0, 3)  # (3, 6, image, 19), not contiguous
    geom = _geometry(x.shape, (8, 3, 3, 3), ((1, 0), (2, 1)), 2)
    dy = rng.standard_normal(geom.output_shape)[..., ::-1]
    if products == "complex":
        x = x + 1j * rng.standard_normal(x.shape)
        dy = dy + 1j * rng.standard_normal(dy.shape)[..., ::-1]
    np.testing.assert_allclose(alg.weight_grad(x, dy, geom), REFERENCE.weight_grad(x, dy, geom), rtol=1e-11,
                               atol=1e-11)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(3, 5, 7, 37), (2, 4, 4, 16), (1, 9, 2, 3)], ids=str)
def test_compiled_products_sum_over_tiles(shape, dtype):
    """``products_nt``: out[q] = a[q] @ b[q].T, then added to, on every block shape and tail."""
    from fastconv.algorithms._winograd_kernels import products_nt
    q, r, s, count = shape
    rng = np.random.default_rng(3)
    a, b = rng.standard_normal((q, r, count)).astype(dtype), rng.standard_normal((q, s, count)).astype(dtype)
    out = np.full((q, r, s), np.nan, dtype)
    truth = np.einsum("qrt,qst->qrs", a.astype(np.float64), b.astype(np.float64))
    tol = 1e-5 if dtype == np.float32 else 1e-13
    products_nt(a, b, out, 0, q, 0)
    np.testing.assert_allclose(out, truth, rtol=tol, atol=tol * count)
    products_nt(a, b, out, 1, q, 1)
    np.testing.assert_allclose(out[1:], 2 * truth[1:], rtol=tol, atol=tol * count)
    np.testing.assert_allclose(out[:1], truth[:1], rtol=tol, atol=tol * count)


@pytest.mark.parametrize("alg", WINOGRAD, ids=lambda a: a.name)
@pytest.mark.parametrize("nd, channels, size", [(1, 8, (700,)), (2, 16, (13, 14)), (2, 4, (40, 44)), (3, 8, (7, 6, 8))])
@pytest.mark.parametrize("data", ["normal", "relu"])
def test_weight_grad_float32_error_within_bound(alg, nd, channels, size, data):
    rng = np.random.default_rng(nd * 100 + channels)
    x = rng.standard_normal((2, channels, *size))
    x = np.maximum(x, 0) if data == "relu" else x
    geom = _geometry(x.shape, (6, channels) + (3,) * nd, 1, 1)
    dy = rng.standard_normal(geom.output_shape)
    truth = REFERENCE.weight_grad(x, dy, geom)
    ours = alg.weight_grad(x.astype(np.float32), dy.astype(np.float32), geom)
    error = np.linalg.norm(ours - truth) / np.linalg.norm(truth)
    assert error <= alg.error_bound(geom, np.dtype("float32"), "weight_grad"), f"{alg.name}: {error:.2e}"


def test_weight_grad_declines_f4_where_its_error_bound_is_too_large():
    """The bound grows with the positions summed: a large 3-D layer's F(4,3) weight gradient declines."""
    geom = _geometry((2, 32, 32, 32, 32), (32, 32, 3, 3, 3), 1, 1)
    reason = WINOGRAD[1].supports(geom, np.dtype("float32"), "weight_grad")
    assert "est. float32 relative error" in reason
    assert WINOGRAD[0].supports(geom, np.dtype("float32"), "weight_grad") is None


def test_planner_runs_the_suites_3x3_weight_gradients_through_winograd():
    """train.3x3c64.wgrad and train.3x3c256.wgrad: the native Winograd weight gradient, exact in float64."""
    for x_shape, w_shape in [((4, 64, 56, 56), (64, 64, 3, 3)), ((4, 256, 14, 14), (256, 256, 3, 3))]:
        plan = fastconv.plan_for("conv2d_weight", x_shape, w_shape, padding=1)
        assert plan.choice.algorithm.startswith("winograd") and plan.choice.route == "native", plan.explain()
    rng = np.random.default_rng(8)
    x, dy = rng.standard_normal((2, 16, 12, 12)), rng.standard_normal((2, 16, 12, 12))
    np.testing.assert_allclose(conv2d_weight(x, (16, 16, 3, 3), dy, padding=1, algorithm="winograd4"),
                               torch.nn.grad.conv2d_weight(torch.from_numpy(x), (16, 16, 3, 3), torch.from_numpy(dy),
                                                           padding=1).numpy(), rtol=1e-11, atol=1e-11)


@pytest.mark.parametrize("alg", WINOGRAD, ids=lambda a: a.name)
def test_negative_padding_and_strided_views(alg):
    """Derived geometries crop (negative padding); arrays may be non-contiguous views."""
    rng = np.random.default_rng(1)
    x = rng.standard_normal((12, 3, 2, 14)).transpose(2, 1, 3, 0)[:, :, ::2]  # (2, 3, 7, 12)
    w = rng.standard_normal((4, 3, 3, 3))[:, :, ::-1]
    geom = ConvGeometry(2, 3, 4, 1, (7, 12), (3, 3), (1, 1), (1, 1), ((-1, 2), (1, -2)))
    np.testing.assert_allclose(alg.forward(x, w, geom), REFERENCE.forward(x, w, geom), rtol=1e-11, atol=1e-11)


@pytest.mark.parametrize("alg", WINOGRAD, ids=lambda a: a.name)
@pytest.mark.parametrize("split", [False, True], ids=["whole-chunks", "split-chunks"])
def test_work_split_between_threads(alg, split, monkeypatch):
    """Both ways of sharing the work (whole chunks per worker, or each chunk's channels) agree."""
    monkeypatch.setattr(_gemm_parallel, "workers", lambda macs: 2)
    monkeypatch.setattr(winograd, "_CHUNK_BYTES", 1)
    monkeypatch.setattr(winograd, "_MIN_CHUNK_TILES", 8)
    monkeypatch.setattr(winograd, "_WHOLE_CHUNK_MIN_TILES", 10**9 if split else 1)
    rng = np.random.default_rng(2)
    x, w = rng.standard_normal((3, 6, 21, 10)), rng.standard_normal((8, 3, 3, 3))
    geom = _geometry(x.shape, w.shape, ((1, 0), (2, 1)), 2)
    _config.workspace_bytes = 2**22
    chunks, split_chunks = alg._chunks(geom, np.dtype("float64"), wt.row_tables(geom, alg.m)[0].shape[0], 2)
    assert split_chunks == split and len(chunks) > 1
    np.testing.assert_allclose(alg.forward(x, w, geom), REFERENCE.forward(x, w, geom), rtol=1e-11, atol=1e-11)


@pytest.mark.parametrize("alg", WINOGRAD, ids=lambda a: a.name)
@pytest.mark.parametrize("dtype", ["float32", "complex128"])
def test_other_dtypes(alg, dtype):
    rng = np.random.default_rng(3)
    x, w = rng.standard_normal((2, 4, 9, 10)), rng.standard_normal((6, 4, 3, 3))
    if dtype == "complex128":
        x, w = x + 1j * rng.standard_normal(x.shape), w + 1j * rng.standard_normal(w.shape)
    x, w = x.astype(dtype), w.astype(dtype)
    geom = _geometry(x.shape, w.shape, 1, 1)
    ours = alg.forward(x, w, geom)
    assert ours.dtype == np.dtype(dtype)
    truth = REFERENCE.forward(x.astype(np.complex128), w.astype(np.complex128), geom)
    assert np.linalg.norm(ours - truth) / np.linalg.norm(truth) <= alg.error_bound(geom, np.dtype(dtype))


@pytest.mark.parametrize("alg", WINOGRAD, ids=lambda a: a.name)
@pytest.mark.parametrize("nd, channels", [(1, 4), (1, 96), (2, 3), (2, 48), (3, 4), (3, 24)])
@pytest.mark.parametrize("data", ["normal", "relu"])
def test_float32_error_within_bound(alg, nd, channels, data):
    """The measured float32 relative L2 error (vs float64) stays below the documented bound."""
    rng = np.random.default_rng(nd * 100 + channels)
    size = {1: (130,), 2: (13, 14), 3: (7, 6, 8)}[nd]
    x = rng.standard_normal((2, channels, *size))
    x = np.maximum(x, 0) if data == "relu" else x
    w = rng.standard_normal((8, channels) + (3,) * nd)
    geom = _geometry(x.shape, w.shape, 1, 1)
    truth = REFERENCE.forward(x, w, geom)
    ours = alg.forward(x.astype(np.float32), w.astype(np.float32), geom)
    error = np.linalg.norm(ours - truth) / np.linalg.norm(truth)
    assert error <= alg.error_bound(geom, np.dtype("float32")), f"{alg.name}: {error:.2e}"


def test_accuracy_budget_declines_f4_first():
    geom = _geometry((4, 64, 56, 56), (64, 64, 3, 3), 1, 1)
    f2, f4 = WINOGRAD
    assert f2.supports(geom, np.dtype("float32"), "forward") is None
    assert f4.supports(geom, np.dtype("float32"), "forward") is None  # default budget 1e-5
    fastconv.set_accuracy(1e-6)
    reason = f4.supports(geom, np.dtype("float32"), "forward")
    assert "est. float32 relative error" in reason and "max_relative_error 1.0e-06" in reason
    assert f2.supports(geom, np.dtype("float32"), "forward") is None
    assert f4.supports(geom, np.dtype("float64"), "forward") is None  # float64 errors are ~1e-15
    assert fastconv.plan_for("conv2d", geom.input_shape, geom.weight_shape, padding=1).choice.algorithm != "winograd4"


@pytest.mark.parametrize("kwargs, reason", [
    (dict(stride=2), "stride (2, 2) is not 1"),
    (dict(dilation=2), "dilation (2, 2) is not 1"),
    (dict(w_shape=(4, 4, 5, 5)), "kernel (5, 5) is not 3"),
    (dict(x_shape=(1, 4, 5, 5, 5, 5), w_shape=(4, 4, 3, 3, 3, 3)), "4 spatial dimensions"),
])
def test_declines_with_reason(kwargs, reason):
    x_shape, w_shape = kwargs.pop("x_shape", (1, 4, 9, 9)), kwargs.pop("w_shape", (4, 4, 3, 3))
    geom = _geometry(x_shape, w_shape, 2, 1, **kwargs)
    for alg in WINOGRAD:
        assert reason in alg.supports(geom, np.dtype("float32"), "forward")
        assert reason in alg.supports(geom, np.dtype("float32"), "weight_grad")
        assert reason in alg.supports(geom, np.dtype("float32"), "input_grad")


def test_declines_when_transformed_weights_exceed_the_workspace():
    geom = _geometry((1, 512, 8, 8), (512, 512, 3, 3), 1, 1)
    fastconv.set_workspace_limit(16)
    assert "MiB of scratch" in WINOGRAD[1].supports(geom, np.dtype("float32"), "forward")  # 36 MiB of filters


def test_input_gradient_runs_winograd_natively():
    """The input gradient of a stride-1 3x3 convolution is a stride-1 3x3 convolution: the planner
    serves it through Winograd's native input gradient, the forward with the flip inside the filter
    transform (train.3x3c64.dgrad; on half its map, (2, 64, 28, 28), blocked via forward ties and
    is picked), whose result matches torch's."""
    x_shape = (4, 64, 56, 56)
    plan = fastconv.plan_for("conv2d_input", x_shape, (64, 64, 3, 3), padding=1)
    assert plan.choice.algorithm.startswith("winograd") and plan.choice.route == "native", plan.explain()
    rng = np.random.default_rng(4)
    w, dy = rng.standard_normal((64, 64, 3, 3)), rng.standard_normal(x_shape)
    xt = torch.zeros(x_shape, dtype=torch.float64, requires_grad=True)
    F.conv2d(xt, torch.from_numpy(w), padding=1).backward(torch.from_numpy(dy))
    np.testing.assert_allclose(conv2d_input(x_shape, w, dy, padding=1), xt.grad.numpy(), rtol=1e-10, atol=1e-10)


def test_cost_prefers_f4_on_wide_images_and_counts_spare_tiles():
    f2, f4 = WINOGRAD
    geom = _geometry((4, 64, 56, 56), (64, 64, 3, 3), 1, 1)
    assert f4.cost(geom, np.dtype("float32"), "forward") < f2.cost(geom, np.dtype("float32"), "forward")
    assert f4._macs(geom) == 36 * 64 * 64 * 4 * 14 * 15  # 14 tiles + 1 spare per tile row
