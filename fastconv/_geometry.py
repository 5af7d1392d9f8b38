"""ConvGeometry: the single source of truth for shapes, padding and validation.

Every operation is described by the geometry of one *forward* convolution
``y = conv(x, w)``; transposed convolution and both gradients are its adjoints,
so they share the same geometry (a transposed convolution is the input gradient of
the forward convolution that maps its output back to its input).
"""

from __future__ import annotations

import functools
import itertools
import math
from dataclasses import dataclass

from . import _args
from ._errors import CallContext


#: Geometries built from public arguments, by the arguments' repr (bounded: cleared when full).
_BUILT: dict[str, "ConvGeometry"] = {}
_BUILT_MAX = 1024


def _memoised(build):
    """``build(cls, *arguments, ctx, **options)`` remembered by the repr of its arguments and
    options (``ctx`` only words errors, which are raised, never remembered): validating and
    normalising a call's arguments cost ~30 us, a third of a small call's overhead. The repr tells
    ``True`` from ``1`` and an array from a list, so a cached geometry stands for an identical call."""

    @functools.wraps(build)
    def cached(cls, *args, **options):
        *arguments, ctx = (*args, options.pop("ctx")) if "ctx" in options else args
        key = repr((build.__name__, arguments, sorted(options.items())))
        geom = _BUILT.get(key)
        if geom is None:
            geom = build(cls, *arguments, ctx, **options)
            if len(_BUILT) >= _BUILT_MAX:
                _BUILT.clear()
            _BUILT[key] = geom
        return geom

    return cached


