"""Choosing an algorithm: a pure function of (geometry, dtype, op) that explains itself.

Each op can be served two ways: *natively* by an algorithm that implements it, or
*via forward*: an algorithm's forward pass on the adjoint geometry
(``geom.for_input_grad()`` / ``geom.for_weight_grad()``). Correctness guards
(``supports``) run first; among the survivors the cheapest estimated cost wins.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from . import _adjoint, _config
from ._geometry import ConvGeometry
from .algorithms import ALGORITHMS, OPS


@dataclass(frozen=True)
class Candidate:
    """One way to run the op: ``algorithm`` over ``route`` ('native' or 'via forward')."""

    algorithm: str
    route: str
    cost: float | None  # estimated seconds; None when rejected
    reason: str | None  # why it was rejected; None when viable

    @property
    def label(self) -> str:
        return self.algorithm if self.route == "native" else f"{self.algorithm} (via forward)"


@dataclass(frozen=True)
class Plan:
    op: str
    geom: ConvGeometry
    dtype: np.dtype
    choice: Candidate
    candidates: tuple[Candidate, ...]
    forced: str | None = None

    def explain(self) -> str:
        """The candidates, their estimated costs, the reasons for rejection, and the choice."""
        g = self.geom
        lines = [
            f"{self.op} {g.input_shape} * {g.weight_shape} -> {g.output_shape}, {self.dtype}, "
            f"stride={g.stride} dilation={g.dilation} padding={g.padding} groups={g.groups}"
            + (f", forced algorithm={self.forced!r}" if self.forced else ""),
        ]
        for c in sorted(self.candidates, key=lambda c: (c.cost is None, c.cost or 0.0)):
            mark = "->" if c == self.choice else "  "
            detail = f"~{c.cost * 1e3:.3g} ms" if c.cost is not None else f"rejected: {c.reason}"
            lines.append(f"  {mark} {c.label:<28} {detail}")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.explain()

    def execute(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Run the chosen algorithm: forward(x, w), input_grad(dy, w) or weight_grad(x, dy)."""
        alg = ALGORITHMS[self.choice.algorithm]
        if self.choice.route == "native":
            return getattr(alg, self.op)(a, b, self.geom)
        if self.op == "input_grad":
            return _adjoint.input_grad_via_forward(alg.forward, self.geom, a, b)
        return _adjoint.weight_grad_via_forward(alg.forward, self.geom, a, b)


def _adjoint_geometry(geom: ConvGeometry, op: str) -> ConvGeometry:
    return geom.for_input_grad() if op == "input_grad" else geom.for_weight_grad()


def _candidates(geom: ConvGeometry, dtype: np.dtype, op: str, names) -> list[Candidate]:
    found = []
    for name in names:
        alg = ALGORITHMS[name]
        routes = [("native", geom, op)] if op in alg.native_ops else []
        if op != "forward":
            routes.append(("via forward", _adjoint_geometry(geom, op), "forward"))
        for route, g, alg_op in routes:
            reason = alg.supports(g, dtype, alg_op)
            cost = None if reason else alg.cost(g, dtype, alg_op)
            found.append(Candidate(name, route, cost, reason))
    return found


def plan(geom: ConvGeometry, dtype, op: str = "forward", algorithm: str | None = None) -> Plan:
    """The plan for one call. ``algorithm`` forces one algorithm (either of its routes).

    Raises ValueError when the forced algorithm does not exist or declines the call,
    naming the reasons.
    """
    # The settings algorithms consult are part of the key, so changing them re-plans.
    return _plan(geom, np.dtype(dtype), op, algorithm, _config.max_relative_error, _config.workspace_bytes)


@functools.lru_cache(maxsize=4096)
def _plan(geom: ConvGeometry, dtype: np.dtype, op: str, algorithm: str | None, *_settings) -> Plan:
    if op not in OPS:
        raise ValueError(f"plan: op={op!r} is not one of {OPS}")
    if algorithm is not None and algorithm not in ALGORITHMS:
        raise ValueError(f"algorithm={algorithm!r} is unknown; choose one of {sorted(ALGORITHMS)} or None")
    names = [algorithm] if algorithm else list(ALGORITHMS)
    candidates = _candidates(geom, dtype, op, names)
    viable = [c for c in candidates if c.cost is not None]
    if not viable:
        reasons = "; ".join(f"{c.label}: {c.reason}" for c in candidates)
        raise ValueError(f"algorithm={algorithm!r} cannot run this {op} ({reasons}); use algorithm=None")
    # Prefer native routes on ties: they avoid the adjoint's array transforms.
    choice = min(viable, key=lambda c: (c.cost, c.route != "native"))
    return Plan(op, geom, dtype, choice, tuple(candidates), algorithm)


def plan_for(function: str, input_shape, weight_shape, dtype="float32", *, stride=1, padding=0, dilation=1,
             groups: int = 1, output_padding=0, algorithm: str | None = None) -> Plan:
    """The plan a public function would use, without running it.

    ``function`` is a public name ('conv2d', 'conv_transpose3d', 'conv2d_input', 'conv2d_weight', ...);
    shapes are batched. For gradients, ``input_shape`` is the forward input's shape.

    Examples
    --------
    >>> import fastconv
    >>> p = fastconv.plan_for("conv2d", (1, 8, 16, 16), (8, 8, 3, 3), padding=1)
    >>> p.choice.algorithm
    'gemm'
    """
    from ._errors import CallContext
    ctx = CallContext(function, tuple(input_shape), tuple(weight_shape))
    if function.startswith("conv_transpose"):
        geom = ConvGeometry.for_conv_transpose(input_shape, weight_shape, stride, padding, output_padding, dilation,
                                               groups, ctx)
        op = "input_grad"
    else:
        geom = ConvGeometry.for_conv(input_shape, weight_shape, stride, padding, dilation, groups, ctx,
                                     allow_string_padding=not function.endswith(("_input", "_weight")))
        op = {"_input": "input_grad", "_weight": "weight_grad"}.get(function[function.rfind("_"):], "forward")
    return plan(geom, np.dtype(dtype), op, algorithm)
