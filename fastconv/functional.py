"""torch.nn.functional's convolutions over NumPy arrays: conv1d/2d/3d, conv_transpose1d/2d/3d,
and the N-d ``conv`` / ``conv_transpose`` they are thin wrappers of."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

from . import _args, _docs, _validated
from ._dispatch import run
from ._errors import CallContext
from ._geometry import ConvGeometry

__all__ = ["conv", "conv1d", "conv2d", "conv3d", "conv_transpose", "conv_transpose1d", "conv_transpose2d",
           "conv_transpose3d"]

_PAD_MODES = {"reflect": "reflect", "replicate": "edge", "circular": "wrap"}


def prepare(function: str, nd: int | None, input, weight, bias, *, input_label: str = "input"):
    """Arrays, dtype and rank checks shared by every public entry point.

    Returns ``(x, w, b, ctx, unbatched)`` with x batched ``(N, C, *spatial)``.
    """
    ctx = CallContext(function, input_label=input_label)
    x = _args.as_array(input, input_label, ctx)
    w = _args.as_array(weight, "weight", ctx)
    b = None if bias is None else _args.as_array(bias, "bias", ctx)
    ctx = ctx.with_shapes(x.shape, w.shape)
    _args.common_dtype(ctx, **{input_label: x, "weight": w, "bias": b})
    if nd is None:
        nd = w.ndim - 2
        if nd < 1:
            raise ctx.value_error("weight must have at least 3 dimensions (out_channels, in_channels/groups, *kernel)")
    elif w.ndim != nd + 2:
        raise ctx.value_error(f"expected a {nd + 2}-D weight (out_channels, in_channels/groups, *kernel), got {w.ndim}-D")
    if x.ndim not in (nd + 1, nd + 2):
        raise ctx.value_error(f"expected {nd + 1}-D (unbatched) or {nd + 2}-D (batched) {input_label}, got {x.ndim}-D")
    unbatched = x.ndim == nd + 1
    return (x[None] if unbatched else x), w, b, ctx, unbatched


def check_bias(b: np.ndarray | None, channels: int, ctx: CallContext) -> None:
    if b is not None and b.shape != (channels,):
        raise ctx.value_error(f"bias has shape {b.shape}; expected ({channels},), one value per output channel")


def _pad_by_mode(x: np.ndarray, geom: ConvGeometry, mode: str, ctx: CallContext):
    """Apply non-zero padding explicitly, as torch's modules do, and drop it from the geometry."""
    if mode not in _PAD_MODES:
        raise ctx.value_error(f"padding_mode={mode!r} is not one of 'zeros', 'reflect', 'replicate', 'circular'")
    for n, (lo, hi) in zip(geom.in_size, geom.padding):
        limit = n - 1 if mode == "reflect" else n if mode == "circular" else None
        if limit is not None and max(lo, hi) > limit:
            raise ctx.value_error(
                f"padding_mode={mode!r} needs padding {'<' if mode == 'reflect' else '<='} the input size "
                f"{geom.in_size} in every dimension, got padding {geom.padding}"
            )
    padded = np.pad(x, [(0, 0), (0, 0), *geom.padding], mode=_PAD_MODES[mode])
    flat = ConvGeometry(geom.batch, geom.in_channels, geom.out_channels, geom.groups, geom.padded_size,
                        geom.kernel, geom.stride, geom.dilation, ((0, 0),) * geom.nd)
    return padded, flat


def _is_dask(value) -> bool:
    # checked without importing dask, which is an optional extra
    return type(value).__module__.startswith("dask.")


def _checked(function, nd, input, weight, bias, arguments, build):
    """``(x, w, b, geom, ctx, unbatched)`` of a call: :func:`prepare`'s checks and
    ``build(x, w, b, ctx)``'s geometry, or their outcome for an identical earlier call
    (``_validated``)."""
    call = _validated.key(function, (input, weight, bias), (nd, *arguments))
    known = _validated.recall(call)
    if known:
        geom, ctx, unbatched = known
        return (input[None] if unbatched else input), weight, bias, geom, ctx, unbatched
    x, w, b, ctx, unbatched = prepare(function, nd, input, weight, bias)
    geom = build(x, w, b, ctx)
    _validated.remember(call, (geom, ctx, unbatched))
    return x, w, b, geom, ctx, unbatched


def _conv(function, nd, input, weight, bias, stride, padding, dilation, groups, padding_mode, algorithm):
    if _is_dask(input):
        from . import dask
        return dask.conv(function, nd, input, weight, bias, stride, padding, dilation, groups, padding_mode,
                         algorithm)

    def build(x, w, b, ctx):
        geom = ConvGeometry.for_conv(x.shape, w.shape, stride, padding, dilation, groups, ctx)
        check_bias(b, geom.out_channels, ctx)
        return geom

    x, w, b, geom, ctx, unbatched = _checked(function, nd, input, weight, bias,
                                             (stride, padding, dilation, groups), build)
    if padding_mode != "zeros":
        x, geom = _pad_by_mode(x, geom, padding_mode, ctx)
    y = run("forward", geom, x, w, ctx, algorithm=algorithm, bias=b)
    return y[0] if unbatched else y


