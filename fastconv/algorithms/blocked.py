"""Channel-blocked direct convolution: register-tiled over output channels, for wide layers.

Where ``direct`` vectorises along output positions (right for few channels), this one vectorises
along output channels, as oneDNN's direct convolutions do: the input is packed once into blocks
of 16 channels interleaved per pixel, zero-padded and split into stride phases along the last
axis, the weights into blocks of 32 output channels (float32; 16 in float64), and a micro-kernel
keeps up to 14 pixels x 32 output channels of sums in registers, broadcasting one input value per
pixel against two weight vectors (``_blocked_kernels``). Every tap is a constant offset into the
packed input, so stride, dilation and padding cost nothing per tap, and there is no im2col: each
input value is packed once, not once per tap. A job (one output block over a range of output
rows, the whole batch) keeps each input block's weights in L1 while all its tiles use them.
Long 1-D signals are not packed whole: each job packs the slab of columns it reads into a buffer
of its own that stays in L2 for every output block of those columns (wavenet.k2d64: 0.93x the
time of packing the 16 MB signal first, which went to memory and back).

Against im2col + BLAS (``gemm``) this saves the columns (9x the input for a 3x3 kernel) and runs
its products at full width whatever the map size (a 7x7 map gives BLAS 49-column products): on
the reference machine the micro-kernel ran 3x3 layers at 118-125 GFLOP/s on one core (OpenBLAS's
large sgemm: ~108 at the same time). It declines grouped layers (``direct``), fewer than 16
input channels per group (the block would be mostly zeros) and complex dtypes.
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Callable

import numpy as np

from .. import _config, _threads
from .._geometry import ConvGeometry
from . import _gemm_parallel as par
from ._base import Algorithm
from ._layout import Scratch, as5d, spatial3d

#: Input channels per block, pixels per register tile (both fixed by the micro-kernel).
_B, _PIXELS = 16, 14
#: Bytes of a job's accumulators (batch x rows x columns x output block): about half of L2, beside
#: the input rows the job reads.
_ACC_BYTES = 128 * 2**10
#: Bytes of the weights one micro-kernel call runs through (input blocks x taps x B x OBW): they
#: stay in L1 while every tile of a job uses them; layers with few taps take several input blocks
#: per call, keeping their sums in registers longer.
_CHUNK_WEIGHT_BYTES = 20 * 2**10
#: Packed weights up to this size stay in L2 across jobs: jobs then run every output block of a
#: range of pixels before the next range, so that the input is read from memory once (ranges
#: outer, blocks inner); larger weights keep one output block's weights in L2 instead.
_L2_WEIGHT_BYTES = 512 * 2**10
#: Packed weights beyond this size are packed by the workers, each the output block it runs next
#: into a buffer of its own that stays in its L2 (``convolve``); packed whole before the jobs they
#: went to memory and back (resnet50.3x3c512, 9.4 MB: 0.92x the time). Smaller ones gained
#: nothing (deeplab.3x3d2, 2.4 MB: level; resnet50.3x3c128s2, 0.6 MB, and dcgan.up4x4s2's 2 MB of
#: phase weights: 1.02-1.03x).
_STREAMED_WEIGHT_BYTES = 4 * 2**20
#: Output columns per job at most (a 1-D signal's row is cut into such chunks).
_MAX_COLUMNS = 16 * _PIXELS
#: Bytes of the input slab a job of a 1-D signal packs (every sample and channel of its
#: columns) at most: with the accumulators and weights it stays in L2 for every output block.
_SLAB_BYTES = 512 * 2**10


class Blocked(Algorithm):
    """Direct convolution over channel-blocked packed layouts (module docstring)."""

    name = "blocked"

    def supports(self, geom, dtype, op):
        if geom.nd > 3:
            return f"blocked: {geom.nd} spatial dimensions; its kernels handle 1 to 3"
        reason = micro_kernel_declines(self.name, geom, dtype, "grouped layers run as 'direct'")
        if reason:
            return reason
        need = _plan(geom, np.dtype(dtype).itemsize).scratch_bytes
        if need > _config.workspace_bytes:
            return (f"blocked: needs {need / 2**20:.0f} MiB of scratch (packed input and weights) > "
                    f"workspace {_config.workspace_bytes / 2**20:.0f} MiB")
        return None

    def cost(self, geom, dtype, op):
        from .. import _cost_model as cm
        plan = _plan(geom, np.dtype(dtype).itemsize)
        slowdown = 1 + cm.BLOCKED_TILE_OVERHEAD_PIXELS / _near_equal(plan.columns, _PIXELS)
        if plan.block_bytes > _CHUNK_WEIGHT_BYTES:
            slowdown *= cm.BLOCKED_L2_WEIGHTS_FACTOR
        macs = plan.blocks_out * plan.obw * plan.blocks_in * _B * geom.kernel_volume * geom.batch * math.prod(geom.out_size)
        itemsize = np.dtype(dtype).itemsize
        return (macs * cm.BLOCKED_SECONDS_PER_MAC * slowdown
                + plan.packed_input * itemsize * (cm.BLOCKED_SECONDS_PER_TRANSPOSED_INPUT_BYTE if plan.s3.stride[2] == 1
                                                  else cm.BLOCKED_SECONDS_PER_PACKED_INPUT_BYTE)
                + plan.packed_weights * itemsize * cm.BLOCKED_SECONDS_PER_PACKED_WEIGHT_BYTE
                + math.prod(geom.output_shape) * itemsize * cm.BLOCKED_SECONDS_PER_OUTPUT_BYTE)

    def forward(self, x, w, geom):
        from . import _blocked_kernels as k
        plan = _plan(geom, x.itemsize)
        y = np.empty(geom.output_shape, dtype=x.dtype)
        n = par.workers(geom.macs)
        w_flat, w_shape = np.ascontiguousarray(w).reshape(-1), plan.index_arrays[1]
        convolve(x, plan, lambda wp, ob0, ob1: k.pack_weights(w_flat, w_shape, wp, plan.blocks_in, ob0, ob1),
                 y.reshape(-1), plan.placement, plan.jobs(n), n)
        return y


def micro_kernel_declines(name: str, geom: ConvGeometry, dtype, grouped: str) -> str | None:
    """Why the micro-kernel cannot serve ``geom`` (complex data, groups, fewer input channels than
    a block), as ``name``'s reason, ``grouped`` saying what runs grouped layers; None if it can."""
    if np.dtype(dtype).kind == "c":
        return f"{name}: {np.dtype(dtype)} is complex; its micro-kernel is real"
    if geom.groups > 1:
        return f"{name}: groups={geom.groups}; {grouped}"
    if geom.in_channels < _B:
        return f"{name}: {geom.in_channels} input channels < {_B}, a block would be mostly zeros"
    return None


