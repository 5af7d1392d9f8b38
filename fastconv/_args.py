"""Normalisation of the user's arguments: arrays, dtypes, int-or-tuple parameters, padding."""

from __future__ import annotations

import numbers
from collections.abc import Sequence

import numpy as np

from ._errors import CallContext

#: dtype the user passes -> dtype the arithmetic runs in (float16 is computed in float32, as torch on CPU).
COMPUTE_DTYPES = {
    np.dtype(np.float16): np.dtype(np.float32),
    np.dtype(np.float32): np.dtype(np.float32),
    np.dtype(np.float64): np.dtype(np.float64),
    np.dtype(np.complex64): np.dtype(np.complex64),
    np.dtype(np.complex128): np.dtype(np.complex128),
}
_SUPPORTED = "float16, float32, float64, complex64 or complex128"


def as_array(value, name: str, ctx: CallContext) -> np.ndarray:
    """Any array-like -> ndarray (never copied unless needed, never modified later)."""
    if isinstance(value, np.ndarray):
        array = value
    else:
        if value is None or isinstance(value, (str, bytes)):
            raise ctx.type_error(f"{name} must be an array of {_SUPPORTED}, got {type(value).__name__}")
        try:
            array = np.asarray(value)
        except (TypeError, ValueError) as exc:
            raise ctx.type_error(f"{name} could not be converted to an array ({exc})") from None
    if array.dtype not in COMPUTE_DTYPES:
        raise ctx.type_error(
            f"{name} has dtype {array.dtype}; convolution needs {_SUPPORTED} "
            f"(convert with {name}.astype(np.float32))"
        )
    return array


def common_dtype(ctx: CallContext, **arrays: np.ndarray | None) -> np.dtype:
    """The one dtype shared by every given array; torch refuses to mix them, and so do we."""
    named = [(name, a.dtype) for name, a in arrays.items() if a is not None]
    first_name, dtype = named[0]
    for name, other in named[1:]:
        if other != dtype:
            raise ctx.type_error(
                f"{first_name} has dtype {dtype} but {name} has dtype {other}; "
                f"convert them to one dtype (e.g. {name}.astype({first_name}.dtype))"
            )
    return dtype


def _is_int(value) -> bool:
    return isinstance(value, (numbers.Integral, np.integer)) and not isinstance(value, (bool, np.bool_))


def _as_sequence(value) -> Sequence | None:
    if isinstance(value, np.ndarray):
        return value.tolist() if value.ndim == 1 else None
    if isinstance(value, (tuple, list)):
        return value
    return None


def int_tuple(value, nd: int, name: str, ctx: CallContext, minimum: int) -> tuple[int, ...]:
    """An int, or a sequence of 1 or `nd` ints (torch broadcasts a 1-sequence), each >= minimum."""
    seq = _as_sequence(value)
    if _is_int(value):
        values = (int(value),) * nd
    elif seq is not None and all(_is_int(v) for v in seq):
        if len(seq) == 1:
            values = (int(seq[0]),) * nd
        elif len(seq) == nd:
            values = tuple(int(v) for v in seq)
        else:
            raise ctx.value_error(
                f"{name}={value!r} has {len(seq)} values; give a single int or {nd} values, "
                f"one per spatial dimension"
            )
    else:
        raise ctx.type_error(f"{name} must be an int or a tuple of {nd} ints, got {value!r}")
    if any(v < minimum for v in values):
        raise ctx.value_error(f"{name}={value!r} must be >= {minimum} in every dimension")
    return values


def padding_pairs(
    value,
    nd: int,
    ctx: CallContext,
    *,
    kernel: tuple[int, ...],
    stride: tuple[int, ...],
    dilation: tuple[int, ...],
    allow_strings: bool,
) -> tuple[tuple[int, int], ...]:
    """torch's padding (int, tuple, 'same', 'valid') plus per-side pairs ((lo, hi), ...) -> (lo, hi) per dim.

    'same' splits the total dilation*(kernel-1) as torch does: the odd extra goes to the high side.
    """
    if isinstance(value, str):
        if not allow_strings:
            raise ctx.type_error(
                f"padding={value!r}: string padding is only defined for convolution, not for "
                f"transposed convolution or gradients; give an int or a tuple of ints"
            )
        if value == "valid":
            return ((0, 0),) * nd
        if value == "same":
            if any(s != 1 for s in stride):
                raise ctx.value_error(
                    f"padding='same' is not supported for strided convolutions (stride={stride}); "
                    f"use stride=1 or give explicit padding"
                )
            totals = [d * (k - 1) for d, k in zip(dilation, kernel)]
            return tuple((t // 2, t - t // 2) for t in totals)
        raise ctx.value_error(f"invalid padding string {value!r}; valid strings are 'same' and 'valid'")
    seq = _as_sequence(value)
    if seq is not None and len(seq) == nd and all(_as_sequence(p) is not None for p in seq):
        pairs = []
        for p in seq:
            pair = _as_sequence(p)
            if len(pair) != 2 or not all(_is_int(v) for v in pair):
                raise ctx.type_error(f"padding={value!r}: each per-side entry must be a pair of ints (lo, hi)")
            pairs.append((int(pair[0]), int(pair[1])))
        if any(v < 0 for pair in pairs for v in pair):
            raise ctx.value_error(f"padding={value!r}: negative padding is not supported")
        return tuple(pairs)
    sym = int_tuple(value, nd, "padding", ctx, minimum=0)
    return tuple((p, p) for p in sym)


def check_groups(value, ctx: CallContext) -> int:
    if not _is_int(value):
        raise ctx.type_error(f"groups must be an int, got {value!r}")
    if value < 1:
        raise ctx.value_error(f"groups={value} must be a positive integer")
    return int(value)
