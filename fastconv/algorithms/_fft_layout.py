"""Where the FFT algorithm puts things: stride phases, tiles and transform lengths.

Pure integer bookkeeping derived from a :class:`~fastconv._geometry.ConvGeometry`, with no
arrays, so the planner can cost a geometry without touching data.

Per spatial axis, output ``p`` reads input ``i = s*p + d*t - lo`` for each tap ``t``.
Writing ``d*t - lo = s*v_t + r_t`` (``0 <= r_t < s``) splits the strided convolution into
stride-1 correlations of the input's *phases* ``x_r[m] = x[s*m + r]`` with the taps of
that phase at offsets ``v_t``: the polyphase form, which computes exactly the outputs
needed (no stride-1 result to subsample) and places dilated taps at their offsets
(no zero-inserted kernel is ever built; dilation only lengthens the span).

Output tile ``[p0, p0 + block)`` then reads phase indices ``[p0 + vmin, p0 + vmin + length)``
with ``length = block + span``, ``span = vmax - vmin``: a circular correlation of that
length, with tap ``t`` placed at ``(vmin - v_t) mod length``, is exact on the tile
(overlap-save). One tile per axis when the whole output fits the transform.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np

from .._geometry import ConvGeometry
from . import _fft_backend


@dataclass(frozen=True)
class AxisLayout:
    """Phases and tiles of one spatial axis."""

    size: int  #: input length
    stride: int
    phases: tuple[int, ...]  #: input phases (i mod stride) some tap reads, ascending
    tap_phase: tuple[int, ...]  #: per tap: index into ``phases``
    tap_offset: tuple[int, ...]  #: per tap: v_t - vmin, in [0, span]
    vmin: int  #: phase index output 0 reads first (negative inside the low padding)
    span: int  #: vmax - vmin
    out: int  #: output length
    length: int  #: transform length of one tile

    @property
    def block(self) -> int:
        """Outputs per tile."""
        return self.length - self.span

    @property
    def tiles(self) -> int:
        return -(-self.out // self.block)

    def kernel_positions(self) -> np.ndarray:
        """Per tap, its index in the circular kernel of one tile."""
        return (-np.asarray(self.tap_offset)) % self.length

    def window(self, first: int, stop: int) -> tuple[int, int]:
        """Phase indices ``[start, start + count)`` that tiles ``[first, stop)`` read."""
        return self.vmin + first * self.block, (stop - first - 1) * self.block + self.length

    def phase_copy(self, phase: int, start: int, count: int) -> tuple[slice, slice] | None:
        """(input slice, buffer slice) copying phase ``phase``'s indices ``[start, start + count)``
        into a window buffer; None when that window holds no input of this phase."""
        available = len(range(phase, self.size, self.stride))
        lo, hi = max(start, 0), min(start + count, available)
        if lo >= hi:
            return None
        s = self.stride
        return slice(phase + s * lo, phase + s * (hi - 1) + 1, s), slice(lo - start, hi - start)


def axis_geometry(geom: ConvGeometry, axis: int) -> tuple[tuple[int, ...], tuple[int, ...], int, int]:
    """(tap phase values, tap v_t, vmin, span) of one axis, before a length is chosen."""
    s, d, lo = geom.stride[axis], geom.dilation[axis], geom.padding[axis][0]
    q = [d * t - lo for t in range(geom.kernel[axis])]
    v = [qt // s for qt in q]
    return tuple(qt % s for qt in q), tuple(v), min(v), max(v) - min(v)


def _axis(geom: ConvGeometry, axis: int, length: int) -> AxisLayout:
    rho, v, vmin, span = axis_geometry(geom, axis)
    phases = tuple(sorted(set(rho)))
    return AxisLayout(geom.in_size[axis], geom.stride[axis], phases, tuple(phases.index(r) for r in rho),
                      tuple(vt - vmin for vt in v), vmin, span, geom.out_size[axis], length)


@dataclass(frozen=True)
class Layout:
    """Phases and tiles of every axis, plus the chunking of (batch x tiles) into blocks."""

    geom: ConvGeometry
    complex_: bool
    axes: tuple[AxisLayout, ...]
    chunk: tuple[int, ...]  #: block size along (batch, tiles of axis 0, tiles of axis 1, ...)
    itemsize: int  #: bytes of one real scalar

    @property
    def lengths(self) -> tuple[int, ...]:
        return tuple(a.length for a in self.axes)

    @property
    def phase_count(self) -> int:
        return math.prod(len(a.phases) for a in self.axes)

    @property
    def tile_count(self) -> int:
        return math.prod(a.tiles for a in self.axes)

    @property
    def frequencies(self) -> int:
        return _frequencies(self.lengths, self.complex_)

    def blocks(self):
        """Per block: (batch slice, per-axis (first, stop) tile ranges)."""
        import itertools
        sizes = (self.geom.batch, *(a.tiles for a in self.axes))
        ranges = [[(b, min(b + c, n)) for b in range(0, n, c)] for n, c in zip(sizes, self.chunk)]
        for (b0, b1), *tiles in itertools.product(*ranges):
            yield slice(b0, b1), tuple(tiles)


def _frequencies(lengths, complex_: bool) -> int:
    """Spectrum points of one tile: the last axis keeps its half spectrum for real data."""
    return math.prod(lengths) if complex_ else math.prod(lengths[:-1]) * (lengths[-1] // 2 + 1)


def _bytes(geom: ConvGeometry, lengths, phases: int, complex_: bool, itemsize: int) -> tuple[int, int]:
    """(fixed bytes: kernel in space and frequency, bytes per sample-tile): the workspace estimate."""
    vol, freq = math.prod(lengths), _frequencies(lengths, complex_)
    real = itemsize * (2 if complex_ else 1)
    cplx = 2 * itemsize
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


def transform_seconds(geom: ConvGeometry, lengths, phases: int, tiles: int, complex_: bool) -> float:
    """Estimated seconds of the whole call with these transform lengths (see ``_cost_model``)."""
    from .. import _cost_model as cm
    vol, freq = math.prod(lengths), _frequencies(lengths, complex_)
    per_transform = vol * math.log2(max(vol, 2)) * cm.FFT_SECONDS_PER_POINT_LOG2 * (1.0 if complex_ else 0.5)
    transforms = (geom.batch * tiles * (geom.in_channels * phases + geom.out_channels)
                  + geom.out_channels * geom.in_per_group * phases)
    cin = geom.in_per_group * phases
    products = geom.batch * tiles * geom.out_channels * cin * freq
    moved = geom.batch * tiles * (geom.in_channels * phases * vol + 2 * geom.out_channels * freq * 2)
    return (transforms * per_transform + products * cm.FFT_SECONDS_PER_COMPLEX_MAC
            + moved * cm.FFT_SECONDS_PER_ELEMENT_MOVED)


def _candidates(out: int, span: int, good_length) -> list[int]:
    """Transform lengths worth trying on one axis: one tile, and tiles of decreasing size."""
    found = {good_length(out + span)}
    tiles = 2
    while True:
        block = -(-out // tiles)
        length = good_length(block + span)
        if length - span < 1 or block < max(span // 2, 1):
            break
        found.add(length)
        tiles = tiles + 1 if tiles < 4 else tiles * 3 // 2
    return sorted(found)


@functools.lru_cache(maxsize=1024)
def layout(geom: ConvGeometry, dtype: np.dtype, budget: int) -> Layout | str:
    """The cheapest tiling whose workspace fits ``budget`` bytes, or the reason none does."""
    import itertools
    complex_ = np.dtype(dtype).kind == "c"
    itemsize = np.dtype(dtype).itemsize // (2 if complex_ else 1)
    per_axis = [axis_geometry(geom, a) for a in range(geom.nd)]
    phases = math.prod(len(set(rho)) for rho, *_ in per_axis)
    good = functools.partial(_fft_backend.next_fast_len, real=not complex_)
    best = None
    for lengths in itertools.product(*(_candidates(o, span, good) for o, (*_, span) in zip(geom.out_size, per_axis))):
        fixed, per_tile = _bytes(geom, lengths, phases, complex_, itemsize)
        if fixed + per_tile > budget:
            continue
        tiles = math.prod(-(-o // (n - span)) for o, n, (*_, span) in zip(geom.out_size, lengths, per_axis))
        seconds = transform_seconds(geom, lengths, phases, tiles, complex_)
        if best is None or seconds < best[0]:
            best = (seconds, lengths, fixed, per_tile)
    if best is None:
        smallest = sum(_bytes(geom, [good(span + 1) for *_, span in per_axis], phases, complex_, itemsize))
        return (f"fft: the kernel spectra and one tile need {smallest / 2**20:.1f} MiB, over the "
                f"workspace budget of {budget / 2**20:.1f} MiB (fastconv.set_workspace_limit)")
    _, lengths, fixed, per_tile = best
    axes = tuple(_axis(geom, a, n) for a, n in enumerate(lengths))
    chunk = _chunk((geom.batch, *(a.tiles for a in axes)), (budget - fixed) // per_tile)
    return Layout(geom, complex_, axes, chunk, itemsize)
