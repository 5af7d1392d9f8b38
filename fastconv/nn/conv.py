"""Convolution layers with torch.nn's constructors, attributes, repr, initialisation and
state_dict keys, plus depthwise and separable layers torch lacks.

Forward passes call :mod:`fastconv.functional`; backward passes call :mod:`fastconv.grad`
(and, for transposed layers, the forward convolution that is their adjoint), so every
algorithm the planner knows serves training as well as inference.
"""

from __future__ import annotations

import math
import numbers
from collections import OrderedDict
from typing import ClassVar

import numpy as np

from .. import _args, functional, grad
from .._errors import CallContext
from .._geometry import ConvGeometry
from . import _padding, init
from .module import Module, Parameter, Sequential

__all__ = ["Conv1d", "Conv2d", "Conv3d", "ConvTranspose1d", "ConvTranspose2d", "ConvTranspose3d",
           "DepthwiseConv1d", "DepthwiseConv2d", "DepthwiseConv3d", "SeparableConv1d", "SeparableConv2d",
           "SeparableConv3d"]

PADDING_MODES = ("zeros", "reflect", "replicate", "circular")


def _positive_int(value, name: str, ctx: CallContext) -> int:
    if not isinstance(value, numbers.Integral) or isinstance(value, bool):
        raise ctx.type_error(f"{name} must be an int, got {value!r}")
    if value < 1:
        raise ctx.value_error(f"{name}={value} must be a positive integer")
    return int(value)