def _near_equal(count: int, most: int) -> int:
    """The size of near-equal pieces of at most ``most`` that cut ``count``."""
    return -(-count // -(-count // most))


@functools.lru_cache(maxsize=256)
def _plan(geom: ConvGeometry, itemsize: int) -> _Plan:
    """The plan of a geometry, built once for its support check, cost and calls."""
    return _Plan(geom, itemsize)


class _Plan:
    """Packed sizes, tap offsets and jobs of one geometry (see ``_blocked_kernels`` for the layouts)."""

    def __init__(self, geom: ConvGeometry, itemsize: int):
        self.geom = geom
        self.s3 = s3 = spatial3d(geom)
        self.obw = 2 * 64 // itemsize
        self.itemsize = itemsize
        self.blocks_in = -(-geom.in_channels // _B)
        self.blocks_out = -(-geom.out_channels // self.obw)
        dp, hp, wp = ((o - 1) * s + (k - 1) * d + 1 for o, s, k, d in zip(s3.out_size, s3.stride, s3.kernel, s3.dilation))
        self.wq = -(-wp // s3.stride[2])
        # elements the input packs into (once, whole or slab by slab)
        self.packed_input = geom.batch * self.blocks_in * dp * hp * s3.stride[2] * self.wq * _B
        self.block_weights = self.blocks_in * geom.kernel_volume * _B * self.obw  # of one output block, packed
        self.packed_weights = self.blocks_out * self.block_weights
        self.weights_in_l2 = self.packed_weights * itemsize <= _L2_WEIGHT_BYTES
        self.weights_streamed = self.packed_weights * itemsize > _STREAMED_WEIGHT_BYTES
        # output columns per job: the whole row up to _MAX_COLUMNS, else near-equal chunks
        self.columns = _near_equal(s3.out_size[2], _MAX_COLUMNS)
        # 1-D signals whose jobs run every output block of their columns in turn pack slab by
        # slab, each job the columns it reads: wq is then a slab's width
        slab_wq = self.columns + (s3.kernel[2] - 1) * s3.dilation[2] // s3.stride[2]
        self.sliced = (geom.nd == 1 and self.weights_in_l2
                       and slab_wq < self.wq and geom.batch * self.blocks_in * s3.stride[2] * slab_wq * _B * itemsize <= _SLAB_BYTES)
        if self.sliced:
            self.wq = slab_wq
        self.packed_dims = (self.blocks_in, dp, hp, self.wq)
        self.block_bytes = geom.kernel_volume * _B * self.obw * itemsize  # weights of one input block
        self.chunk = max(1, min(self.blocks_in, _CHUNK_WEIGHT_BYTES // self.block_bytes))
        self.block_stride = dp * hp * s3.stride[2] * self.wq * _B

    @property
    def scratch_bytes(self) -> int:
        packed_input = self.geom.batch * self.blocks_in * self.block_stride if self.sliced else self.packed_input
        weights = self.block_weights * _threads.get_num_threads() if self.weights_streamed else self.packed_weights
        return (packed_input + weights) * self.itemsize + _ACC_BYTES

    @functools.cached_property
    def index_arrays(self) -> tuple[np.ndarray, ...]:
        """The kernels' shape arrays: the input's 5-D shape, the weight's (O, C, taps), the packed
        input's (CB, Dp, Hp, Wq), and the 3-D padding before, output size and stride. Like
        :attr:`offsets` and :meth:`jobs`, built once per geometry and shared by its calls (never
        modified): building them each call took 60-200 us."""
        geom, s3 = self.geom, self.s3
        return tuple(np.array(v, dtype=np.int64) for v in (
            (geom.batch, geom.in_channels, *s3.in_size), (geom.out_channels, geom.in_channels, geom.kernel_volume),
            self.packed_dims, s3.lo, s3.out_size, s3.stride))

    @functools.cached_property
    def offsets(self) -> np.ndarray:
        """Per input block of a chunk and tap (weight order), its offset into the packed input from
        the tile's first pixel in the chunk's first block."""
        s3, (_, _, hp, wq) = self.s3, self.packed_dims
        sw = s3.stride[2]
        kd, kh, kw = (np.arange(k) * d for k, d in zip(s3.kernel, s3.dilation))
        rows = (kd[:, None] * hp + kh[None, :]) * sw * wq
        taps = ((rows[:, :, None] + (kw % sw) * wq + kw // sw) * _B).reshape(-1)
        return (np.arange(self.chunk)[:, None] * self.block_stride + taps).reshape(-1).astype(np.int64)

    @functools.cached_property
    def placement(self) -> tuple[np.ndarray, np.ndarray]:
        """The kernel's output placement for a (N, O, Do*Ho, Wo) output: element steps per sample,
        row and column, and each output channel's offset."""
        (d, h, w), outputs = self.s3.out_size, self.geom.out_channels
        return np.array((outputs * d * h * w, w, 1), dtype=np.int64), np.arange(outputs, dtype=np.int64) * (d * h * w)

    @functools.lru_cache(maxsize=8)  # noqa: B019  # plans live as long as _plan's cache keeps them
    def jobs(self, workers: int, boxes: tuple[tuple[int, int, int, int], ...] | None = None) -> np.ndarray:
        """(ob, r0, r1, c0, c1, pixels) per job: output blocks x row ranges x column chunks (blocks
        inner when the weights fit L2, see _L2_WEIGHT_BYTES), with the register tile's width; rows
        per job within ``_ACC_BYTES`` and, with several workers, ``par.SHARES_PER_WORKER`` jobs
        each at least. ``boxes``: per output block, the rows [r0, r1) (flat over depth and height)
        and columns [c0, c1) it computes; every output by default."""
        rows, width = self.s3.out_size[0] * self.s3.out_size[1], self.s3.out_size[2]
        boxes = boxes or ((0, rows, 0, width),) * self.blocks_out
        parts = [self._parts(box, workers) for box in boxes]
        if self.weights_in_l2:
            order = [(ob, *block[i]) for i in range(max(map(len, parts))) for ob, block in enumerate(parts) if i < len(block)]
        else:
            order = [(ob, *part) for ob, block in enumerate(parts) for part in block]
        return np.array([(*job, _near_equal(job[4] - job[3], _PIXELS)) for job in order], dtype=np.int64).reshape(-1, 6)

    def _parts(self, box: tuple[int, int, int, int], workers: int) -> list[tuple[int, int, int, int]]:
        """A box of one output block cut into row ranges and column chunks (at most ``columns``
        wide: a 1-D slab's width) for :meth:`jobs`."""
        r0, r1, c0, c1 = box
        if r1 <= r0 or c1 <= c0:
            return []
        cols = min(self.columns, _near_equal(c1 - c0, _MAX_COLUMNS))
        col_chunks = [(c, min(c + cols, c1)) for c in range(c0, c1, cols)]
        per_row = self.geom.batch * cols * self.obw * self.itemsize
        wanted = -(-par.SHARES_PER_WORKER * workers // (self.blocks_out * len(col_chunks))) if workers > 1 else 1
        row_ranges = par.split(r1 - r0, max(-(-(r1 - r0) // max(1, _ACC_BYTES // per_row)), wanted))
        return [(r0 + a, r0 + b, c, d) for a, b in row_ranges for c, d in col_chunks]


def convolve(x: np.ndarray, plan: _Plan, pack_weights: Callable[[np.ndarray, int, int], None], out: np.ndarray,
             placement: tuple[np.ndarray, np.ndarray], jobs: np.ndarray, n: int) -> None:
    """The blocked convolution of x on ``plan``'s geometry, stored by ``placement`` (steps per
    sample, row and column, and channel offsets; see ``_blocked_kernels.forward``) into the flat
    ``out``, for the outputs of ``jobs``, on ``n`` workers. ``pack_weights(wp, ob0, ob1)`` packs
    output blocks ob0 .. ob1 of the weights into wp.

    The weights are packed whole beside the input; or, beyond ``_STREAMED_WEIGHT_BYTES`` (jobs
    then come output block after output block), by the workers, each the block its next jobs
    run, into a buffer of its own that stays in its L2."""
    from . import _blocked_kernels as k
    s3 = plan.s3
    x5 = as5d(x, s3.in_size)
    x_shape, _, packed, lo, out_size, stride = plan.index_arrays

    def run(wp: np.ndarray, wp_first: int, j0: int, j1: int) -> None:
        k.forward(xp, wp, wp_first, plan.offsets, plan.geom.kernel_volume, plan.chunk, packed, out_size, stride,
                  jobs, out, *placement, x5.reshape(-1), x_shape, lo, j0, j1)

    packed_by: dict[Scratch, int] = {}  # per worker, the output block its buffer holds

    def run_packing(r: tuple[int, int], scratch: Scratch) -> None:
        own, j = scratch.get("w_block", (plan.block_weights,)), r[0]
        for ob, run_jobs in itertools.groupby(jobs[r[0]:r[1], 0].tolist()):
            if packed_by.get(scratch) != ob:
                pack_weights(own, ob, ob + 1)
                packed_by[scratch] = ob
            count = sum(1 for _ in run_jobs)
            run(own, ob, j, j + count)
            j += count

    with Scratch(x.dtype) as held:
        xp = held.get("x_packed", (0 if plan.sliced else plan.packed_input,))  # empty: jobs pack slabs
        steps = ([] if plan.sliced else
                 [lambda r=r: k.pack_input(x5.reshape(-1), x_shape, xp, lo, s3.stride[2], packed, 0, *r)
                  for r in par.split(plan.geom.batch * plan.blocks_in, 2 * n)])
        task = run_packing
        if not plan.weights_streamed:
            wp, size = held.get("w_packed", (plan.packed_weights,)), plan.block_weights
            steps += [lambda r=r: pack_weights(wp[r[0] * size:r[1] * size], *r)
                      for r in par.split(plan.blocks_out, 2 * n)]
            task = lambda r, _: run(wp, 0, *r)  # noqa: E731
        if steps:
            par.run_steps(steps, n, x.dtype, blas=False)
        par.for_each(par.shares(len(jobs), n), task, n, x.dtype, blas=False)
