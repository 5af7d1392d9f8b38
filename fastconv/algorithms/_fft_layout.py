"""Where the FFT algorithm puts things: stride phases, tiles, transform lengths and methods.

Pure integer bookkeeping derived from a :class:`~fastconv._geometry.ConvGeometry`, with no
arrays, so the planner can cost a geometry without touching data.

Per spatial axis, output ``p`` reads input ``i = s*p + d*t - lo`` for each tap ``t``.
Writing ``d*t - lo = s*v_t + r_t`` (``0 <= r_t < s``) splits the strided convolution into
stride-1 correlations of the input's *phases* ``x_r[m] = x[s*m + r]`` with the taps of
that phase at offsets ``v_t``: the polyphase form, which computes exactly the outputs
needed (no stride-1 result to subsample) and places dilated taps at their offsets
(no zero-inserted kernel is ever built; dilation only lengthens the span).

Output tile ``[p0, p0 + block)`` reads phase indices ``[p0 + vmin, p0 + vmin + length)``
with ``length = block + span``, ``span = vmax - vmin``: a circular correlation of that
length, with tap ``t`` at ``(shift - (v_t - vmin)) mod length``, is exact on the tile
(overlap-save). An axis cut into one tile rotates its data to the frame's start
(``shift``, folded into the kernel) so the trailing zeros need not be stored.

Each axis is transformed by one of two methods: ``"fft"`` (the FFT library, cost
~ length*log2(length) per line) or ``"matrix"`` (the DFT as a BLAS matrix product, cost
~ samples*frequencies per line but at BLAS speed, and it skips the zero samples and the
discarded outputs). Small axes favour the matrix, long ones the FFT.
"""

from __future__ import annotations

import functools
import itertools
import math
from dataclasses import dataclass, replace

import numpy as np

from .._geometry import ConvGeometry
from . import _fft_backend


