"""Winograd on channel-blocked layouts: forward and input gradient against the reference and torch
in float64, 1-D to 3-D (partial channel blocks, sizes no multiple of a tile, asymmetric and
negative padding, chunks of several tile rows, one worker or several), its float32 error within
winograd's bound, its filter transform against the Kronecker form, the adjoint identity, the
planner's choice on the suite's 3x3 layers, and every reason it declines."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import fastconv
from fastconv._errors import CallContext
from fastconv._geometry import ConvGeometry
from fastconv.algorithms import ALGORITHMS, winograd_blocked
from fastconv.algorithms import _winograd_transforms as wt

from adjoint_check import assert_gradients_via_forward_are_adjoints

REFERENCE = ALGORITHMS["reference"]
BLOCKED = [ALGORITHMS["winograd2_blocked"], ALGORITHMS["winograd4_blocked"]]

# input shape, weight shape, padding
CASES = [
    ((2, 32, 13, 17), (40, 32, 3, 3), 1),  # partial output block, sizes no multiple of a tile
    ((2, 20, 9, 11), (33, 20, 3, 3), 0),  # partial input block, no padding
    ((1, 17, 6, 7), (18, 17, 3, 3), ((0, 2), (1, 0))),  # asymmetric padding
    ((3, 16, 5, 5), (16, 16, 3, 3), 2),  # more padding than the kernel reaches
    ((2, 48, 30, 30), (64, 48, 3, 3), 1),  # several tile rows per chunk, several chunks per sample
    ((3, 20, 50), (33, 20, 3), 1),  # 1-D
    ((2, 16, 700), (24, 16, 3), ((2, 0),)),  # 1-D, the signal in several chunks
    ((2, 16, 7, 9, 6), (20, 16, 3, 3, 3), 1),  # 3-D, partial output block
    ((1, 33, 10, 9, 11), (24, 33, 3, 3, 3), ((1, 0), (0, 2), (2, 1))),  # 3-D, partial input block, asymmetric
]


def _geometry(x_shape, w_shape, padding):
    return ConvGeometry.for_conv(x_shape, w_shape, 1, padding, 1, 1, CallContext("test"))


@pytest.mark.parametrize("alg", BLOCKED, ids=lambda a: a.name)
@pytest.mark.parametrize("case", CASES, ids=str)
def test_forward_and_input_grad_float64_match_reference(alg, case, workers):
    geom = _geometry(*case)
    rng = np.random.default_rng(0)
    x, w, dy = (rng.standard_normal(s) for s in (geom.input_shape, geom.weight_shape, geom.output_shape))
    frozen = x.copy(), w.copy()
    expected = REFERENCE.forward(x, w, geom)
    np.testing.assert_allclose(alg.forward(x, w, geom), expected, rtol=1e-10, atol=1e-10 * np.abs(expected).max())
    expected = REFERENCE.input_grad(dy, w, geom)
    np.testing.assert_allclose(alg.input_grad(dy, w, geom), expected, rtol=1e-10, atol=1e-10 * np.abs(expected).max())
    assert np.array_equal(x, frozen[0]) and np.array_equal(w, frozen[1]), "modified its inputs"


def test_matches_torch_through_the_api():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 24, 19, 23))[:, :, ::-1]  # a strided view
    w = rng.standard_normal((36, 24, 3, 3))
    expected = F.conv2d(torch.from_numpy(x.copy()), torch.from_numpy(w), padding=1).numpy()
    for alg in BLOCKED:
        np.testing.assert_allclose(fastconv.conv2d(x, w, padding=1, algorithm=alg.name), expected, rtol=1e-10,
                                   atol=1e-10 * np.abs(expected).max())


@pytest.mark.parametrize("alg", BLOCKED, ids=lambda a: a.name)
def test_gradients_via_forward_satisfy_adjoint_identity(alg):
    """<conv(x, w), dy> = <x, dx(dy)> with dx by this forward pass on the adjoint geometry,
    whose padding is negative here (the packing crops)."""
    geom = _geometry((2, 24, 11, 10), (32, 24, 3, 3), ((3, 0), (1, 4)))
    assert min(lo for lo, _ in geom.for_input_grad().padding) < 0
    assert_gradients_via_forward_are_adjoints(alg.forward, geom, weight_grad=False)


@pytest.mark.parametrize("m", wt.TILE_SIZES)
@pytest.mark.parametrize("nd", [1, 2, 3])
@pytest.mark.parametrize("swapped", [False, True])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_filter_transform_is_the_kronecker_power_of_g_in_the_blocked_layout(m, nd, swapped, dtype):
    from fastconv.algorithms._winograd_blocked_kernels import filter_transform
    rng = np.random.default_rng(m)
    w = rng.standard_normal((40, 20) + (3,) * nd).astype(dtype)  # (O, C) of the computed layer, or (C, O) swapped
    outputs, channels = (20, 40) if swapped else (40, 20)
    obw = 2 * 64 // np.dtype(dtype).itemsize
    blocks_out, blocks_in, points = -(-outputs // obw), -(-channels // 16), (m + 2) ** nd
    u = np.full((points, blocks_out, blocks_in, 16, obw), np.nan, dtype=dtype)
    u[:, :, -1, channels % 16 or 16:] = 0
    filter_transform(w, swapped, np.ascontiguousarray(wt.matrices(m)[1].astype(dtype)), u, 0, blocks_in)
    f = np.swapaxes(w, 0, 1) if swapped else w  # (O, C, 3, ...)
    kron = wt.kron_power(m, 1, nd)  # (points, taps)
    expected = np.einsum("pt,oct->pco", kron, f.reshape(outputs, channels, -1).astype(np.float64))
    got = np.moveaxis(u, 1, 3).reshape(points, blocks_in * 16, blocks_out * obw)
    np.testing.assert_allclose(got[:, :channels, :outputs], expected, rtol=1e-5 if dtype == "float32" else 1e-12,
                               atol=1e-5 * np.abs(expected).max())
    assert not got[:, :, outputs:].any(), "outputs beyond the layer's must be zero"


@pytest.mark.parametrize("alg", BLOCKED, ids=lambda a: a.name)
@pytest.mark.parametrize("size, channels", [((13, 14), 16), ((13, 14), 64), ((13, 14), 256), ((7, 6, 8), 24),
                                            ((7, 6, 8), 96)])
@pytest.mark.parametrize("data", ["normal", "relu"])
def test_float32_error_within_winograds_bound(alg, size, channels, data):
    rng = np.random.default_rng(channels)
    x = rng.standard_normal((2, channels, *size))
    x = np.maximum(x, 0) if data == "relu" else x
    w = rng.standard_normal((24, channels) + (3,) * len(size))
    geom = _geometry(x.shape, w.shape, 1)
    truth = REFERENCE.forward(x, w, geom)
    ours = alg.forward(x.astype(np.float32), w.astype(np.float32), geom)
    assert ours.dtype == np.float32
    error = np.linalg.norm(ours - truth) / np.linalg.norm(truth)
    assert error <= alg._winograd.error_bound(geom, np.dtype("float32")), f"{alg.name}: {error:.2e}"


@pytest.mark.parametrize("xs, ws, tiles", [((4, 64, 56, 56), (64, 64, 3, 3), (1, 14, 14)),
                                           ((1, 32, 64, 64, 64), (32, 32, 3, 3, 3), (16, 16, 16))])
def test_chunks_cover_every_tile_row_once_and_feed_the_workers(xs, ws, tiles):
    geom = _geometry(xs, ws, 1)
    plan = winograd_blocked._plan(geom, 4, 4, 2)
    rows = np.zeros((xs[0], tiles[0], tiles[1]), dtype=int)
    for n, z, r0, r1, c0, c1 in plan.chunks:
        assert (c0, c1) == (0, tiles[2])
        rows[n, z, r0:r1] += 1
    assert (rows == 1).all() and len(plan.chunks) >= 2 * 4
    most = max(r1 - r0 for _, _, r0, r1, _, _ in plan.chunks) * tiles[2]
    assert plan.points * most * (xs[1] + ws[0]) * 4 <= winograd_blocked._CHUNK_BYTES


@pytest.mark.parametrize("m", wt.TILE_SIZES)
def test_a_chunk_writes_its_own_outputs_only(m):
    """Each chunk of a long signal writes exactly its own output columns (its last vector of
    columns must not spill into the next chunk's, which another worker may have written)."""
    from fastconv.algorithms._winograd_blocked_kernels import CHUNK, filter_transform
    geom = _geometry((1, 16, 203), (16, 16, 3), 1)
    plan = winograd_blocked._plan(geom, 4, m, 3)
    assert len(plan.chunks) > 2
    rng = np.random.default_rng(5)
    x = rng.standard_normal(geom.input_shape).astype(np.float32)
    w = rng.standard_normal(geom.weight_shape).astype(np.float32)
    u = np.zeros((plan.points, plan.blocks_out, plan.blocks_in, 16, plan.obw), dtype=np.float32)
    filter_transform(w, False, np.ascontiguousarray(wt.matrices(m)[1], dtype=np.float32), u, 0, plan.blocks_in)
    expected = REFERENCE.forward(x.astype(np.float64), w.astype(np.float64), geom)
    for chunk in plan.chunks:
        y = np.full(geom.output_shape, np.nan, dtype=np.float32)
        buffers = plan.buffers(chunk[3] - chunk[2], chunk[5] - chunk[4])
        scratch = [np.empty(size, dtype=np.float32) for _, size in buffers]
        CHUNK[m, 1](x.reshape(-1), plan.x_shape, plan.lo, plan.sizes, *chunk, u, y.reshape(-1), *scratch,
                    np.empty(plan.blocks_in, dtype=np.int64))
        own = slice(chunk[4] * m, min(chunk[5] * m, geom.out_size[0]))
        assert not np.isnan(y[..., own]).any() and np.isnan(np.delete(y, np.r_[own], axis=-1)).all()
        np.testing.assert_allclose(y[..., own], expected[..., own], rtol=1e-4, atol=1e-4 * np.abs(expected).max())


@pytest.mark.parametrize("call, expected", [
    (("conv2d", (4, 64, 56, 56), (64, 64, 3, 3)), "winograd4_blocked"),
    (("conv2d_input", (4, 64, 56, 56), (64, 64, 3, 3)), "winograd4_blocked"),
    (("conv2d", (4, 256, 14, 14), (256, 256, 3, 3)), "winograd2_blocked"),
    (("conv3d", (2, 64, 16, 56, 56), (128, 64, 3, 3, 3)), "winograd4_blocked"),
    (("conv3d", (1, 32, 64, 64, 64), (32, 32, 3, 3, 3)), "winograd4_blocked"),
])
def test_planner_picks_it_for_the_suites_3x3_layers(call, expected):
    plan = fastconv.plan_for(*call, padding=1)
    assert plan.choice.algorithm == expected and plan.choice.route == "native", plan.explain()


@pytest.mark.parametrize("xs, ws, kwargs, dtype, op, reason", [
    ((1, 32, 9, 9), (32, 16, 3, 3), {"groups": 2}, "float32", "forward", "groups=2"),
    ((1, 32, 9, 9), (32, 32, 3, 3), {}, "complex64", "forward", "complex"),
    ((1, 8, 9, 9), (32, 8, 3, 3), {}, "float32", "forward", "8 input channels < 16"),
    ((1, 32, 9, 9), (8, 32, 3, 3), {}, "float32", "input_grad", "8 input channels < 16"),
    ((1, 32, 9, 9), (32, 32, 3, 3), {}, "float32", "weight_grad", "no weight gradient"),
    ((1, 32, 9, 9), (32, 32, 3, 3), {"stride": 2}, "float32", "forward", "stride (2, 2) is not 1"),
    ((1, 32, 9, 9), (32, 32, 5, 5), {}, "float32", "forward", "kernel (5, 5) is not 3"),
])
def test_declines_with_reason(xs, ws, kwargs, dtype, op, reason):
    geom = ConvGeometry.for_conv(xs, ws, kwargs.get("stride", 1), 1, 1, kwargs.get("groups", 1), CallContext("test"))
    for alg in BLOCKED:
        why = alg.supports(geom, np.dtype(dtype), op)
        assert why is not None and why.startswith(f"{alg.name}: ") and reason in why, why