def _conv_transpose(function, nd, input, weight, bias, stride, padding, output_padding, groups, dilation,
                    output_size, algorithm):
    if _is_dask(input):
        from . import dask
        return dask.conv_transpose(function, nd, input, weight, bias, stride, padding, output_padding, groups,
                                   dilation, output_size, algorithm)

    def build(x, w, b, ctx):
        geom = ConvGeometry.for_conv_transpose(x.shape, w.shape, stride, padding, output_padding, dilation, groups,
                                               ctx, output_size=output_size)
        check_bias(b, geom.in_channels, ctx)
        return geom

    x, w, b, geom, ctx, unbatched = _checked(function, nd, input, weight, bias,
                                             (stride, padding, output_padding, groups, dilation, output_size), build)
    y = run("input_grad", geom, x, w, ctx, algorithm=algorithm, bias=b)
    return y[0] if unbatched else y


def _document(function, nd, transposed: bool):
    name = function.__name__
    dims = f"{nd}-D" if nd else "N-D"
    torch_name = f"torch.nn.functional.{name}" if nd else f"torch.nn.functional.{'conv_transpose' if transposed else 'conv'}{{1,2,3}}d"
    k = nd or 2
    x_shape, w_shape = (1, 1, *(4,) * k), (1, 1, *(3,) * k)
    out = tuple(6 if transposed else 2 for _ in range(k))
    what = "transposed convolution (the gradient of conv w.r.t. its input)" if transposed else "convolution (cross-correlation)"
    function.__doc__ = f"""{dims} {what}, as ``{torch_name}``.

Parameters
----------
{_docs.TRANSPOSE_PARAMS if transposed else _docs.CONV_PARAMS}

Returns
-------
numpy.ndarray
    ``(N, C_out, *out)`` (unbatched input gives ``(C_out, *out)``) in the input's dtype, where
    {_docs.TRANSPOSE_SHAPE if transposed else _docs.CONV_SHAPE}

Raises
------
ValueError
    Shapes or parameters that do not fit (the message names the parameter and a fix).
TypeError
    Non-floating dtypes, mixed dtypes, or parameters of the wrong type.

Examples
--------
>>> import numpy as np
>>> from fastconv.functional import {name}
>>> x = np.ones({x_shape}, dtype=np.float32)
>>> w = np.ones({w_shape}, dtype=np.float32)
>>> y = {name}(x, w)
>>> y.shape
{(1, 1, *out)}
>>> float(y.max())
{float(3 ** k)}
"""
    return function


def conv(input: ArrayLike, weight: ArrayLike, bias: ArrayLike | None = None, stride=1, padding=0, dilation=1,
         groups: int = 1, *, padding_mode: str = "zeros", algorithm: str | None = None) -> NDArray:
    return _conv("conv", None, input, weight, bias, stride, padding, dilation, groups, padding_mode, algorithm)


def conv1d(input: ArrayLike, weight: ArrayLike, bias: ArrayLike | None = None, stride=1, padding=0, dilation=1,
           groups: int = 1, *, padding_mode: str = "zeros", algorithm: str | None = None) -> NDArray:
    return _conv("conv1d", 1, input, weight, bias, stride, padding, dilation, groups, padding_mode, algorithm)


def conv2d(input: ArrayLike, weight: ArrayLike, bias: ArrayLike | None = None, stride=1, padding=0, dilation=1,
           groups: int = 1, *, padding_mode: str = "zeros", algorithm: str | None = None) -> NDArray:
    return _conv("conv2d", 2, input, weight, bias, stride, padding, dilation, groups, padding_mode, algorithm)


def conv3d(input: ArrayLike, weight: ArrayLike, bias: ArrayLike | None = None, stride=1, padding=0, dilation=1,
           groups: int = 1, *, padding_mode: str = "zeros", algorithm: str | None = None) -> NDArray:
    return _conv("conv3d", 3, input, weight, bias, stride, padding, dilation, groups, padding_mode, algorithm)


def conv_transpose(input: ArrayLike, weight: ArrayLike, bias: ArrayLike | None = None, stride=1, padding=0,
                   output_padding=0, groups: int = 1, dilation=1, *, output_size=None,
                   algorithm: str | None = None) -> NDArray:
    return _conv_transpose("conv_transpose", None, input, weight, bias, stride, padding, output_padding, groups,
                           dilation, output_size, algorithm)


def conv_transpose1d(input: ArrayLike, weight: ArrayLike, bias: ArrayLike | None = None, stride=1, padding=0,
                     output_padding=0, groups: int = 1, dilation=1, *, output_size=None,
                     algorithm: str | None = None) -> NDArray:
    return _conv_transpose("conv_transpose1d", 1, input, weight, bias, stride, padding, output_padding, groups,
                           dilation, output_size, algorithm)


def conv_transpose2d(input: ArrayLike, weight: ArrayLike, bias: ArrayLike | None = None, stride=1, padding=0,
                     output_padding=0, groups: int = 1, dilation=1, *, output_size=None,
                     algorithm: str | None = None) -> NDArray:
    return _conv_transpose("conv_transpose2d", 2, input, weight, bias, stride, padding, output_padding, groups,
                           dilation, output_size, algorithm)


def conv_transpose3d(input: ArrayLike, weight: ArrayLike, bias: ArrayLike | None = None, stride=1, padding=0,
                     output_padding=0, groups: int = 1, dilation=1, *, output_size=None,
                     algorithm: str | None = None) -> NDArray:
    return _conv_transpose("conv_transpose3d", 3, input, weight, bias, stride, padding, output_padding, groups,
                           dilation, output_size, algorithm)


for _f, _nd in ((conv, None), (conv1d, 1), (conv2d, 2), (conv3d, 3)):
    _document(_f, _nd, transposed=False)
for _f, _nd in ((conv_transpose, None), (conv_transpose1d, 1), (conv_transpose2d, 2), (conv_transpose3d, 3)):
    _document(_f, _nd, transposed=True)
del _f, _nd
