"""FFT convolution: transforms of input tiles and kernel, a product per frequency, one inverse.

For large kernels. Any number of spatial dimensions, stride, dilation, padding (also
asymmetric and negative, as the adjoint geometries use), groups, and all four compute
dtypes (complex data uses the full complex transform, real data the half spectrum).
The layout (``_fft_layout``) keeps it exact and lean:

* stride ``s`` splits input and kernel into ``s`` phases per axis (polyphase), so only
  the outputs kept are computed; the phases add up like extra input channels;
* dilation places taps at their offsets in the circular kernel; nothing zero-stuffed is
  multiplied in the spatial domain, only the transform grows with the span;
* padding is placement: the input is copied at its offset into a zeroed buffer (a single
  tile is rotated to the frame's start instead, so the padding is never stored);
* long outputs are cut into tiles (overlap-save), sized by the cost model, so one call's
  scratch memory stays within ``fastconv.set_workspace_limit``.

Each axis is transformed either by the FFT library (``scipy.fft`` with ``workers``, else
``numpy.fft``) or, when short, by the DFT as a BLAS matrix product that skips the zero
samples and the discarded outputs (``_fft_backend``). Per frequency, the products
contract the channels of a group: a complex matmul ``(batch*tiles, in_channels/groups *
phases) @ (., out_channels/groups)``, or a broadcast product for depthwise layers.
Gradients use the planner's "via forward" route on the adjoint geometries (a weight
gradient's kernel is the output; the inverse transform, cropping before each next axis,
makes its small result cheap).

Accuracy: float32 relative L2 error vs float64 (Gaussian data) measured 2.0e-7 to 3.1e-7
(3.4 to 5.2 units of roundoff) on replknet.dw31x31, m5.stem80s4, same.5x5c32-like layers,
a 3001-tap 1-D kernel, 101x101 and 9x9x9 kernels and a weight-gradient geometry; im2col
+ sgemm measures 1.6e-7 to 3.9e-7 on the same. :func:`relative_error_bound` (3x or more
above these) is what ``supports`` compares with ``fastconv.set_accuracy``'s budget.

Speed (both single-threaded, CPU time, medians, one process): replknet.dw31x31 forward
21x faster than torch 2.13, its weight gradient 16x, its input gradient on par (torch's
transposed depthwise path is fast); dense 5x5 and 1-D 80-tap stride-4 layers are slower
than im2col + sgemm, and the cost model says so.
"""

from __future__ import annotations

import itertools
import math
from typing import TYPE_CHECKING

import numpy as np

from .. import _config
from ._base import Algorithm

if TYPE_CHECKING:  # the layout and transform modules load on first use: `import fastconv` stays lean
    from ._fft_layout import Layout


def _layout(geom, dtype, budget) -> Layout | str:
    """``_fft_layout.layout``, imported on first use."""
    from ._fft_layout import layout
    return layout(geom, dtype, budget)


class FFT(Algorithm):
    name = "fft"
    compiled = False  # NumPy (and SciPy) only
    native_ops = ("forward",)

    def supports(self, geom, dtype, op):
        if op != "forward":
            return "fft: runs forward only; gradients use it via the adjoint geometry"
        found = _layout(geom, np.dtype(dtype), _config.workspace_bytes)
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
        found = _layout(geom, np.dtype(dtype), _config.workspace_bytes)
        return math.inf if isinstance(found, str) else found.seconds

    def forward(self, x, w, geom):
        found = _layout(geom, x.dtype, _config.workspace_bytes)
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

    Rounding in the transforms grows with log2 of their size (about sqrt of the samples for
    a DFT matrix, which is used on short axes only); the per-frequency sum over channels
    and phases adds the usual summation error. Constants in ``_cost_model``.
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
    from . import _fft_backend
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
    from . import _fft_backend
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