@dataclass(frozen=True)
class ConvGeometry:
    """Shape of one N-d forward convolution, channels first.

    ``padding`` holds ``(lo, hi)`` per spatial dimension. Public calls only build
    non-negative padding; derived geometries (:meth:`for_input_grad`,
    :meth:`for_weight_grad`) may use negative values, meaning "crop".
    """

    batch: int
    in_channels: int
    out_channels: int
    groups: int
    in_size: tuple[int, ...]
    kernel: tuple[int, ...]
    stride: tuple[int, ...]
    dilation: tuple[int, ...]
    padding: tuple[tuple[int, int], ...]

    # ---- shapes -------------------------------------------------------------------
    @property
    def nd(self) -> int:
        return len(self.in_size)

    @functools.cached_property  # hot: every call reads them several times
    def padded_size(self) -> tuple[int, ...]:
        return tuple(n + lo + hi for n, (lo, hi) in zip(self.in_size, self.padding))

    @functools.cached_property
    def dilated_kernel(self) -> tuple[int, ...]:
        return tuple(d * (k - 1) + 1 for d, k in zip(self.dilation, self.kernel))

    @functools.cached_property
    def out_size(self) -> tuple[int, ...]:
        return tuple((p - e) // s + 1 for p, e, s in zip(self.padded_size, self.dilated_kernel, self.stride))

    @property
    def in_per_group(self) -> int:
        return self.in_channels // self.groups

    @property
    def out_per_group(self) -> int:
        return self.out_channels // self.groups

    @property
    def input_shape(self) -> tuple[int, ...]:
        return (self.batch, self.in_channels, *self.in_size)

    @property
    def weight_shape(self) -> tuple[int, ...]:
        return (self.out_channels, self.in_per_group, *self.kernel)

    @property
    def output_shape(self) -> tuple[int, ...]:
        return (self.batch, self.out_channels, *self.out_size)

    @property
    def kernel_volume(self) -> int:
        return math.prod(self.kernel)

    @property
    def macs(self) -> int:
        """Multiply-adds of the direct algorithm."""
        return self.batch * self.out_channels * math.prod(self.out_size) * self.in_per_group * self.kernel_volume

    @property
    def is_pointwise(self) -> bool:
        """1x1 kernel, stride 1, no padding: the convolution is a plain matrix product."""
        return all(k == 1 for k in self.kernel) and all(s == 1 for s in self.stride) and all(
            p == (0, 0) for p in self.padding
        )

    def tap_slices(self):
        """Per kernel tap, in weight order, the slices of the padded input that tap reads.

        Yields ``(tap_index, slices)``; ``padded_x[..., *slices]`` has the spatial shape of the output.
        """
        out = self.out_size
        for flat, tap in enumerate(itertools.product(*(range(k) for k in self.kernel))):
            yield flat, tuple(
                slice(t * d, t * d + s * (o - 1) + 1, s) for t, d, s, o in zip(tap, self.dilation, self.stride, out)
            )

    def input_span(self, dim: int, out_start: int, out_stop: int) -> tuple[int, int]:
        """Input indices ``[start, stop)`` (unpadded coordinates, may leave the array) that the
        outputs ``[out_start, out_stop)`` of spatial dimension ``dim`` read: the halo of a chunked run."""
        lo = self.padding[dim][0]
        start = out_start * self.stride[dim] - lo
        stop = (out_stop - 1) * self.stride[dim] - lo + self.dilated_kernel[dim]
        return start, stop

    # ---- adjoints as forward convolutions -----------------------------------------
    def for_input_grad(self) -> "ConvGeometry":
        """Forward geometry computing dx from dy: dy zero-stuffed by ``stride`` (length
        ``stride*(out-1)+1``), correlated with the flipped, channel-swapped weight at stride 1."""
        stuffed = tuple(s * (o - 1) + 1 for s, o in zip(self.stride, self.out_size))
        padding = tuple(
            (d * (k - 1) - lo, n - m + lo)
            for d, k, (lo, _), n, m in zip(self.dilation, self.kernel, self.padding, self.in_size, stuffed)
        )
        return ConvGeometry(
            batch=self.batch,
            in_channels=self.out_channels,
            out_channels=self.in_channels,
            groups=self.groups,
            in_size=stuffed,
            kernel=self.kernel,
            stride=(1,) * self.nd,
            dilation=self.dilation,
            padding=padding,
        )

    def for_weight_grad(self) -> "ConvGeometry":
        """Forward geometry computing dw from x and dy: x with batch and channels swapped
        (batch = in_channels/groups, channels = groups*batch) correlated with dy as the weight
        (kernel = out_size, dilation = stride, stride = dilation), cropped to the kernel size."""
        padding = tuple(
            (lo, s * (o - 1) + d * (k - 1) + 1 - n - lo)
            for (lo, _), s, o, d, k, n in zip(self.padding, self.stride, self.out_size, self.dilation, self.kernel, self.in_size)
        )
        return ConvGeometry(
            batch=self.in_per_group,
            in_channels=self.groups * self.batch,
            out_channels=self.out_channels,
            groups=self.groups,
            in_size=self.in_size,
            kernel=self.out_size,
            stride=self.dilation,
            dilation=self.stride,
            padding=padding,
        )

    def with_batch(self, batch: int) -> "ConvGeometry":
        return ConvGeometry(batch, self.in_channels, self.out_channels, self.groups, self.in_size,
                            self.kernel, self.stride, self.dilation, self.padding)

    # ---- construction from public calls --------------------------------------------
    @classmethod
    @_memoised
    def for_conv(cls, input_shape, weight_shape, stride, padding, dilation, groups,
                 ctx: CallContext, *, allow_string_padding: bool = True) -> "ConvGeometry":
        """Geometry of ``conv(input, weight)``; ``input_shape`` is batched ``(N, C, *spatial)``."""
        _, kernel, stride_t, dilation_t, groups, pad = _normalise(
            input_shape, weight_shape, stride, padding, dilation, groups, ctx, allow_string_padding)
        out_channels, per_group = int(weight_shape[0]), int(weight_shape[1])
        _check_channels(int(input_shape[1]), out_channels, per_group, groups, ctx, "weight.shape[0]")
        geom = cls(int(input_shape[0]), int(input_shape[1]), out_channels, groups,
                   tuple(int(n) for n in input_shape[2:]), kernel, stride_t, dilation_t, pad)
        geom._check_sizes(ctx)
        return geom

    @classmethod
    @_memoised
    def for_conv_transpose(cls, input_shape, weight_shape, stride, padding, output_padding, dilation, groups,
                           ctx: CallContext, *, output_size=None) -> "ConvGeometry":
        """Forward geometry whose input gradient is ``conv_transpose(input, weight)``.

        Transposed output length per dimension:
        ``(L_in - 1)*stride - (lo + hi) + dilation*(kernel - 1) + output_padding + 1``.
        ``output_size`` (as torch's ConvTranspose modules) picks output_padding for you.
        """
        nd, kernel, stride_t, dilation_t, groups, pad = _normalise(
            input_shape, weight_shape, stride, padding, dilation, groups, ctx, False)
        in_size = tuple(int(n) for n in input_shape[2:])
        minimal = tuple((n - 1) * s - lo - hi + d * (k - 1) + 1
                        for n, s, (lo, hi), d, k in zip(in_size, stride_t, pad, dilation_t, kernel))
        if output_size is not None:
            out_pad = _output_padding_from_size(output_size, minimal, stride_t, nd, ctx)
        else:
            out_pad = _args.int_tuple(output_padding, nd, "output_padding", ctx, minimum=0)
            if any(op >= s and op >= d for op, s, d in zip(out_pad, stride_t, dilation_t)):
                raise ctx.value_error(
                    f"output_padding={output_padding!r} must be smaller than either stride={stride_t} or "
                    f"dilation={dilation_t} in every dimension"
                )
        transposed_out = tuple(m + op for m, op in zip(minimal, out_pad))
        if any(n <= 0 for n in in_size) or any(m <= 0 for m in transposed_out):
            raise ctx.value_error(
                f"output size {transposed_out} is not positive; reduce padding={padding!r} or enlarge the input"
            )
        in_channels, per_group = int(weight_shape[0]), int(weight_shape[1])
        if int(input_shape[1]) != in_channels:
            raise ctx.value_error(
                f"input has {input_shape[1]} channels but weight.shape[0]={in_channels}; transposed "
                f"convolution weights are (in_channels, out_channels/groups, *kernel)"
            )
        if in_channels % groups:
            raise ctx.value_error(f"in_channels={in_channels} is not divisible by groups={groups}")
        # The forward convolution maps the transposed output (out channels) back to the input. An
        # output_padding of a stride or more (allowed when below the dilation) adds positions no input
        # reaches: the forward convolution crops them (negative hi) so that it maps back to L_in exactly.
        forward_pad = tuple((lo, hi - s * (op // s)) for (lo, hi), s, op in zip(pad, stride_t, out_pad))
        return cls(int(input_shape[0]), per_group * groups, in_channels, groups, transposed_out,
                   kernel, stride_t, dilation_t, forward_pad)

    @classmethod
    def for_gradient(cls, input_shape, weight_shape, grad_output_shape, stride, padding, dilation, groups,
                     ctx: CallContext) -> "ConvGeometry":
        """Forward geometry of a gradient call (torch.nn.grad): shapes given, string padding refused."""
        geom = cls.for_conv(input_shape, weight_shape, stride, padding, dilation, groups, ctx,
                            allow_string_padding=False)
        if tuple(grad_output_shape) != geom.output_shape:
            raise ctx.value_error(
                f"grad_output has shape {tuple(grad_output_shape)} but the convolution's output has shape "
                f"{geom.output_shape}; check input size, stride, padding and dilation"
            )
        return geom

    def _check_sizes(self, ctx: CallContext) -> None:
        if any(n <= 0 for n in self.in_size):
            raise ctx.value_error(f"input spatial size {self.in_size} must be positive in every dimension")
        if any(p < e for p, e in zip(self.padded_size, self.dilated_kernel)):
            raise ctx.value_error(
                f"padded input size {self.padded_size} is smaller than the dilated kernel "
                f"{self.dilated_kernel}; pad more, shrink dilation or use a smaller kernel"
            )


def _normalise(input_shape, weight_shape, stride, padding, dilation, groups, ctx: CallContext,
               allow_string_padding: bool):
    """The user's parameters -> (nd, kernel, stride, dilation, groups, ((lo, hi), ...))."""
    nd = _check_ranks(input_shape, weight_shape, ctx)
    kernel = tuple(int(k) for k in weight_shape[2:])
    stride_t = _args.int_tuple(stride, nd, "stride", ctx, minimum=1)
    dilation_t = _args.int_tuple(dilation, nd, "dilation", ctx, minimum=1)
    groups = _args.check_groups(groups, ctx)
    pad = _args.padding_pairs(padding, nd, ctx, kernel=kernel, stride=stride_t, dilation=dilation_t,
                              allow_strings=allow_string_padding)
    return nd, kernel, stride_t, dilation_t, groups, pad


def _check_ranks(input_shape, weight_shape, ctx: CallContext) -> int:
    nd = len(weight_shape) - 2
    if nd < 1:
        raise ctx.value_error("weight must have at least 3 dimensions (out_channels, in_channels/groups, *kernel)")
    if len(input_shape) != nd + 2:
        raise ctx.value_error(
            f"expected a {nd + 2}-D batched input (N, C, *spatial) for a {nd + 2}-D weight, "
            f"got {len(input_shape)}-D"
        )
    if any(k <= 0 for k in weight_shape[2:]):
        raise ctx.value_error(f"kernel size {tuple(weight_shape[2:])} must be positive in every dimension")
    return nd


def _check_channels(in_channels: int, out_channels: int, per_group: int, groups: int,
                    ctx: CallContext, out_name: str) -> None:
    if in_channels % groups:
        raise ctx.value_error(f"in_channels={in_channels} is not divisible by groups={groups}")
    if out_channels % groups:
        raise ctx.value_error(f"out_channels={out_channels} ({out_name}) is not divisible by groups={groups}")
    if per_group * groups != in_channels:
        raise ctx.value_error(
            f"expected input with {per_group * groups} channels (weight.shape[1]={per_group} x groups={groups}), "
            f"got {in_channels} channels"
        )


def _output_padding_from_size(output_size, minimal, stride, nd, ctx: CallContext) -> tuple[int, ...]:
    size = tuple(output_size)
    if len(size) == nd + 2 or len(size) == nd + 1:
        size = size[-nd:]
    if len(size) != nd or not all(isinstance(v, int) or hasattr(v, "__index__") for v in size):
        raise ctx.value_error(f"output_size={output_size!r} must give {nd} spatial sizes")
    size = tuple(int(v) for v in size)
    for n, m, s in zip(size, minimal, stride):
        if not m <= n <= m + s - 1:
            raise ctx.value_error(
                f"output_size={size} is not reachable: each size must lie between {minimal} and "
                f"{tuple(m + s - 1 for m, s in zip(minimal, stride))}"
            )
    return tuple(n - m for n, m in zip(size, minimal))
