"""Sub-pixel phases on the blocked kernel, stored in place: against torch's conv_transpose in
float64 (strides 2, 4 and 8 along the last axis, padding, output_padding, dilation, kernels that
are and are not multiples of the stride, several output blocks per phase), float32 error, the
boxes and placement writing every output position exactly once, the planner's choice on the
suite's transposed layers, and every reason it declines."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch
from torch_ref import t

import fastconv
from fastconv._errors import CallContext
from fastconv._geometry import ConvGeometry
from fastconv.algorithms import ALGORITHMS, subpixel, subpixel_blocked

SUBPIXEL_BLOCKED = ALGORITHMS["subpixel_blocked"]

# (input shape, weight shape, stride, padding, output_padding, dilation); 16 output channels per
# phase: one float64 block, half a float32 one (float32 runs use 32)
TRANSPOSED = [
    ((2, 32, 6, 5), (32, 16, 4, 4), 2, 1, 0, 1),  # DCGAN: kernel a multiple of the stride
    ((2, 16, 5, 6), (16, 32, 2, 2), 2, 0, 0, 1),  # kernel == stride, two blocks per phase
    ((1, 24, 9), (24, 16, 16), 8, 4, 0, 1),  # HiFi-GAN-like 1-D, stride 8
    ((2, 20, 7, 9), (20, 16, 3, 5), (3, 4), (1, 2), (2, 1), 1),  # uneven strides, output_padding
    ((1, 16, 5, 4), (16, 16, 3, 3), 2, 3, 1, 2),  # dilation and wide padding: boxes cut at both ends
    ((2, 48, 11), (48, 16, 5), 4, 0, 3, 1),  # output_padding 3: positions no phase reaches are zero
    ((1, 32, 1, 1), (32, 16, 1, 1), 2, 0, 0, 1),  # a 1x1 output: three of the four phases have no rows
]


def _call(xs, ws, stride, padding, output_padding, dilation, dtype, rng):
    nd = len(ws) - 2
    x, w = rng.standard_normal(xs).astype(dtype), rng.standard_normal(ws).astype(dtype)
    kw = {"stride": stride, "padding": padding, "output_padding": output_padding, "dilation": dilation}
    ours = getattr(fastconv, f"conv_transpose{nd}d")(x, w, algorithm="subpixel_blocked", **kw)
    expected = getattr(torch.nn.functional, f"conv_transpose{nd}d")(t(x.astype(np.float64)),
                                                                    t(w.astype(np.float64)), **kw).numpy()
    return ours, expected


@pytest.mark.parametrize("case", TRANSPOSED, ids=str)
def test_matches_torch_float64(case, workers):
    ours, expected = _call(*case, np.float64, np.random.default_rng(0))
    assert ours.dtype == np.float64 and ours.shape == expected.shape
    np.testing.assert_allclose(ours, expected, rtol=1e-11, atol=1e-11 * np.abs(expected).max())


def test_float32_error_within_budget():
    xs, ws = (4, 64, 8, 8), (64, 32, 4, 4)
    ours, expected = _call(xs, ws, 2, 1, 0, 1, np.float32, np.random.default_rng(1))
    assert ours.dtype == np.float32
    assert np.linalg.norm(ours - expected) / np.linalg.norm(expected) < 2e-6


@pytest.mark.parametrize("case", TRANSPOSED, ids=str)
@pytest.mark.parametrize("itemsize", [4, 8])
def test_boxes_write_every_output_position_once(case, itemsize):
    """Each output block's box, placed by the kernel's steps and channel offsets, lands inside
    dx, and together the blocks write each position no more than once (those output_padding
    leaves to no phase stay zero); exactly once where the phases cover dx, which is then
    allocated uninitialised."""
    xs, ws, stride, padding, output_padding, dilation = case
    nd = len(ws) - 2
    geom = ConvGeometry.for_conv_transpose(xs, ws, stride, padding, output_padding, dilation, 1, CallContext("test"))
    if SUBPIXEL_BLOCKED.supports(geom, np.dtype(f"f{itemsize}"), "input_grad"):
        pytest.skip("declined at this itemsize (channels per phase not whole blocks)")
    (steps, channel_at), boxes = subpixel_blocked._layout(geom, itemsize)
    per_block = channel_at.size // len(boxes)
    written = np.zeros(int(np.prod(geom.input_shape)), dtype=int)
    for ob, (r0, r1, c0, c1) in enumerate(boxes):
        rows, cols = np.arange(r0, r1)[:, None], np.arange(c0, c1)[None, :]
        for o in range(ob * per_block, (ob + 1) * per_block):
            for n in range(geom.batch):
                at = n * steps[0] + channel_at[o] + rows * steps[1] + cols * steps[2]
                assert at.size == 0 or (at.min() >= 0 and at.max() < written.size)
                np.add.at(written, at.reshape(-1), 1)
    assert written.max() == 1
    # every position some tap reaches is among them
    reached = getattr(torch.nn.functional, f"conv_transpose{nd}d")(
        torch.ones(xs, dtype=torch.float64), torch.ones(ws, dtype=torch.float64), stride=stride, padding=padding,
        output_padding=output_padding, dilation=dilation).numpy().reshape(-1) > 0
    assert (written[reached] == 1).all()
    if subpixel._covers(subpixel._phases(geom)[1]):
        assert (written == 1).all()


def test_planner_picks_it_for_dcgan_and_subpixel_for_strides_8():
    """On the suite's layers: 0.83x subpixel's time on dcgan.up4x4s2; 1.10x on hifigan.up16s8."""
    dcgan = fastconv.plan_for("conv_transpose2d", (16, 256, 16, 16), (256, 128, 4, 4), "float32", stride=2,
                              padding=1)
    hifigan = fastconv.plan_for("conv_transpose1d", (2, 256, 2048), (256, 128, 16), "float32", stride=8, padding=4)
    assert dcgan.choice.algorithm == "subpixel_blocked"
    assert hifigan.choice.algorithm == "subpixel"


@pytest.mark.parametrize("xs, ws, kw, reason", [
    ((1, 16, 3, 3, 3), (16, 32, 2, 2, 2), dict(stride=2), "3 spatial dimensions"),
    ((1, 32, 5, 5), (32, 16, 2, 2), dict(stride=2, groups=2), "groups=2"),
    ((1, 32, 5, 5), (32, 24, 2, 2), dict(stride=2), "24 output channels per phase"),
    ((1, 32, 5, 5), (32, 32, 3, 3), dict(stride=3), "stride 3 along the last axis"),
    ((1, 8, 5, 5), (8, 32, 2, 2), dict(stride=2), "its phase convolution declines"),
])
def test_declines_with_reason(xs, ws, kw, reason):
    nd = len(xs) - 2
    with pytest.raises(ValueError, match=reason):
        getattr(fastconv, f"conv_transpose{nd}d")(np.zeros(xs, np.float32), np.zeros(ws, np.float32),
                                                  algorithm="subpixel_blocked", **kw)


def test_strides_match_the_kernels_and_planning_does_not_load_numba():
    from fastconv.algorithms import _simd
    assert subpixel_blocked.STRIDES == _simd.SPREAD_STEPS
    code = ("import sys, fastconv; fastconv.plan_for('conv_transpose2d', (1, 32, 8, 8), (32, 32, 4, 4), 'float32', "
            "stride=2, padding=1); print('numba' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "False"


def test_forward_is_not_native():
    geom = ConvGeometry.for_conv((1, 32, 8, 8), (32, 32, 3, 3), 1, 1, 1, 1, CallContext("test"))
    assert "only transposed convolution" in SUBPIXEL_BLOCKED.supports(geom, np.dtype("float32"), "forward")
