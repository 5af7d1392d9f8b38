"""Choosing an algorithm: a pure function of (geometry, dtype, op) that explains itself.

Each op can be served two ways: *natively* by an algorithm that implements it, or
*via forward*: an algorithm's forward pass on the adjoint geometry
(``geom.for_input_grad()`` / ``geom.for_weight_grad()``). Correctness guards
(``supports``) run first; among the survivors the cheapest estimated cost wins.

Until numba has started in the process, the compiled algorithms' costs include its one-time
start-up (``_cost_model.COMPILER_STARTUP_SECONDS``, ~0.65 s): a script's first small calls run
on the NumPy-only algorithms (``taps``, ``fft``, ``reference``, 1x1 ``gemm``) in milliseconds,
and numba starts when a call would save more than its start-up, or when the small calls have
together lost that much (:func:`_pay_rent`).

In the *measuring* mode (``set_planner_mode('measure')`` or ``$FASTCONV_PLANNER=measure``,
like ``torch.backends.cudnn.benchmark``) the survivors whose estimate is within
:data:`MEASURE_WITHIN` of the best estimate are timed once on random data of the call's
shape, and the fastest measured wins. Measurements are kept per (geometry, dtype, op,
thread count, settings) in memory and, with ``persist=True`` (or ``$FASTCONV_PLANNER_PERSIST=1``),
in ``plans.json`` in the user cache directory (``$FASTCONV_CACHE_DIR``), valid for one
library version and CPU model.
"""

from __future__ import annotations

import functools
import math
import os
import sys
from dataclasses import dataclass, replace

import numpy as np

from . import _adjoint, _config, _threads
from ._cost_model import CALIBRATION, CALL_SECONDS, COMPILER_STARTUP_SECONDS
from ._geometry import ConvGeometry
from .algorithms import ALGORITHMS, OPS