class _ConvNd(Module):
    """Parameters, validation, initialisation and repr shared by every convolution layer."""

    _nd: ClassVar[int]
    transposed: ClassVar[bool] = False

    def __init__(self, in_channels, out_channels, kernel_size, stride, padding, dilation, output_padding, groups,
                 bias, padding_mode, device, dtype, generator) -> None:
        super().__init__()
        name, nd = type(self).__name__, self._nd
        ctx = CallContext(name)
        self.in_channels = _positive_int(in_channels, "in_channels", ctx)
        self.out_channels = _positive_int(out_channels, "out_channels", ctx)
        self.kernel_size = _args.int_tuple(kernel_size, nd, "kernel_size", ctx, minimum=1)
        self.stride = _args.int_tuple(stride, nd, "stride", ctx, minimum=1)
        self.dilation = _args.int_tuple(dilation, nd, "dilation", ctx, minimum=1)
        self.output_padding = _args.int_tuple(output_padding, nd, "output_padding", ctx, minimum=0)
        self.groups = _args.check_groups(groups, ctx)
        for label, channels in (("in_channels", self.in_channels), ("out_channels", self.out_channels)):
            if channels % self.groups:
                raise ctx.value_error(f"{label}={channels} is not divisible by groups={self.groups}")
        if padding_mode not in PADDING_MODES:
            raise ctx.value_error(f"padding_mode must be one of {PADDING_MODES}, got padding_mode={padding_mode!r}")
        if self.transposed and padding_mode != "zeros":
            raise ctx.value_error(f"only padding_mode='zeros' is supported for {name}, got {padding_mode!r} (as torch)")
        self.padding_mode = padding_mode
        self._padding_pairs = _args.padding_pairs(padding, nd, ctx, kernel=self.kernel_size, stride=self.stride,
                                                  dilation=self.dilation, allow_strings=not self.transposed)
        symmetric = all(lo == hi for lo, hi in self._padding_pairs)
        self.padding = padding if isinstance(padding, str) else (
            tuple(lo for lo, _ in self._padding_pairs) if symmetric else self._padding_pairs)
        if device not in (None, "cpu"):
            raise ctx.value_error(f"device={device!r}: fastconv layers live on the CPU; use device=None or 'cpu'")
        dtype = np.dtype(np.float32 if dtype is None else dtype)
        if dtype not in _args.COMPUTE_DTYPES:
            raise ctx.type_error(f"dtype={dtype} is not supported; use float16, float32, float64, complex64 or "
                                 f"complex128")
        per_group = (self.out_channels if self.transposed else self.in_channels) // self.groups
        first = self.in_channels if self.transposed else self.out_channels
        self.weight = Parameter(np.empty((first, per_group, *self.kernel_size), dtype=dtype))
        if bias:
            self.bias = Parameter(np.empty(self.out_channels, dtype=dtype))
        else:
            self.register_parameter("bias", None)
        self._saved = None
        self.reset_parameters(generator)

    def reset_parameters(self, generator=None) -> None:
        """torch's initialisation: weight kaiming-uniform with ``a = sqrt(5)`` (U(+-1/sqrt(fan_in))),
        bias U(+-1/sqrt(fan_in)); ``generator`` is a numpy Generator, a seed or None."""
        rng = np.random.default_rng(generator)
        init.kaiming_uniform_(self.weight, a=math.sqrt(5), generator=rng)
        if self.bias is not None:
            fan_in, _ = init.fan_in_and_fan_out(self.weight.shape)
            init.uniform_(self.bias, -1 / math.sqrt(fan_in), 1 / math.sqrt(fan_in), generator=rng)

    # ---- saved state for backward ----------------------------------------------------
    def _save(self, state) -> None:
        self._saved = state if self.training else None

    def _take_saved(self):
        saved, self._saved = self._saved, None
        if saved is None:
            raise ValueError(f"{type(self).__name__}.backward: no saved input; call forward(x) in training mode "
                             f"(module.train()) before backward(grad_output), once per forward")
        return saved

    # ---- repr ------------------------------------------------------------------------
    def _repr_head(self) -> list[str]:
        return [str(self.in_channels), str(self.out_channels)]

    def _repr_groups(self) -> str | None:
        return f"groups={self.groups}" if self.groups != 1 else None

    def extra_repr(self) -> str:
        nd = self._nd
        parts = [*self._repr_head(), f"kernel_size={self.kernel_size}", f"stride={self.stride}"]
        if self.padding != (0,) * nd:
            parts.append(f"padding={self.padding}")
        if self.dilation != (1,) * nd:
            parts.append(f"dilation={self.dilation}")
        if self.output_padding != (0,) * nd:
            parts.append(f"output_padding={self.output_padding}")
        if self._repr_groups():
            parts.append(self._repr_groups())
        if self.bias is None:
            parts.append("bias=False")
        if self.padding_mode != "zeros":
            parts.append(f"padding_mode={self.padding_mode}")
        return ", ".join(parts)

    def _bias_data(self):
        return None if self.bias is None else self.bias.data


class _Conv(_ConvNd):
    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0, dilation=1,
                 groups: int = 1, bias: bool = True, padding_mode: str = "zeros", device=None, dtype=None, *,
                 generator=None) -> None:
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation, 0, groups, bias,
                         padding_mode, device, dtype, generator)

    def forward(self, input):
        """Convolve ``input`` ``(N, C_in, *spatial)`` or ``(C_in, *spatial)``; keeps it for backward."""
        conv = getattr(functional, f"conv{self._nd}d")
        out = conv(input, self.weight.data, self._bias_data(), self.stride, self._padding_pairs, self.dilation,
                   self.groups, padding_mode=self.padding_mode)
        self._save(np.asarray(input))
        return out

    def backward(self, grad_output):
        """Gradient w.r.t. the last forward's input; adds to ``weight.grad`` and ``bias.grad``.

        Non-zero padding modes pad explicitly, so the input gradient of the padded array is
        folded back onto the input by the padding's adjoint.
        """
        x = self._take_saved()
        dy = np.asarray(grad_output)
        unbatched = x.ndim == self._nd + 1
        if unbatched:
            x, dy = x[None], dy[None]
        padding = self._padding_pairs
        if self.padding_mode != "zeros":
            x, padding = _padding.pad(x, padding, self.padding_mode), 0
        args = (self.stride, padding, self.dilation, self.groups)
        w = self.weight.data
        self.weight.accumulate(getattr(grad, f"conv{self._nd}d_weight")(x, w.shape, dy, *args))
        if self.bias is not None:
            self.bias.accumulate(grad.conv_bias(dy))
        dx = getattr(grad, f"conv{self._nd}d_input")(x.shape, w, dy, *args)
        if self.padding_mode != "zeros":
            dx = _padding.pad_adjoint(dx, self._padding_pairs, self.padding_mode)
        return dx[0] if unbatched else dx


