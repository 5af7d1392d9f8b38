"""Convolution over Dask arrays: chunked, lazy, larger than memory, distributed.

``fastconv.functional``'s convolutions hand a Dask input to this module, which returns a lazy
Dask array equal (within floating-point tolerance) to the NumPy result for every chunking.

How a chunked convolution is cut:

* **Output blocks follow the input chunks.** Along each spatial dimension, output block ``j`` holds
  the outputs whose receptive window *starts* in input chunk ``j`` (forward), or, for transposed
  convolution, the positions from where input chunk ``j``'s first window starts. Both are read off
  :meth:`ConvGeometry.input_span`, never from a second shape formula.
* **Each block reads exactly its window.** The input span of a block (its halo) comes from the
  geometry too; the block's task gathers the slices of every input chunk the span touches, so
  chunks smaller than the halo, uneven chunks and strides or dilations that do not divide the chunk
  size all work. Outside the array the span is zero padding, given to the block's own geometry.
* **Every block is a NumPy fastconv call** on a *window geometry* (the same convolution restricted
  to the block), so the planner picks the fast algorithm per block.
* **Channels are contracted**: an input whose channel axis is split into chunks is rechunked to
  one channel chunk first; the output has one channel chunk. Batch chunks are kept.
* **Weights and bias enter the graph once**, as single-chunk Dask arrays (a Dask weight is rechunked
  to one chunk); every block task refers to that one key.

Non-zero ``padding_mode`` pads the Dask array first (``dask.array.pad``), as torch's modules do.

Neighbouring blocks of a Dask input share its chunks, so while a volume is swept a wavefront of
chunks (a slab as thick as one chunk) stays in memory. :func:`conv_store` convolves an array held in
a store (zarr, h5py, memmap) instead: each block reads its own window, halo included, straight from
the store, so a worker holds a few blocks whatever the volume's size (``fastconv volume`` uses it).
"""

from __future__ import annotations

import bisect
import itertools
import math
import operator

import numpy as np

try:
    import dask.array as da
    from dask.base import tokenize
    from dask.highlevelgraph import HighLevelGraph
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError("fastconv.dask needs dask: pip install 'fastconv[dask]'") from exc

from ._dispatch import run
from ._errors import CallContext
from ._geometry import ConvGeometry
from .functional import _is_dask, _pad_by_mode, check_bias, prepare

__all__ = ["conv_store"]


# ---- entry points ------------------------------------------------------------------------------------
def conv(function, nd, input, weight, bias, stride, padding, dilation, groups, padding_mode, algorithm):
    """``fastconv.functional._conv`` for a Dask ``input``: same arguments, lazy result."""
    x, w, b, ctx, unbatched = _prepare(function, nd, input, weight, bias)
    geom = ConvGeometry.for_conv(x.shape, w.shape, stride, padding, dilation, groups, ctx)
    if padding_mode != "zeros":
        x, geom = _pad_by_mode(x, geom, padding_mode, ctx)  # np.pad dispatches to dask.array.pad
    check_bias(b, geom.out_channels, ctx)
    y = _convolve("forward", geom, _Chunks(x), w, b, function, algorithm)
    return y[0] if unbatched else y


def conv_transpose(function, nd, input, weight, bias, stride, padding, output_padding, groups, dilation,
                   output_size, algorithm):
    """``fastconv.functional._conv_transpose`` for a Dask ``input``: same arguments, lazy result."""
    x, w, b, ctx, unbatched = _prepare(function, nd, input, weight, bias)
    geom = ConvGeometry.for_conv_transpose(x.shape, w.shape, stride, padding, output_padding, dilation, groups,
                                           ctx, output_size=output_size)
    check_bias(b, geom.in_channels, ctx)
    y = _convolve("input_grad", geom, _Chunks(x), w, b, function, algorithm)
    return y[0] if unbatched else y


