"""LLVM building blocks for the numba intrinsics of the compiled kernels: 64-byte vectors of an
array's scalars, masked access to the last, partial vector of a run (a scalar remainder loop
costs as much as the vector loop on the short rows of small maps), and the split of a row into
its stride phases and back (Winograd tiles, strided direct convolutions).

numba's disk cache keys a kernel on its own source file: after editing this module, delete the
cached kernels (``__pycache__/*.nbi``, ``*.nbc``) of the modules that use it."""

from __future__ import annotations

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

I32, I64 = ir.IntType(32), ir.IntType(64)


def vector(context, scalar_type) -> tuple[ir.Type, int, int, ir.VectorType]:
    """(scalar, bytes per scalar, lanes, vector) of 64-byte vectors of ``scalar_type``."""
    scalar = context.get_value_type(scalar_type)
    size = context.get_abi_sizeof(scalar)
    lanes = 64 // size
    return scalar, size, lanes, ir.VectorType(scalar, lanes)


def tail_mask(builder, lanes: int, rest):
    """The lanes below ``rest`` (an i32; none when it is negative, all when it exceeds the lanes)."""
    lane_type = ir.VectorType(I32, lanes)
    splat = builder.shuffle_vector(builder.insert_element(ir.Constant(lane_type, ir.Undefined), rest, ir.Constant(I32, 0)),
                                   ir.Constant(lane_type, ir.Undefined), ir.Constant(lane_type, None))
    return builder.icmp_signed("<", ir.Constant(lane_type, list(range(lanes))), splat)


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


def _suffix(vec: ir.VectorType, size: int) -> str:
    return f"v{vec.count}f{8 * size}.p0"


def phases(m: int, merge: bool):
    """An intrinsic ``(dst, d_offs, src, s_offs, count)`` between a row and its m phases, with
    vector shuffles (``m`` 64-byte loads per ``m`` stores, the tail masked), where scalar loops
    moved one element at a time. Offsets are flat, 6-tuples of which the first m (phases) or the
    first (the row) are used:

    * split (``merge`` False): ``dst[d_offs[q] + j] = src[s_offs[0] + j*m + q]``;
    * merge: ``dst[d_offs[0] + j*m + q] = src[s_offs[q] + j]``; for q < m, j < count.

    Complex elements move as pairs of reals.
    """

    @intrinsic
    def row_phases(typingctx, dst, d_offs, src, s_offs, count):
        def codegen(context, builder, signature, args):
            dst_v, d_offs_v, src_v, s_offs_v, count_v = args
            pair = 2 if isinstance(dst.dtype, types.Complex) else 1
            scalar, size, lanes, vec = vector(context, dst.dtype.underlying_float if pair == 2 else dst.dtype)
            i64, i32 = I64, I32
            per_step = lanes // pair  # tiles (elements of one phase) per vector
            dst_p, src_p = (builder.bitcast(cgutils.create_struct_proxy(ty)(context, builder, value=v).data,
                                            scalar.as_pointer()) for ty, v in ((dst, dst_v), (src, src_v)))
            scale = ir.Constant(i64, pair)
            phase_offs = [builder.mul(builder.extract_value(s_offs_v if merge else d_offs_v, q), scale)
                          for q in range(m)]
            row_off = builder.mul(builder.extract_value(d_offs_v if merge else s_offs_v, 0), scale)
            # float f of element e of the row (e = j*m + q) <-> float j*pair + f of phase q; in the m
            # row vectors of a step, row float r is phase vector q's float
            row_to_phase = [((r // pair) % m, (r // pair) // m * pair + r % pair) for r in range(m * lanes)]

            def pick(vectors, sources):
                """A vector of the ``(vector, lane)`` sources: pairs of inputs concatenated, then picked."""
                joined = [builder.shuffle_vector(vectors[2 * a], vectors[2 * a + 1],
                                                 ir.Constant(ir.VectorType(i32, 2 * lanes), list(range(2 * lanes))))
                          for a in range(m // 2)]
                flat = [(v // 2, (v % 2) * lanes + lane) for v, lane in sources]
                if m == 2:
                    return builder.shuffle_vector(joined[0], joined[0], ir.Constant(
                        ir.VectorType(i32, lanes), [lane for _, lane in flat]))
                return builder.shuffle_vector(joined[0], joined[1], ir.Constant(
                    ir.VectorType(i32, lanes), [half * 2 * lanes + lane for half, lane in flat]))

            def shuffled(values):
                if merge:  # row vector i from the phases
                    return [pick(values, row_to_phase[i * lanes:(i + 1) * lanes]) for i in range(m)]
                to_row = {phase_float: r for r, phase_float in enumerate(row_to_phase)}
                return [pick(values, [divmod(to_row[(q, f)], lanes) for f in range(lanes)]) for q in range(m)]

            def address(pointer, offset):
                return builder.bitcast(builder.gep(pointer, [offset]), vec.as_pointer())

            def step(j, load, store):
                row = builder.add(row_off, builder.mul(j, ir.Constant(i64, m * pair)))
                row_addresses = [address(dst_p if merge else src_p, builder.add(row, ir.Constant(i64, i * lanes)))
                                 for i in range(m)]
                phase_addresses = [address(src_p if merge else dst_p, builder.add(off, builder.mul(j, scale)))
                                   for off in phase_offs]
                sources, targets = (phase_addresses, row_addresses) if merge else (row_addresses, phase_addresses)
                values = [load(ptr, i) for i, ptr in enumerate(sources)]
                for i, (value, ptr) in enumerate(zip(shuffled(values), targets)):
                    store(value, ptr, i)

            full = builder.sdiv(count_v, ir.Constant(i64, per_step))
            with cgutils.for_range(builder, full) as loop:
                step(builder.mul(loop.index, ir.Constant(i64, per_step)), lambda ptr, i: builder.load(ptr, align=size),
                     lambda value, ptr, i: builder.store(value, ptr, align=size))
            done = builder.mul(full, ir.Constant(i64, per_step))
            rest = builder.trunc(builder.mul(builder.sub(count_v, done), scale), i32)  # floats left per phase
            with builder.if_then(builder.icmp_signed(">", rest, ir.Constant(i32, 0))):
                row_masks = [tail_mask(builder, lanes, builder.sub(builder.mul(rest, ir.Constant(i32, m)),
                                                                        ir.Constant(i32, i * lanes)))
                             for i in range(m)]
                phase_mask = tail_mask(builder, lanes, rest)
                load_masks, store_masks = (([phase_mask] * m, row_masks) if merge else (row_masks, [phase_mask] * m))
                step(done, lambda ptr, i: masked_load(builder, vec, size, ptr, load_masks[i]),
                     lambda value, ptr, i: masked_store(builder, vec, size, value, ptr, store_masks[i]))
            return context.get_dummy_value()

        return types.void(dst, d_offs, src, s_offs, count), codegen

    return row_phases


split_2, split_4, merge_2, merge_4 = phases(2, False), phases(4, False), phases(2, True), phases(4, True)
