"""Docstring fragments shared by the public wrappers (filled in with ``str.format``)."""

CONV_PARAMS = """\
input : array_like
    ``(N, C_in, *spatial)`` or unbatched ``(C_in, *spatial)``; float16/32/64 or complex64/128.
weight : array_like
    ``(C_out, C_in / groups, *kernel)``, same dtype as ``input``.
bias : array_like, optional
    ``(C_out,)``, same dtype as ``input``.
stride : int or tuple of int
    Step of the kernel per spatial dimension (>= 1).
padding : int, tuple of int, tuple of (lo, hi) pairs, 'same' or 'valid'
    Implicit padding. 'same' keeps the spatial size (stride 1 only); when the total
    ``dilation * (kernel - 1)`` is odd the extra element goes to the high side, as torch.
    Per-side pairs ``((lo, hi), ...)`` are fastconv's one extension of torch's arguments.
dilation : int or tuple of int
    Spacing between kernel elements (>= 1).
groups : int
    Split the channels into this many independent groups; ``groups == C_in`` is depthwise.
padding_mode : {'zeros', 'reflect', 'replicate', 'circular'}, keyword-only
    How padded values are filled (torch offers this on modules only).
algorithm : str, keyword-only
    Force an algorithm of :data:`fastconv.algorithms.ALGORITHMS`; default lets the planner choose."""

TRANSPOSE_PARAMS = """\
input : array_like
    ``(N, C_in, *spatial)`` or unbatched ``(C_in, *spatial)``.
weight : array_like
    ``(C_in, C_out / groups, *kernel)``, same dtype as ``input``.
bias : array_like, optional
    ``(C_out,)``.
stride, dilation : int or tuple of int
    As for the forward convolution this transposes.
padding : int, tuple of int or tuple of (lo, hi) pairs
    ``dilation * (kernel - 1) - padding`` zero-padding is conceptually added to the input;
    strings are refused, as torch.
output_padding : int or tuple of int
    Extra size on the high side of each output dimension; smaller than stride or dilation.
groups : int
    Number of blocked connections from input to output channels.
output_size : tuple of int, keyword-only
    Desired spatial output size; picks ``output_padding`` as torch's ConvTranspose modules do.
algorithm : str, keyword-only
    Force an algorithm; default lets the planner choose."""

CONV_SHAPE = "``out = floor((in + pad_lo + pad_hi - dilation * (kernel - 1) - 1) / stride) + 1`` per spatial dimension."
TRANSPOSE_SHAPE = (
    "``out = (in - 1) * stride - pad_lo - pad_hi + dilation * (kernel - 1) + output_padding + 1`` "
    "per spatial dimension."
)