class _ConvTranspose(_ConvNd):
    transposed = True

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0, output_padding=0,
                 groups: int = 1, bias: bool = True, dilation=1, padding_mode: str = "zeros", device=None,
                 dtype=None, *, generator=None) -> None:
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation, output_padding, groups,
                         bias, padding_mode, device, dtype, generator)

    def forward(self, input, output_size=None):
        """Transposed convolution of ``input``; ``output_size`` picks output_padding, as torch."""
        conv_transpose = getattr(functional, f"conv_transpose{self._nd}d")
        out = conv_transpose(input, self.weight.data, self._bias_data(), self.stride, self._padding_pairs,
                             self.output_padding, self.groups, self.dilation, output_size=output_size)
        self._save((np.asarray(input), out.shape, output_size))
        return out

    def backward(self, grad_output):
        """Gradient w.r.t. the last forward's input; adds to ``weight.grad`` and ``bias.grad``.

        A transposed convolution is the input gradient of a forward convolution ``G`` (from the
        transposed output back to its input), so its input gradient is ``G``'s forward pass and
        its weight gradient is ``G``'s weight gradient with input and grad_output swapped.
        """
        x, out_shape, output_size = self._take_saved()
        name = type(self).__name__
        dy = np.asarray(grad_output)
        if dy.shape != out_shape:
            raise ValueError(f"{name}.backward: grad_output has shape {dy.shape}; expected {out_shape}, the shape "
                             f"forward returned")
        unbatched = x.ndim == self._nd + 1
        if unbatched:
            x, dy = x[None], dy[None]
        w = self.weight.data
        if self.bias is not None:
            self.bias.accumulate(grad.conv_bias(dy))
        geom = ConvGeometry.for_conv_transpose(x.shape, w.shape, self.stride, self._padding_pairs,
                                               self.output_padding, self.dilation, self.groups,
                                               CallContext(f"{name}.backward"), output_size=output_size)
        # G may crop (negative high padding, when output_padding >= stride): crop dy instead
        dy = dy[(Ellipsis, *(slice(0, n + min(hi, 0)) for n, (_, hi) in zip(geom.in_size, geom.padding)))]
        padding = tuple((lo, max(hi, 0)) for lo, hi in geom.padding)
        args = (self.stride, padding, self.dilation, self.groups)
        # complex gradients are adjoints (conjugate transposes, as torch): swapping the roles of
        # input and grad_output, or using G itself rather than its adjoint, conjugates them
        conj = np.conj if np.iscomplexobj(w) else (lambda a: a)
        self.weight.accumulate(conj(getattr(grad, f"conv{self._nd}d_weight")(dy, w.shape, x, *args)))
        dx = getattr(functional, f"conv{self._nd}d")(dy, conj(w), None, *args)
        return dx[0] if unbatched else dx


class _DepthwiseConv(_Conv):
    def __init__(self, in_channels: int, kernel_size, stride=1, padding=0, dilation=1, channel_multiplier: int = 1,
                 bias: bool = True, padding_mode: str = "zeros", device=None, dtype=None, *, generator=None) -> None:
        ctx = CallContext(type(self).__name__)
        multiplier = _positive_int(channel_multiplier, "channel_multiplier", ctx)
        in_channels = _positive_int(in_channels, "in_channels", ctx)
        super().__init__(in_channels, in_channels * multiplier, kernel_size, stride, padding, dilation,
                         in_channels, bias, padding_mode, device, dtype, generator=generator)
        self.channel_multiplier = multiplier

    def _repr_head(self) -> list[str]:
        return [str(self.in_channels)]

    def _repr_groups(self) -> str | None:
        return f"channel_multiplier={self.channel_multiplier}" if self.channel_multiplier != 1 else None


