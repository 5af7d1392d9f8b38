"""Direct convolution: compiled gather correlations over packed input planes.

For layers whose channel count per group is small (grouped convolutions, 1-3 channel stems,
large kernels) im2col copies every input value once per kernel tap and the matrix product is too
thin to run fast. Here each input plane is copied once into a per-thread buffer, zero-padded and
split into stride phases (``_direct_kernels`` explains the layout), and every tap is a constant
offset into it: strides, dilation and padding cost nothing per tap. Results are accumulated in
register tiles of 64-byte vectors over all taps; outputs of a group are computed four at a time
so that they share every load, and for large kernels (one output per input channel) four output
rows of one output, whose taps meet the same input rows. Native input and weight gradients use
the same layouts (the input gradient phase by phase, without multiplying inserted zeros).

Arithmetic runs in the input dtype with fused multiply-adds, summing taps in order; weight
gradients are vectorised dot products accumulated in float64 across segments and the batch.
"""

from __future__ import annotations

import functools
import math
from typing import NamedTuple

import numpy as np

from .. import _config
from .. import _cost_model as cm
from .. import _threads as thread_setting
from .._geometry import ConvGeometry
from . import _gemm_parallel as par
from ._base import Algorithm
from ._layout import Spatial3d

#: Bytes of one accumulator run per output (fits L1 with the input rows it reads).
_RUN_BYTES = 8192
#: Outputs computed together by the blocked micro-kernels (sharing their loads).
_BLOCK = 4
#: Bytes of the 4-output register tile's row (2 registers of 64 bytes): rowwise runs are whole tiles.
_TILE_BYTES = 128
#: (input x output channels per group) from which matrix products win: direct declines.
_WIDE = 32 * 64
#: The same for weight gradients, whose dot products over a whole plane beat the thin im2col
#: products longer: 1.3x faster than gemm at 64 x 64 channels on 56x56 maps (train.3x3c64.wgrad),
#: 1.9x slower at 256 x 256 on 14x14.
_WIDE_WEIGHT_GRAD = 64 * 128


class _Forward(NamedTuple):
    """Packed-plane layout of a forward (and weight-gradient) call."""

    rowwise: bool  # runs of 4 output rows of one output (False: runs of whole rows, see forward_layout)
    q: tuple[int, int, int]  # rows of each stride phase per dimension (width = the row pitch)
    packed: int  # elements of one packed channel (all phases)
    offsets: np.ndarray  # int64: per table column, its offset into the packed channels of a group
    cells: np.ndarray | None  # rowwise: (4, columns) weight (input channel, tap) of each cell, -1 = zero
    count: int  # real taps: in_per_group * kernel volume
    rows: int  # output rows per run
    chunk: int  # columns per run (the whole row unless one row is longer than a run)
    positions: int  # accumulator elements computed per output plane (outputs and the gaps between rows)


class _InputGrad(NamedTuple):
    """Layout of an input-gradient call: packed output gradients and one entry per stride phase."""

    e0: tuple[int, int, int]  # first output-gradient index held, per dimension (may be negative)
    e: tuple[int, int, int]  # indices held per dimension
    phases: np.ndarray  # int64 (P, 11): fd, fh, fw, a0 (3), n (3), first column, taps
    offsets: np.ndarray  # int64 (T,): per (phase, output channel of the group, tap)
    columns: tuple  # per phase, the (output channel, tap) of each table column (-1: padding)
    rows: int
    chunk: int
    work: int  # accumulator elements x taps per input channel plane, over all phases


