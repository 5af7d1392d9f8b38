"""Gradients of convolution, as ``torch.nn.grad``: w.r.t. the input, the weight and the bias.

For complex arrays the gradients are the adjoints (conjugate transposes), as torch's autograd
computes them: ``conv_input`` uses ``conj(weight)`` and ``conv_weight`` uses ``conj(input)``.

The input gradient is a transposed convolution and the weight gradient a convolution
with batch and channels swapped; both go through the planner, so every fast forward
algorithm serves training too.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

from . import _args, _validated
from ._docs import CONV_SHAPE
from ._dispatch import run
from ._errors import CallContext
from ._geometry import ConvGeometry
from .functional import prepare

__all__ = ["conv_input", "conv_weight", "conv_bias", "conv1d_input", "conv1d_weight", "conv2d_input",
           "conv2d_weight", "conv3d_input", "conv3d_weight"]


def _shape(value, name: str, ctx: CallContext) -> tuple[int, ...]:
    try:
        shape = tuple(int(v) for v in value)
    except (TypeError, ValueError):
        raise ctx.type_error(f"{name} must be a sequence of ints, got {value!r}") from None
    if any(v < 0 for v in shape):
        raise ctx.value_error(f"{name}={shape} has a negative size")
    return shape


def _batched(ctx: CallContext, nd: int, grad: np.ndarray) -> None:
    # torch.nn.grad takes batched arrays only
    if grad.ndim != nd + 2:
        raise ctx.value_error(f"expected a {nd + 2}-D batched grad_output (N, C_out, *spatial), got {grad.ndim}-D")


def _input_grad(function, nd, input_size, weight, grad_output, stride, padding, dilation, groups, algorithm):
    call = _validated.key(function, (grad_output, weight), (nd, input_size, stride, padding, dilation, groups))
    known = _validated.recall(call)
    if known:
        (geom, ctx), dy, w = known, grad_output, weight
    else:
        dy, w, _, ctx, unbatched = prepare(function, nd, grad_output, weight, None, input_label="grad_output")
        _batched(ctx, w.ndim - 2, dy[0] if unbatched else dy)
        size = _shape(input_size, "input_size", ctx)
        geom = ConvGeometry.for_gradient(size, w.shape, dy.shape, stride, padding, dilation, groups,
                                         CallContext(function, size, w.shape, input_label="input_size"))
        _validated.remember(call, (geom, ctx))
    return run("input_grad", geom, dy, np.conj(w) if w.dtype.kind == "c" else w, ctx, algorithm=algorithm)


def _weight_grad(function, nd, input, weight_size, grad_output, stride, padding, dilation, groups, algorithm):
    call = _validated.key(function, (input, grad_output), (nd, weight_size, stride, padding, dilation, groups))
    known = _validated.recall(call)
    if known:
        (geom, ctx), x, dy = known, input, grad_output
    else:
        ctx = CallContext(function)
        x = _args.as_array(input, "input", ctx)
        dy = _args.as_array(grad_output, "grad_output", ctx)
        size = _shape(weight_size, "weight_size", ctx)
        ctx = ctx.with_shapes(x.shape, size)
        _args.common_dtype(ctx, input=x, grad_output=dy)
        nd = nd or len(size) - 2
        if len(size) != nd + 2 or nd < 1:
            raise ctx.value_error(f"weight_size must have {nd + 2} entries (out_channels, in_channels/groups, *kernel)")
        _batched(ctx, nd, dy)
        geom = ConvGeometry.for_gradient(x.shape, size, dy.shape, stride, padding, dilation, groups, ctx)
        _validated.remember(call, (geom, ctx))
    return run("weight_grad", geom, np.conj(x) if x.dtype.kind == "c" else x, dy, ctx, algorithm=algorithm)


def conv_bias(grad_output: ArrayLike) -> NDArray:
    """Gradient w.r.t. the bias: ``grad_output`` summed over batch and space, shape ``(C_out,)``.

    Examples
    --------
    >>> import numpy as np
    >>> from fastconv.grad import conv_bias
    >>> conv_bias(np.ones((2, 3, 4, 4), dtype=np.float32))
    array([32., 32., 32.], dtype=float32)
    """
    ctx = CallContext("conv_bias", input_label="grad_output")
    dy = _args.as_array(grad_output, "grad_output", ctx)
    if dy.ndim < 3:
        raise ctx.with_shapes(dy.shape).value_error("expected a batched grad_output (N, C_out, *spatial)")
    compute = _args.COMPUTE_DTYPES[dy.dtype]
    axes = (0, *range(2, dy.ndim))
    return dy.astype(compute, copy=False).sum(axis=axes).astype(dy.dtype)


def _document(function, nd, which: str):
    torch_name = f"torch.nn.grad.{function.__name__}" if nd else f"torch.nn.grad.conv{{1,2,3}}d_{which}"
    k = nd or 2
    first = f"({', '.join(map(str, (1, 1, *(4,) * k)))})"
    if which == "input":
        call = f"{function.__name__}({first}, w, dy)"
        params = """input_size : sequence of int
    Shape of the forward input ``(N, C_in, *spatial)``; it settles the ambiguity of strided sizes.
