"""Array plumbing shared by algorithms: padding (and its adjoint), grouped views, 3-D spatial
views for the compiled kernels, and tiles that keep scratch memory within the workspace."""

from __future__ import annotations

import functools
import math
from collections.abc import Iterator
from typing import NamedTuple

import numpy as np

from .. import _workspace
from .._geometry import ConvGeometry


def pad_input(x: np.ndarray, geom: ConvGeometry) -> np.ndarray:
    """x zero-padded by ``geom.padding``; negative padding crops. Returns x itself when there is none."""
    if all(p == (0, 0) for p in geom.padding):
        return x
    widths = [(0, 0), (0, 0)] + [(max(lo, 0), max(hi, 0)) for lo, hi in geom.padding]
    padded = np.pad(x, widths) if any(w != (0, 0) for w in widths) else x
    crop = (slice(None), slice(None)) + tuple(
        slice(max(-lo, 0), padded.shape[2 + i] - max(-hi, 0)) for i, (lo, hi) in enumerate(geom.padding)
    )
    return padded[crop]


def unpad_input(x_padded: np.ndarray, geom: ConvGeometry) -> np.ndarray:
    """Adjoint of :func:`pad_input`: the padded-gradient's interior (cropped inputs get zero)."""
    if all(p == (0, 0) for p in geom.padding):
        return x_padded
    widths = [(0, 0), (0, 0)] + [(max(-lo, 0), max(-hi, 0)) for lo, hi in geom.padding]
    grown = np.pad(x_padded, widths) if any(w != (0, 0) for w in widths) else x_padded
    crop = (slice(None), slice(None)) + tuple(
        slice(max(lo, 0), grown.shape[2 + i] - max(hi, 0)) for i, (lo, hi) in enumerate(geom.padding)
    )
    return grown[crop]


def grouped(a: np.ndarray, groups: int) -> np.ndarray:
    """(N, C, ...) -> (N, groups, C/groups, ...) view."""
    return a.reshape(a.shape[0], groups, a.shape[1] // groups, *a.shape[2:])


class Spatial3d(NamedTuple):
    """A geometry's spatial parameters as 3-D ones (leading dimensions of size 1), for kernels
    compiled once for every rank up to 3."""

    in_size: tuple[int, int, int]
    kernel: tuple[int, int, int]
    stride: tuple[int, int, int]
    dilation: tuple[int, int, int]
    lo: tuple[int, int, int]  # low-side padding; negative crops
    out_size: tuple[int, int, int]


@functools.lru_cache(maxsize=512)
def spatial3d(geom: ConvGeometry) -> Spatial3d:
    """The spatial parameters of ``geom`` (1 to 3 spatial dimensions) as three: (D, H, W),
    (H, 1, W) or (1, 1, W). The first geometry dimension stays first, so slabs of input
    planes along axis 0 serve tiles of output lines in 2-D and 3-D alike. Remembered per
    geometry: calls ask for it several times (~5 us each)."""
    if not 1 <= geom.nd <= 3:
        raise ValueError(f"spatial3d: {geom.nd} spatial dimensions; 1 to 3 are supported")

    def grow(values, fill):
        v = tuple(values)
        return (fill, fill, *v) if geom.nd == 1 else (v[0], fill, v[1]) if geom.nd == 2 else v

    return Spatial3d(grow(geom.in_size, 1), grow(geom.kernel, 1), grow(geom.stride, 1), grow(geom.dilation, 1),
                     grow((lo for lo, _ in geom.padding), 0), grow(geom.out_size, 1))


def as5d(a: np.ndarray, size3: tuple[int, int, int]) -> np.ndarray:
    """(N, C, *spatial) -> C-contiguous (N, C, D, H, W); a view unless ``a`` is non-contiguous."""
    return np.ascontiguousarray(a).reshape(a.shape[0], a.shape[1], *size3)


class Tile(NamedTuple):
    """Samples ``n0 .. n0+nt`` and, within each, flattened output positions ``l0 .. l0+lt``."""

    n0: int
    nt: int
    l0: int
    lt: int


def position_tiles(batch: int, positions: int, bytes_per_position: int, budget: int,
                   min_tiles: int = 1) -> Iterator[Tile]:
    """Tiles whose scratch (bytes_per_position per output position) stays within budget, at least
    ``min_tiles`` of them where there are enough positions: several whole samples when one fits,
    else balanced slices of one sample's positions."""
    per_tile = max(1, min(budget // max(bytes_per_position, 1), -(-batch * positions // min_tiles)))
    if positions <= per_tile:
        step = per_tile // positions
        for n0 in range(0, batch, step):
            yield Tile(n0, min(step, batch - n0), 0, positions)
        return
    count = math.ceil(positions / per_tile)
    size = math.ceil(positions / count)
    for n in range(batch):
        for l0 in range(0, positions, size):
            yield Tile(n, 1, l0, min(size, positions - l0))


def input_planes(geom: ConvGeometry, s3: Spatial3d, l0: int, lt: int) -> tuple[int, int]:
    """Input planes ``[start, stop)`` along axis 0 of the 3-D view that the output positions
    ``l0 .. l0+lt`` read, clipped to the input (the halo of a tile)."""
    if geom.nd == 1:
        return 0, 1
    per_plane = s3.out_size[1] * s3.out_size[2]
    start, stop = geom.input_span(0, l0 // per_plane, (l0 + lt - 1) // per_plane + 1)
    start, stop = max(start, 0), min(stop, s3.in_size[0])
    return start, max(start, stop)


class Scratch:
    """Scratch arrays reused across the tiles of one call: one buffer per role, grown on demand,
    taken from the buffers kept between calls (``_workspace``) and given back by :meth:`release`
    (``with Scratch(dtype) as scratch:``). Accumulators are the caller's to keep."""

    def __init__(self, dtype) -> None:
        self.dtype = np.dtype(dtype)
        self._buffers: dict[str, np.ndarray] = {}
        self._accumulators: dict[str, np.ndarray] = {}

    def get(self, role: str, shape: tuple[int, ...]) -> np.ndarray:
        """An uninitialised C-contiguous array of ``shape``, reusing the role's buffer."""
        nbytes = math.prod(shape) * self.dtype.itemsize
        buffer = self._buffers.get(role)
        if buffer is None or buffer.nbytes < nbytes:
            if buffer is not None:
                _workspace.give_back(buffer)
            buffer = self._buffers[role] = _workspace.take(nbytes)
        return buffer[:nbytes].view(self.dtype).reshape(shape)

    def accumulator(self, role: str, shape: tuple[int, ...]) -> np.ndarray:
        """The role's array of ``shape``, zero when first asked for, then kept as it is (also after
        :meth:`release`)."""
        if role not in self._accumulators:
            self._accumulators[role] = np.zeros(math.prod(shape), dtype=self.dtype)
        return self._accumulators[role].reshape(shape)

    def release(self) -> None:
        """Give the buffers of :meth:`get` back for later calls; arrays obtained from them must no longer be used."""
        for buffer in self._buffers.values():
            _workspace.give_back(buffer)
        self._buffers.clear()

    def __enter__(self) -> Scratch:
        return self

    def __exit__(self, *exc) -> None:
        self.release()