def conv_store(store, weight, bias=None, stride=1, padding=0, dilation=1, groups: int = 1, *, chunks,
               algorithm: str | None = None) -> "da.Array":
    """N-d convolution of an array in a store, each result block reading its own window from the store.

    Parameters
    ----------
    store : zarr.Array, h5py.Dataset, numpy.memmap, ...
        Anything with ``shape``, ``dtype`` and NumPy basic slicing: ``(N, C, *spatial)``,
        ``(C, *spatial)``, or a bare single-channel volume ``(*spatial)``.
    weight, bias, stride, padding, dilation, groups, algorithm
        As :func:`fastconv.functional.conv`.
    chunks : int or tuple
        Spatial chunks of the result (regular chunks suit ``dask.array.to_zarr``). A block reads
        its window, ``stride`` times its size plus the halo, so larger blocks re-read less.

    Returns
    -------
    dask.array.Array
        ``(N, C_out, *out)``, or ``(C_out, *out)`` for an unbatched or bare input; one batch
        element and all channels per block.

    Notes
    -----
    The store enters the graph once; on a distributed cluster it travels to the workers by pickle:
    a zarr array as a reference to its storage (which the workers must reach), a NumPy array or
    memmap as its data.

    Examples
    --------
    >>> import numpy as np
    >>> from fastconv.dask import conv_store
    >>> volume = np.arange(1000, dtype=np.float32).reshape(10, 10, 10)  # or zarr.open_array(...)
    >>> y = conv_store(volume, np.ones((1, 1, 3, 3, 3), np.float32), padding=1, chunks=4)
    >>> y.chunks[1:], float(y[0, 5, 5, 5].compute())
    (((4, 4, 2), (4, 4, 2), (4, 4, 2)), 14985.0)
    """
    nd = np.ndim(weight) - 2
    lead = len(store.shape) - nd  # 2: batched, 1: unbatched, 0: bare volume
    ctx = CallContext("conv_store").with_shapes(store.shape, np.shape(weight))
    if nd < 1:
        raise ctx.value_error("weight must have at least 3 dimensions (out_channels, in_channels/groups, *kernel)")
    if lead not in (0, 1, 2):
        raise ctx.value_error(f"expected a store of {nd}, {nd + 1} or {nd + 2} dimensions "
                              f"((*spatial), (C, *spatial) or (N, C, *spatial)) for a {nd + 2}-D weight")
    shape = (1,) * (2 - lead) + tuple(store.shape)
    placeholder = np.broadcast_to(np.zeros((), dtype=store.dtype), shape)
    _, w0, b0, ctx, _ = prepare("conv_store", nd, placeholder, weight, bias)
    geom = ConvGeometry.for_conv(shape, w0.shape, stride, padding, dilation, groups, ctx)
    check_bias(b0, geom.out_channels, ctx)
    w, b = _single_chunk(w0), None if b0 is None else _single_chunk(b0)
    out_chunks = da.core.normalize_chunks(chunks, shape=geom.out_size)
    y = _convolve("forward", geom, _Store(store, lead, shape, out_chunks), w, b, "conv_store", algorithm)
    return y if lead == 2 else y[0]


def _placeholder(value):
    """A zero-strided NumPy stand-in with a Dask array's shape and dtype: validation without computing."""
    if not _is_dask(value):
        return value
    if any(np.isnan(n) for n in value.shape):
        raise ValueError(f"fastconv.dask: shape {value.shape} has unknown sizes; call .compute_chunk_sizes() first")
    return np.broadcast_to(np.zeros((), dtype=value.dtype), value.shape)


def _prepare(function, nd, input, weight, bias):
    """``functional.prepare`` (same checks, same messages) on placeholders, then the arrays as Dask."""
    _, w0, b0, ctx, unbatched = prepare(function, nd, _placeholder(input), _placeholder(weight),
                                        _placeholder(bias))
    x = input[None] if unbatched else input
    w = _single_chunk(weight if _is_dask(weight) else w0)
    b = None if bias is None else _single_chunk(bias if _is_dask(bias) else b0)
    return x, w, b, ctx, unbatched


def _single_chunk(array) -> "da.Array":
    """One graph key for the whole array: every block task refers to it, none copies it."""
    if _is_dask(array):
        return array.rechunk(array.shape)
    return da.from_array(array, chunks=array.shape)