@dataclass(frozen=True)
class AxisLayout:
    """Phases, tiles and transform methods of one spatial axis."""

    size: int  #: input length
    stride: int
    phases: tuple[int, ...]  #: input phases (i mod stride) some tap reads, ascending
    tap_phase: tuple[int, ...]  #: per tap: index into ``phases``
    tap_offset: tuple[int, ...]  #: per tap: v_t - vmin, in [0, span]
    vmin: int  #: phase index output 0 reads first (negative inside the low padding)
    span: int  #: vmax - vmin
    out: int  #: output length
    length: int  #: transform length of one tile
    methods: tuple[str, str, str] = ("fft", "fft", "fft")  #: for (input, kernel, inverse)

    @property
    def block(self) -> int:
        """Outputs per tile."""
        return self.length - self.span

    @property
    def tiles(self) -> int:
        return -(-self.out // self.block)

    @property
    def shift(self) -> int:
        """Rotation bringing the first stored sample to the frame's start (one tile only)."""
        return max(0, -self.vmin) if self.tiles == 1 else 0

    def kernel_positions(self) -> np.ndarray:
        """Per tap, its index in the circular kernel of one tile."""
        return (self.shift - np.asarray(self.tap_offset)) % self.length

    def window(self, first: int, stop: int) -> tuple[int, int]:
        """Phase indices ``[start, start + count)`` that tiles ``[first, stop)`` read."""
        return self.vmin + first * self.block, (stop - first - 1) * self.block + self.length

    def stored(self, first: int, stop: int) -> int:
        """Samples per phase the buffer of tiles ``[first, stop)`` stores; a single tile
        keeps only the part that holds input (the transform pads the rest)."""
        start, count = self.window(first, stop)
        if self.tiles > 1:
            return count
        longest = len(range(self.phases[0], self.size, self.stride))
        return max(1, min(start + count, longest) - max(start, 0))

    def phase_copy(self, phase: int, start: int, count: int) -> tuple[slice, slice] | None:
        """(input slice, buffer slice) copying phase ``phase``'s indices ``[start, start + count)``
        into a buffer; None when that window holds no input of this phase."""
        available = len(range(phase, self.size, self.stride))
        lo, hi = max(start, 0), min(start + count, available)
        if lo >= hi:
            return None
        s, shift = self.stride, self.shift
        return slice(phase + s * lo, phase + s * (hi - 1) + 1, s), slice(lo - start - shift, hi - start - shift)


def axis_geometry(geom: ConvGeometry, axis: int) -> tuple[tuple[int, ...], tuple[int, ...], int, int]:
    """(tap phase values, tap v_t, vmin, span) of one axis, before a length is chosen."""
    s, d, lo = geom.stride[axis], geom.dilation[axis], geom.padding[axis][0]
    q = [d * t - lo for t in range(geom.kernel[axis])]
    v = [qt // s for qt in q]
    return tuple(qt % s for qt in q), tuple(v), min(v), max(v) - min(v)


def _axis(geom: ConvGeometry, axis: int) -> AxisLayout:
    """The axis with its phases and taps; the transform length is chosen later (``replace``)."""
    rho, v, vmin, span = axis_geometry(geom, axis)
    phases = tuple(sorted(set(rho)))
    return AxisLayout(geom.in_size[axis], geom.stride[axis], phases, tuple(phases.index(r) for r in rho),
                      tuple(vt - vmin for vt in v), vmin, span, geom.out_size[axis], span + 1)


@dataclass(frozen=True)
class Layout:
    """Phases, tiles and methods of every axis, and the chunking of (batch x tiles) into blocks."""

    geom: ConvGeometry
    complex_: bool
    axes: tuple[AxisLayout, ...]
    chunk: tuple[int, ...]  #: block size along (batch, tiles of axis 0, tiles of axis 1, ...)
    seconds: float  #: estimated run time

    @property
    def lengths(self) -> tuple[int, ...]:
        return tuple(a.length for a in self.axes)

    @property
    def phase_count(self) -> int:
        return math.prod(len(a.phases) for a in self.axes)

    @property
    def tile_count(self) -> int:
        return math.prod(a.tiles for a in self.axes)

    def blocks(self):
        """Per block: (batch slice, per-axis (first, stop) tile ranges)."""
        sizes = (self.geom.batch, *(a.tiles for a in self.axes))
        ranges = [[(b, min(b + c, n)) for b in range(0, n, c)] for n, c in zip(sizes, self.chunk)]
        for (b0, b1), *tiles in itertools.product(*ranges):
            yield slice(b0, b1), tuple(tiles)


def _spectrum(lengths, complex_: bool) -> list[int]:
    """Frequencies kept per axis: real data keeps the half spectrum of the last axis."""
    return [*lengths[:-1], lengths[-1] if complex_ else lengths[-1] // 2 + 1]


def _bytes(geom: ConvGeometry, lengths, phases: int, complex_: bool, itemsize: int) -> tuple[int, int]:
    """(fixed bytes: kernel in space and frequency, bytes per sample-tile): the workspace estimate."""
    vol, freq = math.prod(lengths), math.prod(_spectrum(lengths, complex_))
    real, cplx = itemsize * (2 if complex_ else 1), 2 * itemsize
    cin = geom.in_channels * phases
    fixed = geom.out_channels * geom.in_per_group * phases * (vol * real + 2 * freq * cplx)
    per_tile = freq * cplx * (2 * cin + 3 * geom.out_channels) + vol * real * (cin + 3 * geom.out_channels)
    return fixed, per_tile


def _chunk(sizes: tuple[int, ...], units: int) -> tuple[int, ...]:
    """Block sizes, innermost axis filled first, holding at most ``units`` sample-tiles (>= 1)."""
    chunk = []
    for n in reversed(sizes):
        c = min(n, max(units, 1))
        chunk.append(c)
        units //= c
    return tuple(reversed(chunk))


def _line_seconds(samples: int, length: int, outputs: int, real: bool, fast: bool) -> tuple[float, str]:
    """(seconds, method) of one 1-D transform of ``samples`` stored samples to ``outputs`` kept
    values in a frame of ``length``: the cheaper of the FFT library and the DFT matrix."""
    from .. import _cost_model as cm
    fft = _line_work(samples, length, outputs, real, "fft") * cm.FFT_SECONDS_PER_POINT_LOG2 if fast else math.inf
    matrix = _line_work(samples, length, outputs, real, "matrix") * cm.FFT_SECONDS_PER_DFT_MAC
    return (fft, "fft") if fft < matrix else (matrix, "matrix")


def _line_work(samples: int, length: int, outputs: int, real: bool, method: str) -> float:
    """Work of one 1-D transform: points x log2(length) for the FFT library, complex
    multiply-adds for the matrix; real transforms do half."""
    work = length * math.log2(max(length, 2)) if method == "fft" else samples * outputs
    return work * (0.5 if real else 1.0)


def _samples(axes) -> tuple[list[int], list[int]]:
    """Per axis, the samples one input tile stores and the distinct kernel positions."""
    return ([a.stored(0, 1) if a.tiles == 1 else a.length for a in axes],
            [len(set(a.tap_offset)) for a in axes])  # offsets < length: distinct positions


def work(geom: ConvGeometry, axes, complex_: bool) -> dict[str, float]:
    """The work of one call by kind, in the units of ``_cost_model``'s FFT constants."""
    nd, lengths = geom.nd, [a.length for a in axes]
    freqs = _spectrum(lengths, complex_)
    tiles, phases = math.prod(a.tiles for a in axes), math.prod(len(a.phases) for a in axes)
    stored, taps = _samples(axes)
    kept = [a.block for a in axes]
    in_lines = geom.batch * tiles * geom.in_channels * phases
    kernel_lines = geom.out_channels * geom.in_per_group * phases
    out_lines = geom.batch * tiles * geom.out_channels
    total = {"fft": 0.0, "matrix": 0.0}
    for a, axis in enumerate(axes):
        real = not complex_ and a == nd - 1
        after = math.prod(freqs[a + 1:])  # forward runs last axis first, inverse first axis first
        m_in, m_k, m_out = axis.methods
        total[m_in] += in_lines * math.prod(stored[:a]) * after * _line_work(stored[a], lengths[a], freqs[a], real, m_in)
        total[m_k] += kernel_lines * math.prod(lengths[:a]) * after * _line_work(taps[a], lengths[a], freqs[a], real, m_k)
        total[m_out] += out_lines * math.prod(kept[:a]) * after * _line_work(freqs[a], lengths[a], kept[a], real, m_out)
    freq = math.prod(freqs)
    terms = geom.in_per_group * phases  # 1: an elementwise product, counted with the elements
    total["products"] = geom.batch * tiles * geom.out_channels * terms * freq if terms > 1 else 0
    total["elements"] = (in_lines + out_lines) * freq + in_lines * math.prod(stored)
    return total


def _seconds(total: dict[str, float]) -> float:
    from .. import _cost_model as cm
    return (total["fft"] * cm.FFT_SECONDS_PER_POINT_LOG2 + total["matrix"] * cm.FFT_SECONDS_PER_DFT_MAC
            + total["products"] * cm.FFT_SECONDS_PER_COMPLEX_MAC + total["elements"] * cm.FFT_SECONDS_PER_ELEMENT)


def _plan_axes(geom: ConvGeometry, base: list[AxisLayout], lengths, complex_: bool):
    """(estimated seconds, per-axis layouts with their cheapest methods) for these lengths."""
    axes = [replace(b, length=n) for b, n in zip(base, lengths)]
    freqs = _spectrum(lengths, complex_)
    stored, taps = _samples(axes)
    chosen = []
    for a, axis in enumerate(axes):
        real = not complex_ and a == geom.nd - 1
        fast = _fft_backend.next_fast_len(lengths[a], not complex_) == lengths[a]
        methods = tuple(_line_seconds(samples, lengths[a], outputs, real, fast)[1]
                        for samples, outputs in ((stored[a], freqs[a]), (taps[a], freqs[a]), (freqs[a], axis.block)))
        chosen.append(replace(axis, methods=methods))
    return _seconds(work(geom, chosen, complex_)), tuple(chosen)


def _candidates(out: int, span: int, good_length) -> list[int]:
    """Transform lengths worth trying on one axis: one tile (the exact length, which the
    matrix method likes, and the FFT library's next fast one), and tiles of decreasing size."""
    found = {out + span, good_length(out + span)}
    tiles = 2
    while tiles <= out:
        block = -(-out // tiles)
        if block < max(span // 2, 1):  # tiles shorter than the kernel mostly transform halo
            break
        found.add(good_length(block + span))
        tiles = tiles + 1 if tiles < 4 else tiles * 3 // 2
    return sorted(found)


@functools.lru_cache(maxsize=1024)
def layout(geom: ConvGeometry, dtype: np.dtype, budget: int) -> Layout | str:
    """The cheapest tiling whose workspace fits ``budget`` bytes, or the reason none does.

    Coordinate descent over each axis's candidate lengths (a full search of their product
    takes seconds in 3-D), from the largest lengths, or the smallest when those do not fit.
    """
    complex_ = np.dtype(dtype).kind == "c"
    itemsize = np.dtype(dtype).itemsize // (2 if complex_ else 1)
    base = [_axis(geom, a) for a in range(geom.nd)]
    phases = math.prod(len(a.phases) for a in base)
    good = functools.partial(_fft_backend.next_fast_len, real=not complex_)
    candidates = [_candidates(a.out, a.span, good) for a in base]
    costs: dict[tuple[int, ...], tuple] = {}

    def evaluate(lengths):
        if lengths not in costs:
            fixed, per_tile = _bytes(geom, lengths, phases, complex_, itemsize)
            fits = fixed + per_tile <= budget
            costs[lengths] = (*(_plan_axes(geom, base, lengths, complex_) if fits else (math.inf, None)),
                              fixed, per_tile)
        return costs[lengths][0]

    current = tuple(c[-1] for c in candidates)
    if evaluate(current) == math.inf:
        current = tuple(c[0] for c in candidates)
    for _ in range(3):
        previous = current
        for a, options in enumerate(candidates):
            current = min((current[:a] + (n,) + current[a + 1:] for n in options), key=evaluate)
        if current == previous:
            break
    seconds, axes, fixed, per_tile = costs[current]
    if axes is None:
        smallest = min(f + t for *_, f, t in costs.values())
        return (f"fft: the kernel spectra and one tile need {smallest / 2**20:.3g} MiB, over the "
                f"workspace budget of {budget / 2**20:.3g} MiB (fastconv.set_workspace_limit)")
    chunk = _chunk((geom.batch, *(a.tiles for a in axes)), (budget - fixed) // per_tile)
    return Layout(geom, complex_, axes, chunk, seconds)
