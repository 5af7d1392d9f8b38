"""The implementations ``fastconv bench`` races: fastconv itself and the peers that are installed.

Each case of the reference workload becomes one :class:`Case`; :func:`contenders` turns it
into zero-argument callables, one per implementation that can run it, built so that one
call is exactly the work being timed (arrays made, weights packed and sessions created
beforehand). Peers: PyTorch (the reference), ONNX Runtime (forward layers, exported as a
one-node ONNX graph) and the textbook NumPy im2col (dense forward layers only).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from ._geometry import ConvGeometry

#: The extra contender of a gradient case: fastconv's forward pass of the same layer, timed in the
#: same rounds so that gradient / forward compares times of the same minutes of a noisy machine.
FORWARD = "fastconv forward"
#: Largest im2col matrix the textbook NumPy peer may build; above it, it declines.
IM2COL_LIMIT_BYTES = 2 * 2**30


@dataclass
class Case:
    """One benchmark case: ``op`` as the suite names it (conv2d, conv_transpose3d, grad_input2d, ...)."""

    name: str
    op: str
    x: tuple[int, ...]
    w: tuple[int, ...]
    kwargs: dict = field(default_factory=dict)

    @property
    def nd(self) -> int:
        return len(self.w) - 2

    @property
    def function(self) -> str:
        """The fastconv function: conv2d, conv_transpose1d, conv2d_input, conv2d_weight."""
        if self.op.startswith("grad_"):
            which, nd = self.op[len("grad_"):-2], self.op[-2:-1]
            return f"conv{nd}d_{which}"
        return self.op

    @property
    def transposed(self) -> bool:
        return self.op.startswith("conv_transpose")

    def plan(self, algorithm: str | None = None):
        """fastconv's plan for this case (its geometry and the algorithm chosen)."""
        from .planner import plan_for
        return plan_for(self.function, self.x, self.w, "float32", algorithm=algorithm, **self.kwargs)

    def geometry(self) -> ConvGeometry:
        return self.plan().geom

    def flops(self) -> int:
        """2 * multiply-adds of the direct algorithm (the suite's convention)."""
        return 2 * self.geometry().macs

    def operands(self) -> tuple[np.ndarray, np.ndarray]:
        """Random float32 operands: (x, w) for forward and transposed layers, (dy, w) / (x, dy) for gradients."""
        rng = np.random.default_rng(0)
        geom = self.geometry()
        second = geom.output_shape if self.op.startswith("grad_weight") else self.w
        first = geom.output_shape if self.op.startswith("grad_input") else self.x
        return (rng.standard_normal(first, dtype=np.float32), rng.standard_normal(second, dtype=np.float32))


def contenders(case: Case, threads: int, algorithm: str | None = None) -> tuple[dict[str, Callable], dict[str, str]]:
    """Callables per implementation name, and the reason for each implementation that cannot run the case."""
    a, b = case.operands()
    calls, skipped = {}, {}
    for name, build in (("fastconv", _fastconv), ("torch", _torch), ("onnxruntime", _onnxruntime),
                        ("numpy-im2col", _numpy_im2col)):
        try:
            result = build(case, a, b, threads, algorithm)
        except ImportError as exc:
            skipped[name] = f"not installed ({exc.name})"
            continue
        except ValueError as exc:
            skipped[name] = str(exc)
            continue
        calls[name] = result
    if "fastconv" in calls and case.op.startswith("grad_"):
        calls[FORWARD] = _fastconv_forward(case, threads)
    return calls, skipped


def _fastconv(case: Case, a, b, threads, algorithm) -> Callable:
    from . import functional, grad
    case.plan(algorithm)  # a forced algorithm that declines raises ValueError here, with its reasons
    kw = dict(case.kwargs, algorithm=algorithm)
    if case.op.startswith("grad_input"):
        fn = getattr(grad, case.function)
        return lambda: fn(case.x, b, a, **kw)
    if case.op.startswith("grad_weight"):
        fn = getattr(grad, case.function)
        return lambda: fn(a, case.w, b, **kw)
    fn = getattr(functional, case.function)
    return lambda: fn(a, b, **kw)


def _fastconv_forward(case: Case, threads) -> Callable:
    """fastconv's forward pass of a gradient case's layer, with the planner's choice (an algorithm
    forced on the benchmark is the gradient's)."""
    forward = Case(case.name, f"conv{case.nd}d", case.x, case.w, case.kwargs)
    return _fastconv(forward, *forward.operands(), threads, None)


