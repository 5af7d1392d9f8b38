"""FFT convolution: transforms of input tiles and kernel, a product per frequency, one inverse.

For large kernels. Any number of spatial dimensions, stride, dilation, padding (also
asymmetric and negative, as the adjoint geometries use), groups, and all four compute
dtypes (complex data uses the full complex transform, real data the half spectrum).
The tiling (see ``_fft_layout``) makes it exact:

* stride ``s`` splits input and kernel into ``s`` phases per axis (polyphase), so only
  the outputs kept are computed: the phases add up as extra input channels;
* dilation places taps at their offsets in the circular kernel; nothing zero-stuffed is
  ever multiplied in the spatial domain, only the transform grows with the span;
* padding is a shift: the input is copied at its offset into zeroed tile buffers;
* long outputs are cut into tiles (overlap-save) with lengths the FFT library likes, so
  one call's scratch memory stays within ``fastconv.set_workspace_limit``.

Per frequency, the products contract the channels of a group: one small complex matmul
``(batch*tiles, in_channels/groups * phases) @ (., out_channels/groups)``, or a plain
broadcast product for depthwise layers. The inverse transform runs one axis at a time and
crops before the next axis, so a small output (a weight gradient) costs little to invert.
Gradients use the planner's "via forward" route: a weight gradient's kernel is the output
size, which FFT handles well when that is large.

Accuracy (float32 relative L2 error vs float64, Gaussian data; ``fastconv fft-accuracy``
style measurement in tests/test_fft.py): about 1e-7 to 4e-7 on the layers of the
benchmark suite, comparable to direct summation; the bound ``relative_error_bound``
grows with log2 of the transform volume and the contraction length, and ``supports``
declines when it exceeds ``fastconv.set_accuracy``'s budget.
"""

from __future__ import annotations

import itertools
import math

import numpy as np

from .. import _config
from .._geometry import ConvGeometry
from . import _fft_backend
from ._base import Algorithm
from ._fft_layout import Layout, layout


class FFT(Algorithm):
    name = "fft"
    native_ops = ("forward",)

    def supports(self, geom, dtype, op):
        if op != "forward":
            return "fft: runs forward only; gradients use it via the adjoint geometry"
        found = layout(geom, np.dtype(dtype), _config.workspace_bytes)
        if isinstance(found, str):
            return found
        bound = relative_error_bound(found, dtype)
        if bound > _config.max_relative_error:
            lengths = "x".join(map(str, found.lengths))
            return (f"fft: estimated relative error {bound:.2g} (transform {lengths}, "
                    f"{geom.in_per_group * found.phase_count} products per frequency) exceeds "
                    f"max_relative_error={_config.max_relative_error:.2g} (fastconv.set_accuracy)")
        return None

    def cost(self, geom, dtype, op):
        return layout(geom, np.dtype(dtype), _config.workspace_bytes).seconds

    def forward(self, x, w, geom):
        found = layout(geom, x.dtype, _config.workspace_bytes)
        if isinstance(found, str):
            raise ValueError(f"{found}; input {x.shape}, weight {w.shape}")
        spectra = _kernel_spectra(w, found)
        y = np.empty(geom.output_shape, dtype=x.dtype)
        for batch, tiles in found.blocks():
            out = tuple(slice(first * a.block, min(stop * a.block, a.out))
                        for a, (first, stop) in zip(found.axes, tiles))
            block = _block(x[batch], spectra, found, tiles)
            y[(batch, slice(None), *out)] = block[(Ellipsis, *(slice(0, s.stop - s.start) for s in out))]
        return y


def relative_error_bound(found: Layout, dtype) -> float:
    """Estimated relative L2 error of the result vs exact arithmetic, in this dtype.

    Rounding in a radix-2/3/5 transform grows with log2 of its size; three transforms are
    chained (input, kernel, inverse) and the per-frequency sum adds the usual summation
    error. Constants from the measurements in tests/test_fft.py, with a 3x margin.
    """
    from .._cost_model import FFT_ERROR_PER_LOG2_POINT, FFT_ERROR_PER_SQRT_TERM
    unit = np.finfo(np.dtype(dtype)).eps / 2
    terms = found.geom.in_per_group * found.phase_count
    return unit * (FFT_ERROR_PER_LOG2_POINT * math.log2(max(math.prod(found.lengths), 2))
                   + FFT_ERROR_PER_SQRT_TERM * math.sqrt(terms))