@dataclass(frozen=True)
class Candidate:
    """One way to run the op: ``algorithm`` over ``route`` ('native' or 'via forward')."""

    algorithm: str
    route: str
    cost: float | None  # estimated seconds; None when rejected
    reason: str | None  # why it was rejected; None when viable
    measured: float | None = None  # median seconds in the measuring mode; None when not timed
    startup: float = 0.0  # of the cost: numba's one-time start-up, while no compiled kernel has run

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
    threads: int = 1
    #: While numba has not started: seconds this choice is estimated slower than the best compiled
    #: candidate would be once it has; each call pays it towards the start-up (see :func:`_pay_rent`).
    rent: float = 0.0

    def explain(self) -> str:
        """The candidates, their estimated costs, the reasons for rejection, and the choice."""
        g = self.geom
        lines = [
            f"{self.op} {g.input_shape} * {g.weight_shape} -> {g.output_shape}, {self.dtype}, "
            f"stride={g.stride} dilation={g.dilation} padding={g.padding} groups={g.groups}"
            + (f", forced algorithm={self.forced!r}" if self.forced else ""),
        ]
        measuring = any(c.measured is not None for c in self.candidates)
        if measuring:
            lines.append(f"  measured with {self.threads} thread(s); times are medians")
        for c in sorted(self.candidates, key=lambda c: (c.cost is None, c.measured is None, c.measured or 0.0,
                                                         c.cost or 0.0)):
            mark = "->" if c == self.choice else "  "
            if c.cost is None:
                detail = f"rejected: {c.reason}"
            else:
                detail = f"estimated {c.cost * 1e3:.3g} ms"
                if c.startup:
                    detail += f" (incl. {c.startup * 1e3:.3g} ms one-time numba start-up)"
                if c.measured is not None:
                    detail += f", measured {c.measured * 1e3:.3g} ms"
                elif measuring:
                    detail += ", not measured (estimate far above the best)"
            lines.append(f"  {mark} {c.label:<28} {detail}")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.explain()

    def execute(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Run the chosen algorithm: forward(x, w), input_grad(dy, w) or weight_grad(x, dy)."""
        _threads.sync()
        if self.rent:
            _pay_rent(self.rent)
        alg = ALGORITHMS[self.choice.algorithm]
        if self.choice.route == "native":
            return getattr(alg, self.op)(a, b, self.geom)
        if self.op == "input_grad":
            return _adjoint.input_grad_via_forward(alg.forward, self.geom, a, b)
        return _adjoint.weight_grad_via_forward(alg.forward, self.geom, a, b)


def _adjoint_geometry(geom: ConvGeometry, op: str) -> ConvGeometry:
    return geom.for_input_grad() if op == "input_grad" else geom.for_weight_grad()


def _candidates(geom: ConvGeometry, dtype: np.dtype, op: str, names, cold: bool) -> list[Candidate]:
    found = []
    copies = _adjoint_copy_seconds(geom, op) if op != "forward" else 0.0  # of every "via forward" route
    for name in names:
        alg = ALGORITHMS[name]
        routes = [("native", geom, op)] if op in alg.native_ops else []
        if op != "forward":
            routes.append(("via forward", _adjoint_geometry(geom, op), "forward"))
        for route, g, alg_op in routes:
            reason = alg.supports(g, dtype, alg_op)
            if reason:
                found.append(Candidate(name, route, None, reason))
                continue
            startup = COMPILER_STARTUP_SECONDS if cold and alg.needs_compiler(g, alg_op) else 0.0
            cost = (alg.cost(g, dtype, alg_op) * CALIBRATION.get(name, 1.0) + CALL_SECONDS.get(name, 0.0) + startup
                    + (copies if route != "native" else 0.0))
            found.append(Candidate(name, route, cost, None, startup=startup))
    return found


def _adjoint_copy_seconds(geom: ConvGeometry, op: str) -> float:
    """Estimated seconds of the array copies a "via forward" route adds (``_adjoint``)."""
    from ._cost_model import ADJOINT_SECONDS_PER_ELEMENT
    weight = geom.out_channels * geom.in_per_group * geom.kernel_volume
    if op == "input_grad":
        adjoint = geom.for_input_grad()
        stuffed = geom.batch * geom.out_channels * math.prod(adjoint.in_size) if max(geom.stride) > 1 else 0
        elements = weight + stuffed
    else:
        elements = math.prod(geom.input_shape) + math.prod(geom.output_shape) + weight
    return elements * ADJOINT_SECONDS_PER_ELEMENT


def _compiler_cold() -> bool:
    """Whether numba has yet to start in this process (its start-up then counts in the costs)."""
    return "numba" not in sys.modules


#: Estimated seconds the calls planned while numba was cold have lost by avoiding it.
_rent_paid = 0.0


def _pay_rent(seconds: float) -> None:
    """Ski rental: small calls avoid numba's start-up while it would cost more than it saves,
    but once their accumulated loss reaches the start-up, numba is started (imported here; the
    next plans are made warm), so a long run of small calls loses at most twice the optimum."""
    global _rent_paid
    _rent_paid += seconds
    if _rent_paid >= COMPILER_STARTUP_SECONDS:
        import numba  # noqa: F401


MODES = ("heuristic", "measure")
#: In the measuring mode, candidates estimated this many times slower than the best estimate are not timed.
MEASURE_WITHIN = 8.0
#: Timed calls per measured candidate (after one warm-up call).
MEASURE_REPEATS = 3


def _env_mode() -> str:
    mode = os.environ.get("FASTCONV_PLANNER", "heuristic")
    if mode not in MODES:
        raise ValueError(f"$FASTCONV_PLANNER={mode!r} is not one of {MODES}")
    return mode


_mode: str = _env_mode()
_persist: bool = os.environ.get("FASTCONV_PLANNER_PERSIST", "") not in ("", "0")


def set_planner_mode(mode: str = "heuristic", *, persist: bool = False) -> None:
    """Choose how the planner picks: 'heuristic' (cost estimates, the default) or 'measure'.

    'measure' times the plausible candidates once per (geometry, dtype, op, thread count)
    and keeps the fastest, like ``torch.backends.cudnn.benchmark``: the first call of each
    new shape is slower, later ones are as fast as this machine allows. ``persist=True``
    keeps the measurements on disk (``$FASTCONV_CACHE_DIR/plans.json``, default
    ``~/.cache/fastconv``) for later processes; they are discarded when the library version
    or CPU model changes.

    Examples
    --------
    >>> import fastconv
    >>> fastconv.set_planner_mode("measure")
    >>> fastconv.get_planner_mode()
    'measure'
    >>> fastconv.set_planner_mode("heuristic")
    """
    global _mode, _persist
    if mode not in MODES:
        raise ValueError(f"set_planner_mode: mode={mode!r} is not one of {MODES}")
    _mode, _persist = mode, bool(persist)


def get_planner_mode() -> str:
    """'heuristic' or 'measure' (see :func:`set_planner_mode`)."""
    return _mode


def clear_plan_cache() -> None:
    """Forget every plan and in-memory measurement (a persisted file stays; delete it to forget those)."""
    _plan.cache_clear()
    _store().clear()


@functools.cache
def _store():
    from ._measure import MeasurementStore
    return MeasurementStore()


def plan(geom: ConvGeometry, dtype, op: str = "forward", algorithm: str | None = None) -> Plan:
    """The plan for one call. ``algorithm`` forces one algorithm (either of its routes).

    Raises ValueError when the forced algorithm does not exist or declines the call,
    naming the reasons.
    """
    # The settings algorithms consult, the thread count and the mode are part of the key, so changing them re-plans.
    return _plan(geom, np.dtype(dtype), op, algorithm, _mode, _persist, _threads.get_num_threads(), _compiler_cold(),
                 _config.max_relative_error, _config.workspace_bytes)


@functools.lru_cache(maxsize=4096)
def _plan(geom: ConvGeometry, dtype: np.dtype, op: str, algorithm: str | None, mode: str, persist: bool,
          threads: int, cold: bool, *settings) -> Plan:
    if op not in OPS:
        raise ValueError(f"plan: op={op!r} is not one of {OPS}")
    if algorithm is not None and algorithm not in ALGORITHMS:
        raise ValueError(f"algorithm={algorithm!r} is unknown; choose one of {sorted(ALGORITHMS)} or None")
    names = [algorithm] if algorithm else list(ALGORITHMS)
    candidates = _candidates(geom, dtype, op, names, cold)
    viable = [c for c in candidates if c.cost is not None]
    if not viable:
        # each reason starts with its algorithm's name (Algorithm.supports); the route is added
        reasons = "; ".join(c.reason if c.route == "native" else f"{c.reason} ({c.route})" for c in candidates)
        raise ValueError(f"algorithm={algorithm!r} cannot run this {op} ({reasons}); use algorithm=None")
    # Prefer native routes on ties: they avoid the adjoint's array transforms.
    choice = min(viable, key=lambda c: (c.cost, c.route != "native"))
    warm_best = min(c.cost - c.startup for c in viable)
    rent = choice.cost - warm_best if cold and not choice.startup and algorithm is None else 0.0
    heuristic = Plan(op, geom, dtype, choice, tuple(candidates), algorithm, threads, rent)
    if mode != "measure" or len(viable) == 1:
        return heuristic
    key = "|".join(map(repr, (op, dtype.name, threads, settings, geom)))
    return measure(heuristic, key=key, persist=persist)


def measure(heuristic: Plan, *, within: float = MEASURE_WITHIN, repeats: int = MEASURE_REPEATS,
            key: str | None = None, persist: bool = False, settle: float = 0.0) -> Plan:
    """``heuristic`` with its plausible candidates timed and the fastest chosen.

    Candidates estimated more than ``within`` times the best estimate are not timed. With
    a ``key``, times are looked up in and added to the measurement store (on disk too when
    ``persist``). A candidate that raises while timed is rejected with the error as its reason.
    ``settle`` (seconds) precedes each timed call with untimed calls of the same candidate, so
    that each is timed in its steady state rather than right after another's (``_measure``).
    """
    from . import _measure

    viable = [c for c in heuristic.candidates if c.cost is not None]
    best_estimate = min(c.cost for c in viable)
    timed = [c for c in viable if c.cost <= within * best_estimate]
    times = dict(_store().get(key, persist)) if key else {}
    todo = {}
    operands = None
    for c in timed:
        if _label_key(c) in times:
            continue
        operands = operands or _measure.synthetic_operands(heuristic.geom, heuristic.dtype, heuristic.op)
        todo[_label_key(c)] = functools.partial(replace(heuristic, choice=c).execute, *operands)
    fresh, failures = _measure.race(todo, repeats, settle=settle)
    times.update(fresh)
    if key and fresh:
        _store().put(key, fresh, persist)
    candidates = tuple(
        replace(c, reason=f"failed when measured: {failures[_label_key(c)]}", cost=None) if _label_key(c) in failures
        else replace(c, measured=times.get(_label_key(c)))
        for c in heuristic.candidates)
    measured = [c for c in candidates if c.measured is not None]
    if measured:
        choice = min(measured, key=lambda c: (c.measured, c.route != "native"))
    else:  # every timed candidate failed: the best estimate among the rest (or the failure, surfacing the error)
        rest = [c for c in candidates if c.cost is not None]
        choice = min(rest, key=lambda c: c.cost) if rest else heuristic.choice
    return replace(heuristic, choice=choice, candidates=candidates)


def _label_key(c: Candidate) -> str:
    return f"{c.algorithm}/{c.route}"


def plan_for(function: str, input_shape, weight_shape, dtype="float32", *, stride=1, padding=0, dilation=1,
             groups: int = 1, output_padding=0, algorithm: str | None = None) -> Plan:
    """The plan a public function would use, without running it.

    ``function`` is a public name ('conv2d', 'conv_transpose3d', 'conv2d_input', 'conv2d_weight', ...);
    shapes are batched. For gradients, ``input_shape`` is the forward input's shape.

    Examples
    --------
    >>> import fastconv
    >>> p = fastconv.plan_for("conv2d", (1, 64, 32, 32), (128, 64, 1, 1))  # a 1x1 layer: one matrix product
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