def _torch(case: Case, a, b, threads, algorithm) -> Callable:
    import torch
    torch.set_num_threads(threads)
    ta, tb = torch.from_numpy(a), torch.from_numpy(b)

    def no_grad(fn):
        def call():
            with torch.no_grad():
                return fn().numpy()
        return call

    if case.op.startswith("grad_input"):
        fn = getattr(torch.nn.grad, case.function)
        return no_grad(lambda: fn(case.x, tb, ta, **case.kwargs))
    if case.op.startswith("grad_weight"):
        fn = getattr(torch.nn.grad, case.function)
        return no_grad(lambda: fn(ta, case.w, tb, **case.kwargs))
    fn = getattr(torch.nn.functional, case.function)
    return no_grad(lambda: fn(ta, tb, **case.kwargs))


def float64_result(case: Case, threads: int) -> np.ndarray:
    """torch's result in float64 on the case's operands: the yardstick of the float32 errors."""
    a, b = case.operands()
    return _torch(case, a.astype(np.float64), b.astype(np.float64), threads, None)()


def _onnxruntime(case: Case, a, b, threads, algorithm) -> Callable:
    if case.op.startswith("grad_"):
        raise ValueError("onnxruntime: no gradients")
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    geom = case.geometry()
    kw = case.kwargs
    attrs = dict(kernel_shape=list(case.w[2:]), strides=list(geom.stride), dilations=list(geom.dilation),
                 group=geom.groups)
    if case.transposed:
        pads = _per_dim(kw.get("padding", 0), case.nd)
        attrs.update(pads=pads + pads, output_padding=_per_dim(kw.get("output_padding", 0), case.nd))
        out_shape = geom.input_shape
    else:
        attrs.update(pads=[lo for lo, _ in geom.padding] + [hi for _, hi in geom.padding])
        out_shape = geom.output_shape
    node = helper.make_node("ConvTranspose" if case.transposed else "Conv", ["x", "w"], ["y"], **attrs)
    graph = helper.make_graph([node], case.name, [helper.make_tensor_value_info("x", TensorProto.FLOAT, a.shape)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, out_shape)],
                              initializer=[numpy_helper.from_array(b, "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = min(model.ir_version, 9)  # what ONNX Runtime releases read
    onnx.checker.check_model(model)
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    # Its pool otherwise spins for tens of ms after each run, slowing whichever implementation the
    # benchmark times next (fastconv's wavenet.k2d64: 12 ms alone, 23 ms right after ONNX Runtime).
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    return lambda: session.run(None, {"x": a})[0]


def _per_dim(value, nd: int) -> list[int]:
    return list(value) if isinstance(value, (tuple, list)) else [int(value)] * nd


def _numpy_im2col(case: Case, a, b, threads, algorithm) -> Callable:
    """The textbook recipe: pad, sliding_window_view, copy to an (N*L, C*K) matrix, one matmul."""
    geom = case.geometry()
    if case.transposed or case.op.startswith("grad_"):
        raise ValueError("numpy-im2col: forward layers only")
    if geom.groups != 1 or any(d != 1 for d in geom.dilation):
        raise ValueError("numpy-im2col: no groups or dilation")
    cols_bytes = geom.batch * math.prod(geom.out_size) * geom.in_channels * geom.kernel_volume * 4
    if cols_bytes > IM2COL_LIMIT_BYTES:
        raise ValueError(f"numpy-im2col: its im2col matrix would take {cols_bytes / 2**30:.1f} GiB")
    return lambda: textbook_im2col(a, b, geom)


def textbook_im2col(x: np.ndarray, w: np.ndarray, geom: ConvGeometry) -> np.ndarray:
    nd = geom.nd
    spatial = tuple(range(2, 2 + nd))
    xp = np.pad(x, [(0, 0), (0, 0), *geom.padding])
    windows = np.lib.stride_tricks.sliding_window_view(xp, geom.kernel, axis=spatial)
    windows = windows[(Ellipsis, *(slice(None, None, s) for s in geom.stride), *(slice(None),) * nd)]
    windows = windows[(slice(None), slice(None), *(slice(0, n) for n in geom.out_size))]
    # (N, C, *out, *k) -> (N, *out, C, *k) -> (N*L, C*K)
    cols = windows.transpose(0, *spatial, 1, *range(2 + nd, 2 + 2 * nd)).reshape(-1, geom.in_channels * geom.kernel_volume)
    y = cols @ w.reshape(geom.out_channels, -1).T
    return np.ascontiguousarray(np.moveaxis(y.reshape(geom.batch, *geom.out_size, geom.out_channels), -1, 1))