def _kernel_spectra(w: np.ndarray, found: Layout) -> np.ndarray:
    """Transforms of the circular kernels, laid out for the products of :func:`_block`:
    (G, Og, *F) for one input channel-phase per group, else (G, F, Cg*phases, Og)."""
    geom, nd = found.geom, found.geom.nd
    phases = [len(a.phases) for a in found.axes]
    # Axes transformed by matrix store only the positions holding taps; FFT axes the whole frame.
    rows = [np.unique(a.kernel_positions()) if a.methods[1] == "matrix" else None for a in found.axes]
    extent = [a.length if r is None else len(r) for a, r in zip(found.axes, rows)]
    kernel = np.zeros((geom.out_channels, geom.in_per_group, *phases, *extent), dtype=w.dtype)
    phase_index, position = [], []
    for a, (axis, r) in enumerate(zip(found.axes, rows)):
        shape = [1] * nd
        shape[a] = -1
        where = axis.kernel_positions()
        phase_index.append(np.asarray(axis.tap_phase).reshape(shape))
        position.append((where if r is None else np.searchsorted(r, where)).reshape(shape))
    kernel[(slice(None), slice(None), *phase_index, *position)] = w
    spectra = kernel
    for a in reversed(range(nd)):
        axis = found.axes[a]
        spectra = _fft_backend.forward_axis(spectra, 2 + nd + a, axis.length, axis.methods[1],
                                            not found.complex_ and a == nd - 1, rows[a])
    terms = geom.in_per_group * found.phase_count
    if terms == 1:
        return spectra.reshape(geom.groups, geom.out_per_group, *spectra.shape[2 + nd:])
    spectra = spectra.reshape(geom.groups, geom.out_per_group, terms, -1)
    return np.ascontiguousarray(spectra.transpose(0, 3, 2, 1))


def _block(x: np.ndarray, spectra: np.ndarray, found: Layout, tile_ranges) -> np.ndarray:
    """Outputs of the tiles ``tile_ranges`` for the samples of ``x``: (n, O, *tiles*block)."""
    geom, nd, n = found.geom, found.geom.nd, x.shape[0]
    windows = [a.window(first, stop) for a, (first, stop) in zip(found.axes, tile_ranges)]
    stored = [a.stored(first, stop) for a, (first, stop) in zip(found.axes, tile_ranges)]
    phases = [len(a.phases) for a in found.axes]
    # Zeroed buffer holding each phase of the input at its offset: padding by placement.
    buf = np.zeros((n, geom.in_channels, *phases, *stored), dtype=x.dtype)
    for combo in itertools.product(*(enumerate(a.phases) for a in found.axes)):
        copies = [a.phase_copy(phase, *window) for a, (_, phase), window in zip(found.axes, combo, windows)]
        if None not in copies:
            buf[(slice(None), slice(None), *(i for i, _ in combo), *(dst for _, dst in copies))] = (
                x[(Ellipsis, *(src for src, _ in copies))])
    # Overlapping tiles of the buffer as a view: windows of `length`, one every `block`.
    tiles = buf
    for a, axis in enumerate(found.axes):
        dim = 2 + nd + a
        window = axis.length if axis.tiles > 1 else stored[a]
        tiles = np.lib.stride_tricks.sliding_window_view(tiles, window, axis=dim)
        tiles = tiles[(slice(None),) * dim + (slice(None, None, axis.block),)]
    xs = tiles
    for a in reversed(range(nd)):  # the real-to-complex axis goes first
        axis = found.axes[a]
        xs = _fft_backend.forward_axis(xs, 2 + 2 * nd + a, axis.length, axis.methods[0],
                                       not found.complex_ and a == nd - 1)
    tile_shape, freq_shape = xs.shape[2 + nd:2 + 2 * nd], xs.shape[2 + 2 * nd:]
    if geom.in_per_group * found.phase_count == 1:  # depthwise-like: a broadcast product, no sum (in place when 1:1)
        xs = xs[(slice(None), slice(None), None, *(0,) * nd)]  # (n, G, 1, *T, *F), any strides
        ys = np.multiply(xs, spectra[(slice(None), slice(None), *(None,) * nd)],
                         out=xs if geom.out_per_group == 1 else None)
    else:  # per frequency and group: (n*tiles, Cg*phases) @ (Cg*phases, Og)
        t, f = math.prod(tile_shape), math.prod(freq_shape)
        xm = xs.reshape(n, geom.groups, -1, t, f).transpose(1, 4, 0, 3, 2).reshape(geom.groups, f, n * t, -1)
        ys = np.matmul(xm, spectra).reshape(geom.groups, f, n, t, -1).transpose(2, 0, 4, 3, 1)
    out = ys.reshape(n, geom.out_channels, *tile_shape, *freq_shape)
    for a, axis in enumerate(found.axes):  # the complex-to-real axis goes last
        out = _fft_backend.inverse_axis(out, 2 + nd + a, axis.length, axis.block, axis.methods[2],
                                        not found.complex_ and a == nd - 1)
    # (n, O, T1.., B1..) -> (n, O, T1*B1, ...)
    order = [0, 1] + [i for a in range(nd) for i in (2 + a, 2 + nd + a)]
    return out.transpose(order).reshape(n, geom.out_channels, *(t * a.block for t, a in zip(tile_shape, found.axes)))