# ---- where blocks read from -----------------------------------------------------------------------
class _Chunks:
    """A Dask input: each block's window is assembled from the slices of the chunks it touches.

    A slice that is a small part of its chunk (a halo) is cut by a task of its own, which the
    scheduler runs where the chunk lives: only the halo travels to the block's worker.
    """

    def __init__(self, x):
        self.x = x.rechunk({1: -1})  # channels are contracted: one chunk
        self.bounds = [list(itertools.accumulate(c, initial=0)) for c in self.x.chunks[2:]]
        self.shape, self.dtype, self.batch_chunks = self.x.shape, self.x.dtype, self.x.chunks[0]
        self.dependencies, self.graph, self.token = [self.x], {}, self.x.name
        self.halo_name = "fastconv-halo-" + tokenize(self.x.name)

    def out_chunks(self, geom: ConvGeometry, op: str):
        return _output_chunks(geom, op, self.x.chunks[2:])

    def window(self, batch_index: int, ranges):
        """Task building the input ``[a, b)`` per spatial dim of batch chunk ``batch_index``."""
        per_dim = []
        for (a, b), bounds in zip(ranges, self.bounds):
            first = bisect.bisect_right(bounds, a) - 1
            per_dim.append([(k, max(a, bounds[k]) - bounds[k], min(b, bounds[k + 1]) - bounds[k],
                             bounds[k + 1] - bounds[k], max(a, bounds[k]) - a)
                            for k in range(first, len(bounds) - 1) if bounds[k] < b])
        pieces, places = [], []
        whole = (slice(None), slice(None))
        for combo in itertools.product(*per_dim):
            chunk = (self.x.name, batch_index, 0, *(k for k, *_ in combo))
            src = (*whole, *(slice(lo, hi) for _, lo, hi, _, _ in combo))
            if 2 * math.prod(hi - lo for _, lo, hi, _, _ in combo) < math.prod(n for *_, n, _ in combo):
                halo = (self.halo_name, batch_index, *(v for k, lo, hi, _, _ in combo for v in (k, lo, hi)))
                self.graph[halo] = (operator.getitem, chunk, src)
                pieces.append(halo)
            else:
                pieces.append((operator.getitem, chunk, src))
            places.append((*whole, *(slice(dst, dst + hi - lo) for _, lo, hi, _, dst in combo)))
        shape = (self.batch_chunks[batch_index], self.shape[1], *(b - a for a, b in ranges))
        return (_assemble, pieces, places, shape, self.dtype)


class _Store:
    """A store: each block reads its window straight from it (halos re-read, nothing shared)."""

    def __init__(self, store, lead: int, shape, out_chunks):
        self.shape, self.dtype, self.batch_chunks = shape, np.dtype(store.dtype), (1,) * shape[0]
        self.key = "fastconv-store-" + tokenize(store, lead)
        self.lead, self.spatial_out = lead, out_chunks
        self.dependencies, self.graph, self.token = [], {self.key: store}, self.key  # shipped once

    def out_chunks(self, geom: ConvGeometry, op: str):
        return self.spatial_out

    def window(self, batch_index: int, ranges):
        index = (slice(batch_index, batch_index + 1), slice(None), *(slice(a, b) for a, b in ranges))
        return (_read, self.key, index[2 - self.lead:], 2 - self.lead)


def _assemble(pieces, places, shape, dtype):
    if len(pieces) == 1:
        return pieces[0]
    window = np.empty(shape, dtype=dtype)
    for piece, place in zip(pieces, places):
        window[place] = piece
    return window


def _read(store, index, missing: int):
    data = np.asarray(store[index])
    return data.reshape((1,) * missing + data.shape)


# ---- the chunked computation ------------------------------------------------------------------------
def _output_chunks(geom: ConvGeometry, op: str, in_chunks) -> tuple[tuple[int, ...], ...]:
    """Spatial chunks of the result of ``op`` ('forward' or 'input_grad' = transposed convolution)
    whose input has spatial chunks ``in_chunks``: block ``j`` starts where input chunk ``j``'s
    first window does, so each block reads its own chunk plus a halo. Empty blocks are dropped."""
    result = []
    for dim, chunks in enumerate(in_chunks):
        inner = [b for _, b in _ranges(chunks)[:-1]]
        if op == "forward":
            cuts = [_windows_before(geom, dim, b) for b in inner]
            size = geom.out_size[dim]
        else:
            size = geom.in_size[dim]
            cuts = [min(max(geom.input_span(dim, b, b + 1)[0], 0), size) for b in inner]
        bounds = sorted({0, size, *cuts})
        result.append(tuple(np.diff(bounds).tolist()))
    return tuple(result)


def _windows_before(geom: ConvGeometry, dim: int, value: int, *, end: bool = False, inclusive: bool = False) -> int:
    """How many outputs of ``dim`` have their window's start (or ``end``) below ``value`` (or at it, if
    ``inclusive``): windows advance monotonically, so a bisection over ``ConvGeometry.input_span``."""
    find = bisect.bisect_right if inclusive else bisect.bisect_left
    return find(range(geom.out_size[dim]), value, key=lambda o: geom.input_span(dim, o, o + 1)[int(end)])


