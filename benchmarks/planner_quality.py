"""How good is the default heuristic? Over the suite, time every viable candidate and compare.

For each case: the heuristic's pick (no measurement), the measured fastest candidate, and
``time of the pick / time of the fastest`` (1.0 = the heuristic chose the best). Prints the
median and 95th percentile of that ratio (targets: <= 1.2 and <= 1.5) and, per algorithm, how
far its estimates are from its measured times.

    python benchmarks/planner_quality.py [--cases resnet50 ...] [--threads N] [--repeats 3] [--settle S] [--json PATH]
    python benchmarks/planner_quality.py --from-json RUN1.json RUN2.json ... --fit

``--from-json`` combines earlier runs (per candidate, the median of its measured times), which
tames the noise of a shared machine. ``--fit`` searches one factor per algorithm (``fastconv._cost_model.CALIBRATION``) that
minimises the geometric mean of pick/best (ties: the 95th percentile) over the measured cases,
and prints the factors and the quality they would give: the provenance of CALIBRATION.

Candidates estimated more than --within times the best estimate are not timed (the
reference oracle would take minutes on the 3-D cases); a heuristic that picks one counts as
infinitely wrong.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
from pathlib import Path

import numpy as np

import fastconv
from fastconv import _cost_model, planner
from fastconv._cli_bench import SETTLE_SECONDS, load_cases


def measure_suite(args) -> list[dict]:
    """Per case: every viable candidate's estimate, the measured times of those timed, and the heuristic's pick."""
    _, cases = load_cases(args.suite)
    cases = [c for c in cases if not args.cases or any(s in c.name for s in args.cases)]
    print(f"{fastconv.get_num_threads()} thread(s); algorithms: {', '.join(planner.ALGORITHMS)}", file=sys.stderr)
    rows = []
    for case in cases:
        heuristic = case.plan()
        measured = planner.measure(heuristic, within=args.within, repeats=args.repeats, settle=args.settle)
        viable = [c for c in measured.candidates if c.cost is not None]
        rows.append({"case": case.name, "pick": heuristic.choice.label,
                     "estimated_s": {c.label: c.cost for c in viable},
                     "measured_s": {c.label: c.measured for c in viable if c.measured is not None}})
        print(_line(rows[-1]), flush=True)
    return rows


def _algorithm(label: str) -> str:
    return label.split(" ")[0]


def _ratio(row: dict, pick: str) -> float:
    times = row["measured_s"]
    return times[pick] / min(times.values()) if pick in times else math.inf


def _line(row: dict) -> str:
    times, est = row["measured_s"], row["estimated_s"]
    best = min(times, key=times.get)
    detail = ", ".join(f"{label} {t * 1e3:.3g} ({est[label] * 1e3:.3g})" for label, t in sorted(times.items(),
                                                                                              key=lambda kv: kv[1]))
    return f"{row['case']:<22} {row['pick']:<24} {best:<24} {_ratio(row, row['pick']):9.2f}  {detail}"


def quality(ratios: list[float]) -> str:
    return (f"median {statistics.median(ratios):.2f} (target <= 1.2), 95th percentile "
            f"{float(np.percentile(ratios, 95)):.2f} (target <= 1.5), worst {max(ratios):.2f}; "
            f"best picked in {sum(r == 1.0 for r in ratios)} of {len(ratios)} cases")


def picks(rows: list[dict], factors: dict[str, float]) -> list[str]:
    """What the heuristic would pick with its estimates scaled by ``factors`` per algorithm (ties: native)."""
    return [min(row["estimated_s"], key=lambda label: (row["estimated_s"][label] * factors.get(_algorithm(label), 1.0),
                                                       "via" in label)) for row in rows]


def _objective(rows: list[dict], factors: dict[str, float]) -> tuple[float, float]:
    ratios = [_ratio(row, pick) for row, pick in zip(rows, picks(rows, factors))]
    if math.inf in ratios:
        return math.inf, math.inf
    return statistics.fmean(map(math.log, ratios)), float(np.percentile(ratios, 95))


def fit(rows: list[dict], sweeps: int = 4) -> dict[str, float]:
    """Per-algorithm factors on top of the current estimates, by coordinate descent over a log grid (gemm fixed at 1)."""
    names = sorted({_algorithm(label) for row in rows for label in row["estimated_s"]} - {"gemm"})
    factors = {name: 1.0 for name in names}
    grid = [2 ** (k / 4) for k in range(-16, 17)]
    for _ in range(sweeps):
        for name in names:
            factors[name] = min(grid, key=lambda f: (_objective(rows, {**factors, name: f}), abs(math.log(f))))
    return factors


def combine(runs: list[dict]) -> dict:
    """One result from several runs on the same suite: per candidate, the median of its measured times."""
    cases = []
    for rows in zip(*(run["cases"] for run in runs)):
        times = {}
        for row in rows:
            for label, t in row["measured_s"].items():
                times.setdefault(label, []).append(t)
        cases.append({**rows[0], "measured_s": {label: statistics.median(t) for label, t in times.items()}})
    return {**runs[0], "cases": cases}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--suite", type=Path, default=None)
    parser.add_argument("--cases", nargs="*", default=[])
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--within", type=float, default=30.0)
    parser.add_argument("--settle", type=float, default=SETTLE_SECONDS,
                        help="seconds of untimed calls before each timed one (default: fastconv bench's), so that "
                             "candidates are compared in their steady states, as the benchmark times them")
    parser.add_argument("--json", type=Path, default=None, help="write the per-case results here")
    parser.add_argument("--from-json", type=Path, nargs="+", default=None,
                        help="combine earlier results instead of measuring")
    parser.add_argument("--fit", action="store_true", help="fit per-algorithm calibration factors")
    args = parser.parse_args()
    import numba  # noqa: F401  # the heuristic as planned once numba runs (its cold-start rule aside)
    fastconv.set_num_threads(args.threads)
    print(f"{'case':<22} {'heuristic pick':<24} {'measured best':<24} {'pick/best':>9}  measured ms (estimated ms)")
    if args.from_json:
        data = combine([json.loads(p.read_text()) for p in args.from_json])
        rows = data["cases"]
        for row in rows:
            print(_line(row))
    else:
        rows = measure_suite(args)
        data = {"threads": fastconv.get_num_threads(), "calibration": dict(_cost_model.CALIBRATION), "cases": rows}
    print(f"\npick/best over {len(rows)} cases: {quality([_ratio(r, r['pick']) for r in rows])}")
    spread = {}
    for row in rows:
        for label, t in row["measured_s"].items():
            spread.setdefault(_algorithm(label), []).append(row["estimated_s"][label] / t)
    print("estimate / measured per algorithm (geometric mean, range): " + "; ".join(
        f"{a} {math.exp(statistics.fmean(map(math.log, e))):.2g} [{min(e):.2g}..{max(e):.2g}]"
        for a, e in spread.items()))
    if args.json:
        args.json.write_text(json.dumps(data, indent=1))
    if args.fit:
        factors = fit(rows)
        base = data.get("calibration", {})
        new = {name: round(base.get(name, 1.0) * f, 3) for name, f in factors.items() if f != 1.0 or name in base}
        ratios = [_ratio(row, pick) for row, pick in zip(rows, picks(rows, factors))]
        print(f"\nfitted factors (multiply the current estimates): {factors}\n"
              f"CALIBRATION = {new}\nwith them: {quality(ratios)}")
        for row, pick in zip(rows, picks(rows, factors)):
            if pick != row["pick"]:
                print(f"  {row['case']}: {row['pick']} -> {pick} ({_ratio(row, row['pick']):.2f} -> "
                      f"{_ratio(row, pick):.2f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
