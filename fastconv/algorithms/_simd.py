"""LLVM building blocks for the numba intrinsics of the compiled kernels: 64-byte vectors of an
array's scalars and masked access to the last, partial vector of a run (a scalar remainder
loop costs as much as the vector loop on the short rows of small maps).

numba's disk cache keys a kernel on its own source file: after editing this module, delete the
cached kernels (``__pycache__/*.nbi``, ``*.nbc``) of the modules that use it."""

from __future__ import annotations

from llvmlite import ir
from numba.core import cgutils

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