def _source_range(geom: ConvGeometry, op: str, dim: int, lo: int, hi: int):
    """For result positions ``[lo, hi)`` of ``dim``: ``(in_range, out_range)`` of the forward geometry
    that a block needs, clipped to the arrays, or None when nothing reaches the block."""
    if op == "forward":
        start, stop = geom.input_span(dim, lo, hi)
        in_range, out_range = (max(start, 0), min(stop, geom.in_size[dim])), (lo, hi)
        return (in_range, out_range) if in_range[0] < in_range[1] else None
    # Transposed: the outputs whose windows touch [lo, hi), starting at one whose window starts at
    # or before lo so that the block geometry needs no negative (cropping) low padding.
    first = min(_windows_before(geom, dim, lo, end=True, inclusive=True),
                _windows_before(geom, dim, lo, inclusive=True) - 1)
    out_range = (max(first, 0), _windows_before(geom, dim, hi))
    return ((lo, hi), out_range) if out_range[0] < out_range[1] else None


def _window_geometry(geom: ConvGeometry, batch: int, in_ranges, out_ranges) -> ConvGeometry:
    """``geom`` restricted to inputs ``[a, b)`` and outputs ``[o0, o1)`` per spatial dimension:
    the padding makes local output ``i`` read where global output ``o0 + i`` does."""
    padding = []
    for dim, ((a, b), (o0, o1)) in enumerate(zip(in_ranges, out_ranges)):
        start, stop = geom.input_span(dim, o0, o1)
        hi = stop - b
        if hi < 0:  # trailing inputs no window reaches: floor division absorbs up to stride - 1 of them
            hi = min(0, hi + geom.stride[dim] - 1)
        padding.append((a - start, hi))
    return ConvGeometry(batch, geom.in_channels, geom.out_channels, geom.groups,
                        tuple(b - a for a, b in in_ranges), geom.kernel, geom.stride, geom.dilation,
                        tuple(padding))


def _block(window, weight, bias, op: str, geom: ConvGeometry | None, shape, dtype, function: str,
           algorithm: str | None):
    """One result block: the NumPy fastconv call on the block's window (zeros where nothing reaches)."""
    if geom is None:
        y = np.zeros(shape, dtype=dtype)
        return y if bias is None else y + bias.astype(dtype).reshape((-1,) + (1,) * (len(shape) - 2))
    return run(op, geom, window, weight, CallContext(function), algorithm=algorithm, bias=bias)


def _convolve(op: str, geom: ConvGeometry, source, w, b, function: str, algorithm: str | None):
    """The lazy result of ``op`` ('forward', or 'input_grad' for transposed convolution) reading ``source``."""
    spatial_out = source.out_chunks(geom, op)
    # The spatial dimensions are independent: per dimension and block, what the block reads.
    reach = [[_source_range(geom, op, dim, lo, hi) for lo, hi in _ranges(chunks)]
             for dim, chunks in enumerate(spatial_out)]
    channels = geom.out_channels if op == "forward" else geom.in_channels
    name = "fastconv-" + tokenize(op, geom, source.token, w.name, None if b is None else b.name, algorithm)
    w_key = (w.name, *(0,) * w.ndim)
    b_key = None if b is None else (b.name, 0)
    dsk = {}
    for i, n in enumerate(source.batch_chunks):
        for index in itertools.product(*(range(len(c)) for c in spatial_out)):
            shape = (n, channels, *(c[j] for c, j in zip(spatial_out, index)))
            ranges = [reach[dim][j] for dim, j in enumerate(index)]
            window = geometry = None
            if n and all(ranges):
                in_ranges, out_ranges = zip(*ranges)
                geometry = _window_geometry(geom, n, in_ranges, out_ranges)
                # forward reads its input span; transposed reads the outputs whose windows reach the block
                window = source.window(i, in_ranges if op == "forward" else out_ranges)
            dsk[(name, i, 0, *index)] = (_block, window, w_key, b_key, op, geometry, shape, source.dtype, function,
                                         algorithm)
    dsk.update(source.graph)  # the store, or the halo tasks the windows asked for
    deps = [*source.dependencies, w] + ([] if b is None else [b])
    graph = HighLevelGraph.from_collections(name, dsk, dependencies=deps)
    return da.Array(graph, name, chunks=(source.batch_chunks, (channels,), *spatial_out), dtype=source.dtype,
                    meta=np.empty((0,) * len(source.shape), dtype=source.dtype))


def _ranges(chunks) -> list[tuple[int, int]]:
    return list(itertools.pairwise(itertools.accumulate(chunks, initial=0)))