weight : array_like
    ``(C_out, C_in / groups, *kernel)``.
grad_output : array_like
    ``(N, C_out, *out)``: gradient w.r.t. the forward output, same dtype as ``weight``."""
        returns = "``(N, C_in, *spatial)`` = ``input_size``: the gradient w.r.t. the input (a transposed convolution)."
        expect = (1, 1, *(4,) * k)
    else:
        call = f"{function.__name__}(np.ones({first}, dtype=np.float32), w.shape, dy)"
        params = """input : array_like
    The forward input ``(N, C_in, *spatial)``.
weight_size : sequence of int
    Shape of the weight ``(C_out, C_in / groups, *kernel)``.
grad_output : array_like
    ``(N, C_out, *out)``, same dtype as ``input``."""
        returns = "``weight_size``: the gradient w.r.t. the weight."
        expect = (1, 1, *(3,) * k)
    function.__doc__ = f"""Gradient of the {nd or 'N'}-D convolution w.r.t. its {which}, as ``{torch_name}``.

Parameters
----------
{params}
stride, padding, dilation, groups
    As the forward convolution (padding int, tuple or per-side pairs; strings are refused, as torch).
algorithm : str, keyword-only
    Force an algorithm; default lets the planner choose.

Returns
-------
numpy.ndarray
    {returns}
    The forward output size is {CONV_SHAPE}

Examples
--------
>>> import numpy as np
>>> from fastconv.grad import {function.__name__}
>>> w = np.ones({(1, 1, *(3,) * k)}, dtype=np.float32)
>>> dy = np.ones({(1, 1, *(2,) * k)}, dtype=np.float32)
>>> {call}.shape
{expect}
"""
    return function


def conv_input(input_size, weight: ArrayLike, grad_output: ArrayLike, stride=1, padding=0, dilation=1,
               groups: int = 1, *, algorithm: str | None = None) -> NDArray:
    return _input_grad("conv_input", None, input_size, weight, grad_output, stride, padding, dilation, groups, algorithm)


def conv1d_input(input_size, weight: ArrayLike, grad_output: ArrayLike, stride=1, padding=0, dilation=1,
                 groups: int = 1, *, algorithm: str | None = None) -> NDArray:
    return _input_grad("conv1d_input", 1, input_size, weight, grad_output, stride, padding, dilation, groups, algorithm)


def conv2d_input(input_size, weight: ArrayLike, grad_output: ArrayLike, stride=1, padding=0, dilation=1,
                 groups: int = 1, *, algorithm: str | None = None) -> NDArray:
    return _input_grad("conv2d_input", 2, input_size, weight, grad_output, stride, padding, dilation, groups, algorithm)


def conv3d_input(input_size, weight: ArrayLike, grad_output: ArrayLike, stride=1, padding=0, dilation=1,
                 groups: int = 1, *, algorithm: str | None = None) -> NDArray:
    return _input_grad("conv3d_input", 3, input_size, weight, grad_output, stride, padding, dilation, groups, algorithm)


def conv_weight(input: ArrayLike, weight_size, grad_output: ArrayLike, stride=1, padding=0, dilation=1,
                groups: int = 1, *, algorithm: str | None = None) -> NDArray:
    return _weight_grad("conv_weight", None, input, weight_size, grad_output, stride, padding, dilation, groups, algorithm)


def conv1d_weight(input: ArrayLike, weight_size, grad_output: ArrayLike, stride=1, padding=0, dilation=1,
                  groups: int = 1, *, algorithm: str | None = None) -> NDArray:
    return _weight_grad("conv1d_weight", 1, input, weight_size, grad_output, stride, padding, dilation, groups, algorithm)


def conv2d_weight(input: ArrayLike, weight_size, grad_output: ArrayLike, stride=1, padding=0, dilation=1,
                  groups: int = 1, *, algorithm: str | None = None) -> NDArray:
    return _weight_grad("conv2d_weight", 2, input, weight_size, grad_output, stride, padding, dilation, groups, algorithm)


def conv3d_weight(input: ArrayLike, weight_size, grad_output: ArrayLike, stride=1, padding=0, dilation=1,
                  groups: int = 1, *, algorithm: str | None = None) -> NDArray:
    return _weight_grad("conv3d_weight", 3, input, weight_size, grad_output, stride, padding, dilation, groups, algorithm)


for _f, _nd in ((conv_input, None), (conv1d_input, 1), (conv2d_input, 2), (conv3d_input, 3)):
    _document(_f, _nd, "input")
for _f, _nd in ((conv_weight, None), (conv1d_weight, 1), (conv2d_weight, 2), (conv3d_weight, 3)):
    _document(_f, _nd, "weight")
del _f, _nd