class _SeparableConv(Sequential):
    _parts: ClassVar[tuple[type[_DepthwiseConv], type[_Conv]]]

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0, dilation=1,
                 channel_multiplier: int = 1, bias: bool = True, padding_mode: str = "zeros", device=None,
                 dtype=None, *, generator=None) -> None:
        rng = np.random.default_rng(generator)
        depthwise_cls, conv_cls = self._parts
        # a bias before a linear 1x1 convolution is redundant: only the pointwise layer has one
        depthwise = depthwise_cls(in_channels, kernel_size, stride, padding, dilation, channel_multiplier, False,
                                  padding_mode, device, dtype, generator=rng)
        pointwise = conv_cls(depthwise.out_channels, out_channels, 1, bias=bias, device=device, dtype=dtype,
                             generator=rng)
        super().__init__(OrderedDict(depthwise=depthwise, pointwise=pointwise))
        self.in_channels, self.out_channels = depthwise.in_channels, pointwise.out_channels


_LAYER_DOC = """{dims} {what}, as {torch}.

Parameters
----------
{params}
bias : bool
    Learn an additive bias (default True).
padding_mode : {modes}
device : None or 'cpu'
    Accepted for torch compatibility.
dtype : numpy dtype, optional
    float32 (default), float64, float16, complex64 or complex128.
generator : numpy.random.Generator or int, keyword-only
    Source of the initial weights (torch's distributions, see :mod:`fastconv.nn.init`).

Notes
-----
{notes}

Examples
--------
>>> import numpy as np
>>> from fastconv.nn import {name}
>>> layer = {name}({example}, generator=0)
>>> layer
{repr}
>>> x = np.ones({x_shape}, dtype=np.float32)
>>> y = layer(x)
>>> y.shape
{y_shape}
>>> layer.backward(np.ones_like(y)).shape == x.shape
True
"""

_CONV_PARAMS = """in_channels, out_channels : int
    Channels of the input and of the output.
kernel_size, stride, dilation : int or tuple of int
    As torch; ``stride`` and ``dilation`` default to 1.
padding : int, tuple of int, tuple of (lo, hi) pairs, 'same' or 'valid'
    Implicit padding on both sides, filled according to ``padding_mode``.
groups : int
    Split channels into independent groups."""

_TRANSPOSE_PARAMS = """in_channels, out_channels : int
    Channels of the input and of the output.
kernel_size, stride, dilation : int or tuple of int
    As torch; ``stride`` and ``dilation`` default to 1.
padding : int, tuple of int or tuple of (lo, hi) pairs
    ``dilation * (kernel_size - 1) - padding`` is the implicit zero padding of the input.
output_padding : int or tuple of int
    Extra size on the high side of the output (smaller than stride or dilation).
groups : int
    Split channels into independent groups."""

_DEPTHWISE_PARAMS = """in_channels : int
    Channels of the input; the output has ``in_channels * channel_multiplier``.
kernel_size, stride, dilation : int or tuple of int
    As torch.
padding : int, tuple of int, tuple of (lo, hi) pairs, 'same' or 'valid'
    Implicit padding, filled according to ``padding_mode``.
channel_multiplier : int
    Filters per input channel (default 1)."""

_SEPARABLE_PARAMS = """in_channels, out_channels : int
    Channels of the input and of the output.
kernel_size, stride, dilation, padding
    Of the depthwise step (as for the Depthwise layer).
channel_multiplier : int
    Filters per input channel in the depthwise step (default 1)."""

