"""LLVM building blocks for the numba intrinsics of the compiled kernels: 64-byte vectors of an
array's scalars, masked access to the last, partial vector of a run (a scalar remainder loop
costs as much as the vector loop on the short rows of small maps), and the split of a row into
its stride phases and back (Winograd tiles, strided direct convolutions).

numba's disk cache keys a kernel on its own source file: after editing this module, delete the
cached kernels (``__pycache__/*.nbi``, ``*.nbc``) of the modules that use it."""

from __future__ import annotations

import numba
import numpy as np
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

I32, I64 = ir.IntType(32), ir.IntType(64)


@numba.njit(inline="always")
def aligned_empty(n, dtype):  # pragma: no cover - compiled
    """An uninitialised 1-D array of ``n`` elements starting on a 64-byte cache line: numba's own
    arrays start on 32 bytes, so half of them would split every vector access across two lines
    (the direct kernels' correlations ran 1.75x slower from such a start)."""
    raw = np.empty(n + 64, dtype)
    start = (-(raw.ctypes.data // raw.itemsize)) % (64 // raw.itemsize)
    return raw[start:start + n]


def vector(context, scalar_type) -> tuple[ir.Type, int, int, ir.VectorType]:
    """(scalar, bytes per scalar, lanes, vector) of 64-byte vectors of ``scalar_type``."""
    scalar = context.get_value_type(scalar_type)
    size = context.get_abi_sizeof(scalar)
    lanes = 64 // size
    return scalar, size, lanes, ir.VectorType(scalar, lanes)


def real_vector(context, scalar_type) -> tuple[ir.Type, int, int, ir.VectorType, int]:
    """:func:`vector` of the real scalars of ``scalar_type`` and how many make one of its elements
    (2 for complex: intrinsics with real coefficients move complex arrays as pairs of reals)."""
    pair = 2 if isinstance(scalar_type, types.Complex) else 1
    return (*vector(context, scalar_type.underlying_float if pair == 2 else scalar_type), pair)


def data(context, builder, array_type, array, scalar: ir.Type):
    """A ``scalar`` pointer to the first element of an array argument."""
    return builder.bitcast(cgutils.create_struct_proxy(array_type)(context, builder, value=array).data,
                           scalar.as_pointer())


def vector_at(builder, vec: ir.VectorType, pointer, index):
    """A ``vec`` pointer to element ``index`` of a scalar ``pointer``."""
    return builder.bitcast(builder.gep(pointer, [index]), vec.as_pointer())


def splat(builder, vec: ir.VectorType, value):
    """A ``vec`` of copies of the scalar ``value`` (one broadcast instruction)."""
    one = builder.insert_element(ir.Constant(vec, ir.Undefined), value, ir.Constant(I32, 0))
    return builder.shuffle_vector(one, ir.Constant(vec, ir.Undefined), ir.Constant(ir.VectorType(I32, vec.count), None))


def fma(builder, vec: ir.VectorType):
    """LLVM's fused multiply-add of two ``vec`` (``fma(a, b, c)`` = a*b + c, rounded once)."""
    element = vec.element.intrinsic_name  # f32 or f64
    return cgutils.get_or_insert_function(builder.module, ir.FunctionType(vec, [vec] * 3),
                                          f"llvm.fma.v{vec.count}{element}")


def _splat(builder, lanes: int, value):
    """An i32 vector of ``lanes`` copies of ``value`` (an i32)."""
    return splat(builder, ir.VectorType(I32, lanes), value)


def _lane_ids(lanes: int):
    """The i32 vector 0, 1, ..., lanes - 1."""
    return ir.Constant(ir.VectorType(I32, lanes), list(range(lanes)))


def tail_mask(builder, lanes: int, rest):
    """The lanes below ``rest`` (an i32; none when it is negative, all when it exceeds the lanes)."""
    return builder.icmp_signed("<", _lane_ids(lanes), _splat(builder, lanes, rest))


def window_mask(builder, lanes: int, first, lo, hi):
    """The lanes whose index ``first + lane`` (``first`` an i64, ``lo`` and ``hi`` i32) lies in [lo, hi)."""
    at = builder.add(_splat(builder, lanes, builder.trunc(first, I32)), _lane_ids(lanes))
    return builder.and_(builder.icmp_signed(">=", at, _splat(builder, lanes, lo)),
                        builder.icmp_signed("<", at, _splat(builder, lanes, hi)))


def masked_load(builder, vec: ir.VectorType, size: int, pointer, mask):
    """The masked lanes of the vector at ``pointer`` (a vector pointer), zero elsewhere."""
    load = cgutils.get_or_insert_function(builder.module, ir.FunctionType(
        vec, [pointer.type, I32, mask.type, vec]), f"llvm.masked.load.{_suffix(vec, size)}")
    return builder.call(load, [pointer, ir.Constant(I32, size), mask, ir.Constant(vec, None)])


def masked_store(builder, vec: ir.VectorType, size: int, value, pointer, mask) -> None:
    """Store the masked lanes of ``value`` at ``pointer`` (a vector pointer)."""
    store = cgutils.get_or_insert_function(builder.module, ir.FunctionType(
        ir.VoidType(), [vec, pointer.type, I32, mask.type]), f"llvm.masked.store.{_suffix(vec, size)}")
    builder.call(store, [value, pointer, ir.Constant(I32, size), mask])


def vector_loop(builder, vec: ir.VectorType, size: int, count, step) -> None:
    """Call ``step(q, load, store)`` for q = 0, lanes, 2*lanes, ... below ``count`` (an i64 number
    of scalars): whole vectors in a loop, then the remainder once with masked access.

    ``load(pointer, k=0, per=1)`` and ``store(value, pointer, k=0, per=1)`` access the vector at a
    vector pointer; in the remainder their lanes are limited to the ``rest*per - k*lanes`` scalars
    left, for a step that moves ``per`` vectors per unit of q (``k`` the one it accesses).
    """
    lanes = vec.count
    full = builder.sdiv(count, ir.Constant(I64, lanes))
    with cgutils.for_range(builder, full) as loop:
        step(builder.mul(loop.index, ir.Constant(I64, lanes)),
             lambda pointer, k=0, per=1: builder.load(pointer, align=size),
             lambda value, pointer, k=0, per=1: builder.store(value, pointer, align=size))
    done = builder.mul(full, ir.Constant(I64, lanes))
    rest = builder.trunc(builder.sub(count, done), I32)
    with builder.if_then(builder.icmp_signed(">", rest, ir.Constant(I32, 0))):
        def mask(k, per):
            return tail_mask(builder, lanes, builder.sub(builder.mul(rest, ir.Constant(I32, per)),
                                                         ir.Constant(I32, k * lanes)))

        step(done, lambda pointer, k=0, per=1: masked_load(builder, vec, size, pointer, mask(k, per)),
             lambda value, pointer, k=0, per=1: masked_store(builder, vec, size, value, pointer, mask(k, per)))


def switch(builder, value, keys, emit, name: str) -> None:
    """Branch on ``value`` (an LLVM integer) to the code ``emit(key)`` generates for each of the
    constant ``keys`` (other values do nothing), then continue after it: one compiled kernel with
    each variant fully unrolled, picked at run time."""
    done = builder.append_basic_block(f"{name}.done")
    branch = builder.switch(value, done)
    for key in keys:
        case = builder.append_basic_block(f"{name}.{key}")
        branch.add_case(ir.Constant(value.type, key), case)
        builder.position_at_end(case)
        emit(key)
        builder.branch(done)
    builder.position_at_end(done)


def _suffix(vec: ir.VectorType, size: int) -> str:
    return f"v{vec.count}f{8 * size}.p0"


def phases(m: int, merge: bool, first_only: bool = False):
    """An intrinsic between a row and its m phases, with vector shuffles (``m`` 64-byte loads per
    ``m`` stores, the tail masked), where scalar loops moved one element at a time. Offsets are
    flat, 6-tuples of which the first m (phases) or the first (the row) are used:

    * split (``merge`` False), ``(dst, d_offs, src, s_offs, count, lo, hi)``:
      ``dst[d_offs[q] + j] = src[s_offs[0] + e]`` for the row element ``e = j*m + q`` in the window
      ``lo <= e < hi``, zero outside it, where the row is not read (a padded edge, or a row
      beyond the array, in the same pass as the rest); ``first_only``: phase 0 alone (every m-th
      element: a strided line of im2col);
    * merge, ``(dst, d_offs, src, s_offs, count)``: ``dst[d_offs[0] + j*m + q] = src[s_offs[q] + j]``;

    for q < m, j < count. Complex elements move as pairs of reals.
    """

    def make_codegen(dst, src):
        def codegen(context, builder, signature, args):
            dst_v, d_offs_v, src_v, s_offs_v, count_v = args[:5]
            scalar, size, lanes, vec, pair = real_vector(context, dst.dtype)
            dst_p, src_p = (data(context, builder, ty, v, scalar) for ty, v in ((dst, dst_v), (src, src_v)))
            scale = ir.Constant(I64, pair)
            phase_offs = [builder.mul(builder.extract_value(s_offs_v if merge else d_offs_v, q), scale)
                          for q in range(m)]
            row_off = builder.mul(builder.extract_value(d_offs_v if merge else s_offs_v, 0), scale)
            # float f of element e of the row (e = j*m + q) <-> float j*pair + f of phase q; in the m
            # row vectors of a step, row float r is phase vector q's float
            row_to_phase = [((r // pair) % m, (r // pair) // m * pair + r % pair) for r in range(m * lanes)]

            def pick(vectors, sources):
                """A vector of the ``(vector, lane)`` sources: pairs of inputs concatenated, then picked."""
                joined = [builder.shuffle_vector(vectors[2 * a], vectors[2 * a + 1],
                                                 ir.Constant(ir.VectorType(I32, 2 * lanes), list(range(2 * lanes))))
                          for a in range(m // 2)]
                flat = [(v // 2, (v % 2) * lanes + lane) for v, lane in sources]
                if m == 2:
                    return builder.shuffle_vector(joined[0], joined[0], ir.Constant(
                        ir.VectorType(I32, lanes), [lane for _, lane in flat]))
                return builder.shuffle_vector(joined[0], joined[1], ir.Constant(
                    ir.VectorType(I32, lanes), [half * 2 * lanes + lane for half, lane in flat]))

            def shuffled(values):
                if merge:  # row vector i from the phases
                    return [pick(values, row_to_phase[i * lanes:(i + 1) * lanes]) for i in range(m)]
                to_row = {phase_float: r for r, phase_float in enumerate(row_to_phase)}
                return [pick(values, [divmod(to_row[(q, f)], lanes) for f in range(lanes)]) for q in range(m)]

            def address(pointer, offset):
                return vector_at(builder, vec, pointer, offset)

            if not merge:  # the window, in floats of the row
                lo_f, hi_f = (builder.trunc(builder.mul(v, scale), I32) for v in args[5:7])

                def windowed(q):  # loads of the row's vector i, masked to the window
                    def load_row(pointer, i, per):
                        first = builder.add(builder.mul(q, ir.Constant(I64, m)), ir.Constant(I64, i * lanes))
                        return masked_load(builder, vec, size, pointer, window_mask(builder, lanes, first, lo_f, hi_f))
                    return load_row

            def step(q, load, store):  # q: floats of each phase; the row moves m times as many
                row = builder.add(row_off, builder.mul(q, ir.Constant(I64, m)))
                row_side = [(address(dst_p if merge else src_p, builder.add(row, ir.Constant(I64, i * lanes))), i, m)
                            for i in range(m)]
                phase_side = [(address(src_p if merge else dst_p, builder.add(off, q)), 0, 1) for off in phase_offs]
                sources, targets = (phase_side, row_side) if merge else (row_side, phase_side)
                values = [(load if merge else windowed(q))(*source) for source in sources]
                for value, target in zip(shuffled(values), targets[:1] if first_only else targets):
                    store(value, *target)

            vector_loop(builder, vec, size, builder.mul(count_v, scale), step)
            return context.get_dummy_value()

        return codegen

    if merge:
        @intrinsic
        def row_phases(typingctx, dst, d_offs, src, s_offs, count):
            return types.void(dst, d_offs, src, s_offs, count), make_codegen(dst, src)
    else:
        @intrinsic
        def row_phases(typingctx, dst, d_offs, src, s_offs, count, lo, hi):
            return types.void(dst, d_offs, src, s_offs, count, lo, hi), make_codegen(dst, src)

    return row_phases


split_2, split_4, merge_2, merge_4 = phases(2, False), phases(4, False), phases(2, True), phases(4, True)
every_2nd = phases(2, False, first_only=True)


@intrinsic
def window_copy(typingctx, dst, d0, src, s0, lo, hi, count):
    """``dst[d0 + q] = src[s0 + q]`` for ``lo <= q < hi``, zero for the other ``q < count`` (flat
    arrays; src is read only inside the window, so ``s0 + q`` may leave the array outside it): a
    padded row of im2col in one masked load and store per vector, where three scalar-tailed
    loops (zeros, copy, zeros) spent most of their time outside their vector parts on short rows."""
    def codegen(context, builder, signature, args):
        dst_v, d0_v, src_v, s0_v, lo_v, hi_v, count_v = args
        scalar, size, lanes, vec, pair = real_vector(context, dst.dtype)
        dst_p, src_p = (data(context, builder, ty, v, scalar) for ty, v in ((dst, dst_v), (src, src_v)))
        scale = ir.Constant(I64, pair)
        d0_s, s0_s = builder.mul(d0_v, scale), builder.mul(s0_v, scale)
        lo_s, hi_s = (builder.trunc(builder.mul(v, scale), I32) for v in (lo_v, hi_v))

        def step(q, load, store):
            source = vector_at(builder, vec, src_p, builder.add(s0_s, q))
            store(masked_load(builder, vec, size, source, window_mask(builder, lanes, q, lo_s, hi_s)),
                  vector_at(builder, vec, dst_p, builder.add(d0_s, q)))

        vector_loop(builder, vec, size, builder.mul(count_v, scale), step)
        return context.get_dummy_value()

    return types.void(dst, types.int64, src, types.int64, types.int64, types.int64, types.int64), codegen


def _transposed(builder, rows: list) -> list:
    """The lanes x lanes matrix of vectors ``rows`` transposed: log2(lanes) stages, each swapping the
    off-diagonal h x h blocks of every 2h x 2h block with one two-vector shuffle per vector."""
    lanes = len(rows)
    h = lanes // 2
    while h:
        low = ir.Constant(ir.VectorType(I32, lanes), [j if j // h % 2 == 0 else lanes + j - h for j in range(lanes)])
        high = ir.Constant(ir.VectorType(I32, lanes), [j + h if j // h % 2 == 0 else lanes + j for j in range(lanes)])
        swapped = list(rows)
        for i in range(lanes):
            if i // h % 2 == 0:
                swapped[i] = builder.shuffle_vector(rows[i], rows[i + h], low)
                swapped[i + h] = builder.shuffle_vector(rows[i], rows[i + h], high)
        rows, h = swapped, h // 2
    return rows


def _square_columns(context, builder, dst, src_type, src_v, s0_v, sp_v, rows_v, cols_v):
    """The columns of a vector square of src read as rows ``s0 + r*s_pitch`` (r < rows, zero
    beyond; the first ``cols`` elements of each), transposed in registers; and the vector pieces."""
    scalar, size, lanes, vec = vector(context, dst.dtype)
    src_p = data(context, builder, src_type, src_v, scalar)
    rows_v, cols_v = (builder.trunc(v, I32) for v in (rows_v, cols_v))
    cols_mask = tail_mask(builder, lanes, cols_v)
    none = ir.Constant(cols_mask.type, None)
    loaded = [masked_load(builder, vec, size, vector_at(builder, vec, src_p, builder.add(s0_v, builder.mul(
        sp_v, ir.Constant(I64, r)))), builder.select(builder.icmp_signed(">", rows_v, ir.Constant(I32, r)), cols_mask, none))
        for r in range(lanes)]
    return _transposed(builder, loaded), (scalar, size, lanes, vec), cols_v


@intrinsic
def transpose(typingctx, dst, d0, d_pitch, src, s0, s_pitch, rows, cols, width):
    """``dst[d0 + c*d_pitch + r] = src[s0 + r*s_pitch + c]`` for ``c < cols``, ``r < width`` (flat
    arrays, ``rows``, ``cols``, ``width`` at most one vector's lanes), rows ``r >= rows`` reading as
    zero: one vector's square in lanes masked loads, in-register shuffles and masked stores, where
    a scalar loop moved one element at a time between strided rows (packing channels into blocks
    and back). Only rows below ``rows`` and columns below ``cols`` are read."""
    def codegen(context, builder, signature, args):
        dst_v, d0_v, dp_v, src_v, s0_v, sp_v, rows_v, cols_v, width_v = args
        columns, (scalar, size, lanes, vec), cols32 = _square_columns(context, builder, dst, src, src_v, s0_v, sp_v,
                                                                       rows_v, cols_v)
        dst_p = data(context, builder, dst, dst_v, scalar)
        width_mask = tail_mask(builder, lanes, builder.trunc(width_v, I32))
        none = ir.Constant(width_mask.type, None)
        for c, column in enumerate(columns):
            at = vector_at(builder, vec, dst_p, builder.add(d0_v, builder.mul(dp_v, ir.Constant(I64, c))))
            masked_store(builder, vec, size, column, at, builder.select(
                builder.icmp_signed(">", cols32, ir.Constant(I32, c)), width_mask, none))
        return context.get_dummy_value()

    return types.void(dst, types.int64, types.int64, src, types.int64, types.int64, types.int64, types.int64,
                      types.int64), codegen


#: Element steps :func:`transpose_spread` writes columns with.
SPREAD_STEPS = (1, 2, 4, 8)


@intrinsic
def transpose_spread(typingctx, dst, d0, offsets, o0, step, src, s0, s_pitch, rows, cols, width):
    """``dst[d0 + offsets[o0 + c] + r*step] = src[s0 + r*s_pitch + c]`` for ``c < cols``, ``r <
    width``: :func:`transpose` whose columns go to places of their own (``offsets``), their
    elements ``step`` apart (one of :data:`SPREAD_STEPS`; other steps store nothing). A column
    spreads over ``step`` vectors, each a shuffle and a store masked to every step-th lane, so
    that interleaved outputs (the phases of a transposed convolution) are written in place,
    each by its own columns, without a scatter."""
    def codegen(context, builder, signature, args):
        dst_v, d0_v, offs_v, o0_v, step_v, src_v, s0_v, sp_v, rows_v, cols_v, width_v = args
        columns, (scalar, size, lanes, vec), cols32 = _square_columns(context, builder, dst, src, src_v, s0_v, sp_v,
                                                                       rows_v, cols_v)
        dst_p = data(context, builder, dst, dst_v, scalar)
        offs_p = cgutils.create_struct_proxy(offsets)(context, builder, value=offs_v).data
        width32 = builder.trunc(width_v, I32)

        def spread(step):
            per = lanes // step  # pixels per stored vector
            for c, column in enumerate(columns):
                with builder.if_then(builder.icmp_signed(">", cols32, ir.Constant(I32, c))):
                    start = builder.add(d0_v, builder.load(builder.gep(offs_p, [builder.add(o0_v, ir.Constant(I64, c))])))
                    for part in range(step):
                        picked = builder.shuffle_vector(column, ir.Constant(vec, ir.Undefined), ir.Constant(
                            ir.VectorType(I32, lanes), [part * per + lane // step for lane in range(lanes)]))
                        pixels = ir.Constant(ir.VectorType(I32, lanes), [part * per + lane // step for lane in range(lanes)])
                        mask = builder.and_(builder.icmp_signed("<", pixels, _splat(builder, lanes, width32)),
                                            ir.Constant(ir.VectorType(ir.IntType(1), lanes),
                                                        [lane % step == 0 for lane in range(lanes)]))
                        at = vector_at(builder, vec, dst_p, builder.add(start, ir.Constant(I64, part * lanes)))
                        masked_store(builder, vec, size, picked, at, mask)

        switch(builder, step_v, SPREAD_STEPS, spread, "spread.step")
        return context.get_dummy_value()

    return types.void(dst, types.int64, offsets, types.int64, types.int64, src, types.int64, types.int64,
                      types.int64, types.int64, types.int64), codegen