def _rows_chunk(out_rows: int, out_cols: int, pitch: int, run: int) -> tuple[int, int]:
    """Whole output rows per run while a run (rows laid out with ``pitch``) stays within ``run``
    elements; a row longer than a run is cut into ``run``-column chunks."""
    if out_cols > run:
        return 1, run
    return max(1, min(out_rows, (run - out_cols) // pitch + 1)), out_cols


@functools.lru_cache(maxsize=256)
def spatial3d(geom: ConvGeometry) -> Spatial3d:
    """Spatial parameters as 3-D ones with leading size-1 dimensions: (1, 1, W), (1, H, W) or
    (D, H, W), so that runs of whole rows (axis 1) serve 2-D and 3-D alike."""
    if not 1 <= geom.nd <= 3:
        raise ValueError(f"direct: {geom.nd} spatial dimensions; 1 to 3 are supported")

    def grow(values, fill):
        return (fill,) * (3 - geom.nd) + tuple(values)

    return Spatial3d(grow(geom.in_size, 1), grow(geom.kernel, 1), grow(geom.stride, 1), grow(geom.dilation, 1),
                     grow((lo for lo, _ in geom.padding), 0), grow(geom.out_size, 1))


def _run_positions(planes: int, out_rows: int, out_cols: int, pitch: int, rows: int) -> int:
    """Accumulator elements of the runs covering ``planes`` x ``out_rows`` x ``out_cols`` outputs."""
    full, last = divmod(out_rows, rows)
    runs = [(rows, full)] + ([(last, 1)] if last else [])
    return planes * sum(count * ((r - 1) * pitch + out_cols) for r, count in runs)


def _pad4(n: int) -> int:
    return -(-n // _BLOCK) * _BLOCK


def _tap_phases(sp: Spatial3d) -> tuple[np.ndarray, np.ndarray]:
    """Per tap (weight order), per dimension (3, T): its stride phase ``t*d % s`` and phase-row
    shift ``t*d // s``."""
    taps = np.indices(sp.kernel).reshape(3, -1) * np.array(sp.dilation)[:, None]
    s = np.array(sp.stride)[:, None]
    return taps % s, taps // s


@functools.lru_cache(maxsize=256)
def forward_layout(geom: ConvGeometry, itemsize: int, rowwise: bool) -> _Forward:
    """The cheaper of the two layouts of one output channel at a time (``rowwise`` allows the
    second; weight_grad needs the first), or the first for groups of 4+ outputs."""
    sp = spatial3d(geom)
    flat = _flat_layout(geom, sp, itemsize)
    if geom.out_per_group >= _BLOCK or not rowwise or sp.out_size[1] < 2:
        return flat
    rows = _rows_layout(geom, sp, itemsize)
    cheaper = (rows.positions * rows.offsets.size * cm.DIRECT_SECONDS_PER_ROWS_MAC
               < flat.positions * flat.count * cm.DIRECT_SECONDS_PER_MAC)
    return rows if cheaper else flat


def _flat_layout(geom: ConvGeometry, sp: Spatial3d, itemsize: int) -> _Forward:
    """Runs of whole output rows laid out with the packed row pitch; each tap a table column."""
    reach = [(k - 1) * d // s for k, d, s in zip(sp.kernel, sp.dilation, sp.stride)]
    q = tuple(o + r for o, r in zip(sp.out_size, reach))
    phase = math.prod(q)
    packed = math.prod(sp.stride) * phase
    f, r = _tap_phases(sp)
    tap_offsets = ((f[0] * sp.stride[1] + f[1]) * sp.stride[2] + f[2]) * phase + (r[0] * q[1] + r[1]) * q[2] + r[2]
    count = geom.in_per_group * tap_offsets.size
    offsets = np.full(_pad4(count), tap_offsets[0], dtype=np.int64)
    offsets[:count] = (np.arange(geom.in_per_group)[:, None] * packed + tap_offsets).ravel()
    run = _RUN_BYTES // itemsize // (_BLOCK if geom.out_per_group >= _BLOCK else 1)
    rows, chunk = _rows_chunk(sp.out_size[1], sp.out_size[2], q[2], run)
    positions = _run_positions(sp.out_size[0], sp.out_size[1], sp.out_size[2], q[2], rows)
    return _Forward(False, q, packed, offsets, None, count, rows, chunk, positions)


def _rows_layout(geom: ConvGeometry, sp: Spatial3d, itemsize: int) -> _Forward:
    """Runs of 4 output rows of one output, computed together: taps that differ only in their
    kernel row read the same packed rows, so each packed row is loaded once for all 4 (a table
    column per packed row, with a 4x4 block of weights, zero where a row meets no tap). No gaps
    between rows either: the better layout for large kernels on narrow planes."""
    out_d, out_h, out_w = sp.out_size
    reach = [(k - 1) * d // s for k, d, s in zip(sp.kernel, sp.dilation, sp.stride)]
    tile = _TILE_BYTES // itemsize  # runs are whole register tiles; the extra columns are dropped
    run = -(-min(out_w, _RUN_BYTES // itemsize // _BLOCK) // tile) * tile
    q = (out_d + reach[0], _pad4(out_h) + reach[1], -(-out_w // tile) * tile + reach[2])
    phase = math.prod(q)
    packed = math.prod(sp.stride) * phase
    f, r = _tap_phases(sp)
    phase_of = (f[0] * sp.stride[1] + f[1]) * sp.stride[2] + f[2]
    kernel_taps = phase_of.size
    classes: dict[tuple, dict[int, int]] = {}  # (channel, phase, depth and column shift) -> {row shift: weight}
    for j in range(geom.in_per_group * kernel_taps):
        t = j % kernel_taps
        classes.setdefault((j // kernel_taps, phase_of[t], r[0, t], r[2, t]), {})[r[1, t]] = j
    offsets, cells = [], []
    for (ci, ph, rd, rw), by_row in sorted(classes.items()):
        for row in range(min(by_row), max(by_row) + _BLOCK):  # output row m reads packed row `row` with tap row - m
            offsets.append(ci * packed + ph * phase + (rd * q[1] + row) * q[2] + rw)
            cells.append([by_row.get(row - m, -1) for m in range(_BLOCK)])
    full, last = divmod(out_w, run)
    positions = out_d * _pad4(out_h) * (full * run + -(-last // tile) * tile)
    return _Forward(True, q, packed, np.array(offsets, dtype=np.int64), np.ascontiguousarray(np.array(cells).T),
                    geom.in_per_group * kernel_taps, _BLOCK, run, positions)


@functools.lru_cache(maxsize=256)
def input_grad_layout(geom: ConvGeometry, itemsize: int) -> _InputGrad:
    """Each stride phase of the input gradient is a stride-1 correlation of the zero-margined
    output gradient with the (output channel, tap) pairs of that phase, tap offsets negated."""
    sp = spatial3d(geom)
    ranges = []  # per dimension: (first, count) of phase-rows per phase, and the held index range
    for n, k, d, s, lo in zip(sp.in_size, sp.kernel, sp.dilation, sp.stride, sp.lo):
        # input i has padded coordinate i + lo = a*s + f and meets output a - t*d//s of taps with t*d % s == f
        spans = [(-((f - lo) // s), (lo + n - 1 - f) // s) for f in range(s)]
        held = [a0 for a0, a1 in spans if a1 >= a0]
        first = min(held, default=0) - (k - 1) * d // s
        last = max((a1 for a0, a1 in spans if a1 >= a0), default=0)
        ranges.append(([(a0, max(0, a1 - a0 + 1)) for a0, a1 in spans], first, last - first + 1))
    e0 = tuple(r[1] for r in ranges)
    e = tuple(r[2] for r in ranges)
    packed = math.prod(e)
    f, r = _tap_phases(sp)
    tap_offsets = -((r[0] * e[1] + r[1]) * e[2] + r[2])
    og = geom.out_per_group
    phases, offsets, columns, col = [], [], [], 0
    for fd in range(sp.stride[0]):
        for fh in range(sp.stride[1]):
            for fw in range(sp.stride[2]):
                mine = np.flatnonzero((f[0] == fd) & (f[1] == fh) & (f[2] == fw))
                outs, tap = np.repeat(np.arange(og), mine.size), np.tile(mine, og)
                count = outs.size
                width = _pad4(count)
                table = np.zeros(width, dtype=np.int64)
                table[:count] = outs * packed + tap_offsets[tap]
                table[count:] = table[0] if count else 0
                pick = np.full((2, width), -1, dtype=np.int64)
                pick[:, :count] = outs, tap
                (a0d, nd), (a0h, nh), (a0w, nw) = (ranges[0][0][fd], ranges[1][0][fh], ranges[2][0][fw])
                phases.append((fd, fh, fw, a0d, a0h, a0w, nd, nh, nw, col, count))
                offsets.append(table)
                columns.append(pick)
                col += width
    widest = max(p[8] for p in phases)
    run = _RUN_BYTES // itemsize // (_BLOCK if geom.in_per_group >= _BLOCK else 1)
    rows, chunk = _rows_chunk(max(p[7] for p in phases), widest, e[2], run)
    work = sum(_run_positions(p[6], p[7], p[8], e[2], min(rows, p[7]) if p[8] <= chunk else 1) * p[10]
               for p in phases if p[7] and p[8])
    return _InputGrad(e0, e, np.array(phases, dtype=np.int64), np.concatenate(offsets), tuple(columns),
                      rows, max(chunk, 1), work)


class Direct(Algorithm):
    """Direct convolution for grouped and few-channel layers (depthwise ones: see ``depthwise``)."""

    name = "direct"
    native_ops = ("forward", "input_grad", "weight_grad")

    # ---- planning ---------------------------------------------------------------------------
    def _declines(self, geom: ConvGeometry, op: str) -> str | None:
        """The groupings this plug-in leaves to others."""
        if geom.groups == geom.in_channels:
            return "direct: depthwise (groups == in_channels) runs as 'depthwise'"
        if geom.in_per_group * geom.out_per_group >= (_WIDE_WEIGHT_GRAD if op == "weight_grad" else _WIDE):
            # measured against gemm: 1.1-1.3x slower at 32 x 64 (transposed 2x2x2 stride 2, vs subpixel) and
            # 64 x 64 (k=2 dilated 1-D), 1.6-2x slower at 256 x 256; faster up to 32 x 32
            return (f"direct: {geom.in_per_group} x {geom.out_per_group} channels per group; BLAS matrix products "
                    f"(gemm) are faster")
        return None

    def supports(self, geom, dtype, op):
        if np.dtype(dtype).kind == "c":
            return f"{self.name}: complex dtypes"
        if geom.nd > 3:
            return f"{self.name}: {geom.nd} spatial dimensions; the compiled kernels handle 1 to 3"
        reason = self._declines(geom, op)
        if reason:
            return reason
        bound = self.error_bound(geom, dtype, op)
        if bound > _config.max_relative_error:
            return (f"{self.name}: summing {self._terms(geom, op)} products in order (relative error up to "
                    f"{bound:.2g}) exceeds max_relative_error={_config.max_relative_error:.2g} (fastconv.set_accuracy)")
        scratch = self._scratch_bytes(geom, np.dtype(dtype).itemsize, op) * _threads()
        if scratch > _config.workspace_bytes:
            return (f"{self.name}: packed planes need {scratch / 2**20:.0f} MiB, over the workspace budget "
                    f"({_config.workspace_bytes / 2**20:.0f} MiB)")
        return None

    @staticmethod
    def _terms(geom: ConvGeometry, op: str) -> int:
        """Products summed in order into one result (weight gradients sum 8-lane partial dot
        products of one run, then add runs in float64)."""
        if op == "input_grad":
            return geom.out_per_group * -(-geom.kernel_volume // math.prod(geom.stride))
        if op == "weight_grad":
            return -(-_RUN_BYTES // 8)
        return geom.in_per_group * geom.kernel_volume

    def error_bound(self, geom: ConvGeometry, dtype, op: str) -> float:
        """Relative error of a sum of n products in order: ~unit roundoff x sqrt(n) for random signs
        (measured 2e-6 in float32 for n = 12544, below this bound of 6.8e-6)."""
        return np.finfo(dtype).eps / 2 * math.sqrt(self._terms(geom, op))

    @staticmethod
    def _scratch_bytes(geom: ConvGeometry, itemsize: int, op: str) -> int:
        """Per-thread buffers: the packed planes of one group and the accumulator runs."""
        run = _BLOCK * _RUN_BYTES
        if op == "input_grad":
            return geom.out_per_group * math.prod(input_grad_layout(geom, itemsize).e) * itemsize + run
        return geom.in_per_group * forward_layout(geom, itemsize, op == "forward").packed * itemsize + run

    def cost(self, geom, dtype, op):
        itemsize = np.dtype(dtype).itemsize
        n, g = geom.batch, geom.groups
        if op == "input_grad":  # computes input channels, each a sum over the group's outputs
            per, other = geom.in_per_group, geom.out_per_group
            lay = input_grad_layout(geom, itemsize)
            single = blocked = lay.work
            planes, written = math.prod(lay.e), math.prod(geom.input_shape)
        else:
            per, other = geom.out_per_group, geom.in_per_group
            lay = forward_layout(geom, itemsize, op == "forward")
            single, blocked = lay.positions * lay.count, lay.positions * lay.offsets.size
            planes, written = lay.packed, math.prod(geom.output_shape)
        block = _block(per, n * g)
        jobs = n * g * -(-per // block)  # weight_grad splits the batch across jobs too
        rowwise = op != "input_grad" and lay.rowwise
        together = per if rowwise else per // _BLOCK * _BLOCK
        # a group's packed planes that outgrow the caches are streamed from memory by every run
        streaming = 1 + other * planes * itemsize / cm.DIRECT_CACHE_BYTES
        seconds = (n * g * streaming * (together * blocked * (cm.DIRECT_SECONDS_PER_ROWS_MAC if rowwise
                                                              else cm.DIRECT_SECONDS_PER_BLOCKED_MAC)
                                        + (per - together) * single * cm.DIRECT_SECONDS_PER_MAC)
                   + (jobs * other * planes + written) * cm.DIRECT_SECONDS_PER_ELEMENT)
        if op == "weight_grad" and geom.in_per_group > 1:
            seconds *= cm.DIRECT_DENSE_WEIGHT_GRAD_FACTOR
        return call_seconds(seconds, jobs)

    # ---- ops --------------------------------------------------------------------------------
    def forward(self, x, w, geom):
        from . import _direct_kernels as k
        sp = spatial3d(geom)
        og = geom.out_per_group
        lay = forward_layout(geom, x.itemsize, True)
        table = np.zeros((geom.out_channels, _pad4(lay.count)), dtype=x.dtype)
        table[:, :lay.count] = w.reshape(geom.out_channels, lay.count)
        jobs = geom.batch * geom.groups
        oblock = _block(og, jobs)
        segments = sp.out_size[0] * -(-sp.out_size[1] // lay.rows) * -(-sp.out_size[2] // lay.chunk)
        parts = max(1, min(segments, -(-2 * _threads() // (jobs * -(-og // oblock)))))
        y = np.empty(geom.output_shape, dtype=x.dtype)
        cells = lay.cells if lay.rowwise else np.empty((_BLOCK, 0), dtype=np.int64)
        run = parallel(k.forward, estimate(self, geom, x.dtype, "forward"), jobs * -(-og // oblock) * parts)
        run(_flat(x), sp.in_size, geom.in_channels, table, lay.offsets, lay.count, cells, y.reshape(-1), sp.out_size,
            sp.lo, sp.stride, lay.q, lay.rows, lay.chunk, geom.groups, oblock, parts)
        return y

    def input_grad(self, dy, w, geom):
        from . import _direct_kernels as k
        sp = spatial3d(geom)
        cg, og = geom.in_per_group, geom.out_per_group
        lay = input_grad_layout(geom, dy.itemsize)
        # table[c, column] = w[group(c)*og + o, c % cg, tap] for the (o, tap) of each column
        wg = w.reshape(geom.groups, og, cg, -1)
        outs, taps = np.concatenate(lay.columns, axis=1)
        table = wg[:, np.maximum(outs, 0), :, taps].transpose(1, 2, 0)  # (G, cg, columns)
        table = np.where(outs >= 0, table, 0).astype(dy.dtype).reshape(geom.in_channels, -1)
        dx = np.empty(geom.input_shape, dtype=dy.dtype)
        cblock = _block(cg, geom.batch * geom.groups)
        jobs = geom.batch * geom.groups * -(-cg // cblock)
        run = parallel(k.input_grad, estimate(self, geom, dy.dtype, "input_grad"), jobs)
        run(_flat(dy), sp.out_size, geom.out_channels, np.ascontiguousarray(table), lay.offsets, lay.phases,
            dx.reshape(-1), sp.in_size, sp.lo, sp.stride, lay.e0, lay.e, lay.rows, lay.chunk, geom.groups, cblock)
        return dx

    def weight_grad(self, x, dy, geom):
        from . import _direct_kernels as k
        sp = spatial3d(geom)
        og = geom.out_per_group
        lay = forward_layout(geom, x.itemsize, False)
        # outputs per job as if every sample were a job, then the batch split to fill the threads:
        # each job packs its samples' planes once for all its outputs (smaller output blocks
        # re-packed every sample per block: 5-7% slower on train.3x3c64.wgrad)
        oblock = _block(og, geom.groups * geom.batch)
        splits = max(1, min(geom.batch, -(-2 * _threads() // (geom.groups * -(-og // oblock)))))
        partial = np.zeros((splits, geom.out_channels, lay.offsets.size))
        run = parallel(k.weight_grad, estimate(self, geom, x.dtype, "weight_grad"), geom.groups * -(-og // oblock) * splits)
        run(_flat(x), sp.in_size, geom.in_channels, _flat(dy), sp.out_size, geom.out_channels, lay.offsets, lay.count,
            sp.lo, sp.stride, lay.q, lay.rows, lay.chunk, geom.groups, oblock, partial)
        return partial.sum(axis=0)[:, :lay.count].astype(x.dtype).reshape(geom.weight_shape)


@functools.lru_cache(maxsize=256)
def _estimate(alg: Algorithm, geom: ConvGeometry, dtype: np.dtype, op: str, threads: int) -> float:
    return alg.cost(geom, dtype, op)


def estimate(alg: Algorithm, geom: ConvGeometry, dtype: np.dtype, op: str) -> float:
    """``alg.cost``, remembered per geometry and thread count: the kernels' choice of threads
    (:func:`parallel`) asks for it on every call, and computing it took ~15 us of a 100 us call."""
    return _estimate(alg, geom, np.dtype(dtype), op, _threads())


def call_seconds(seconds: float, jobs: int) -> float:
    """A call's estimate from ``seconds`` of work at every core busy, when it has ``jobs`` jobs
    (fewer jobs than threads leave cores idle); the planner adds the per-call overhead
    (``_cost_model.CALL_SECONDS``)."""
    threads = _threads()
    return seconds * threads / min(threads, jobs)


def parallel(kernel, seconds: float, jobs: int):
    """``kernel`` with its ``jobs`` handed out in ranges of about a quarter of a thread's share, on
    fastconv's worker threads: on a busy machine a descheduled thread then delays only its current
    range, where static shares would wait for it (each range re-runs the kernel's per-job set-up,
    so not one job at a time). On one thread when the call is estimated below
    ``DIRECT_PARALLEL_SECONDS``: the wake-up of a second thread costs more than it saves there
    (measured up to milliseconds on a loaded machine)."""
    threads = 1 if seconds < cm.DIRECT_PARALLEL_SECONDS else _threads()

    def run(*args):
        ranges = par.split(jobs, 4 * threads) if threads > 1 else [(0, jobs)]
        par.for_each(ranges, lambda r, _: kernel(*args, *r), threads, np.float64, blas=False)
    return run


def _threads() -> int:
    return thread_setting.get_num_threads()


def _block(per_group: int, jobs: int) -> int:
    """Outputs per job: blocks of 4 (sharing loads), split until both cores have work."""
    if per_group < _BLOCK:
        return per_group
    wanted = -(-4 * _threads() // jobs)  # blocks per group for ~4 jobs per thread
    blocks = max(1, min(per_group // _BLOCK, wanted))
    return _pad4(-(-per_group // blocks))


def _flat(a: np.ndarray) -> np.ndarray:
    """C-contiguous flat view (a copy only for non-contiguous input)."""
    return np.ascontiguousarray(a).reshape(-1)