_SAVED = ("In training mode ``forward`` keeps a reference to its input for ``backward`` (do not modify\n"
          "it in place in between); ``eval()`` stops that. Each forward allows one backward.")


def _document(cls, nd: int, kind: str):
    name = cls.__name__
    k, ones, twos, spatial = (3,) * nd, (1,) * nd, (2,) * nd, (5,) * nd
    head = f"{name}(2, 4, kernel_size={k}, stride={ones}, padding={ones})"
    example, out, modes = "2, 4, 3, padding=1", spatial, "{'zeros', 'reflect', 'replicate', 'circular'}"
    if kind == "conv":
        what, torch_name, params = "convolution layer", f"``torch.nn.{name}``", _CONV_PARAMS
    elif kind == "transpose":
        example, out, modes = "2, 4, 3, stride=2", (11,) * nd, "'zeros'"
        head = f"{name}(2, 4, kernel_size={k}, stride={twos})"
        what, torch_name, params = "transposed convolution layer", f"``torch.nn.{name}``", _TRANSPOSE_PARAMS
    elif kind == "depthwise":
        example = "2, 3, padding=1, channel_multiplier=2"
        head = f"{name}(2, kernel_size={k}, stride={ones}, padding={ones}, channel_multiplier=2)"
        what, params = "depthwise convolution layer (groups = in_channels)", _DEPTHWISE_PARAMS
        torch_name = f"``torch.nn.Conv{nd}d(C, C * channel_multiplier, k, groups=C)``"
    else:
        head = (f"{name}(\n  (depthwise): DepthwiseConv{nd}d(2, kernel_size={k}, stride={ones}, padding={ones}, "
                f"bias=False)\n  (pointwise): Conv{nd}d(2, 4, kernel_size={ones}, stride={ones})\n)")
        what, params = "separable convolution: depthwise then pointwise (1x1)", _SEPARABLE_PARAMS
        torch_name = ("a depthwise ``Conv`` without bias followed by a 1x1 ``Conv`` (state_dict keys "
                      "``depthwise.weight``, ``pointwise.weight``, ``pointwise.bias``)")
    cls.__doc__ = _LAYER_DOC.format(dims=f"{nd}-D", what=what, torch=torch_name, params=params, modes=modes,
                                    notes=_SAVED, name=name, example=example, repr=head,
                                    x_shape=(1, 2, *spatial), y_shape=(1, 4, *out))
    return cls


class Conv1d(_Conv):
    _nd = 1


class Conv2d(_Conv):
    _nd = 2


class Conv3d(_Conv):
    _nd = 3


class ConvTranspose1d(_ConvTranspose):
    _nd = 1


class ConvTranspose2d(_ConvTranspose):
    _nd = 2


class ConvTranspose3d(_ConvTranspose):
    _nd = 3


class DepthwiseConv1d(_DepthwiseConv):
    _nd = 1


class DepthwiseConv2d(_DepthwiseConv):
    _nd = 2


class DepthwiseConv3d(_DepthwiseConv):
    _nd = 3


class SeparableConv1d(_SeparableConv):
    _parts = (DepthwiseConv1d, Conv1d)


class SeparableConv2d(_SeparableConv):
    _parts = (DepthwiseConv2d, Conv2d)


class SeparableConv3d(_SeparableConv):
    _parts = (DepthwiseConv3d, Conv3d)


for _nd, _classes in enumerate(((Conv1d, ConvTranspose1d, DepthwiseConv1d, SeparableConv1d),
                                (Conv2d, ConvTranspose2d, DepthwiseConv2d, SeparableConv2d),
                                (Conv3d, ConvTranspose3d, DepthwiseConv3d, SeparableConv3d)), start=1):
    for _cls, _kind in zip(_classes, ("conv", "transpose", "depthwise", "separable")):
        _document(_cls, _nd, _kind)
del _nd, _classes, _cls, _kind
