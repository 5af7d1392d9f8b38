"""How good is the default heuristic? Over the suite, time every viable candidate and compare.

For each case: the heuristic's pick (no measurement), the measured fastest candidate, and
``time of the pick / time of the fastest`` (1.0 = the heuristic chose the best). Prints the
median and 95th percentile of that ratio (targets: <= 1.2 and <= 1.5) and, per algorithm, how
far its estimates are from its measured times (to refit fastconv/_cost_model.py).

    python benchmarks/planner_quality.py [--cases resnet50 ...] [--threads N] [--repeats 3] [--json PATH]

Candidates estimated more than --within times the best estimate are not timed (the
reference oracle would take minutes on the 3-D cases); they count as slower than every timed one.
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
from fastconv import planner
from fastconv._cli_bench import load_cases


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q, method="linear"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--suite", type=Path, default=None)
    parser.add_argument("--cases", nargs="*", default=[])
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--within", type=float, default=30.0)
    parser.add_argument("--json", type=Path, default=None, help="write the per-case results here")
    args = parser.parse_args()
    fastconv.set_num_threads(args.threads)
    _, cases = load_cases(args.suite)
    cases = [c for c in cases if not args.cases or any(s in c.name for s in args.cases)]
    rows, errors = [], {}
    print(f"{fastconv.get_num_threads()} thread(s); algorithms: {', '.join(planner.ALGORITHMS)}", file=sys.stderr)
    print(f"{'case':<22} {'heuristic pick':<30} {'measured best':<30} {'pick/best':>9}  measured ms (estimated ms)")
    for case in cases:
        heuristic = case.plan()
        measured = planner.measure(heuristic, within=args.within, repeats=args.repeats)
        timed = {c.label: c for c in measured.candidates if c.measured is not None}
        best = measured.choice
        pick = timed.get(heuristic.choice.label)
        ratio = pick.measured / best.measured if pick else math.inf
        for c in timed.values():
            errors.setdefault(c.algorithm, []).append(c.cost / c.measured)
        detail = ", ".join(f"{label} {c.measured * 1e3:.3g} ({c.cost * 1e3:.3g})"
                           for label, c in sorted(timed.items(), key=lambda kv: kv[1].measured))
        print(f"{case.name:<22} {heuristic.choice.label:<30} {best.label:<30} {ratio:9.2f}  {detail}", flush=True)
        rows.append({"case": case.name, "pick": heuristic.choice.label, "best": best.label, "ratio": ratio,
                     "measured_s": {k: c.measured for k, c in timed.items()},
                     "estimated_s": {k: c.cost for k, c in timed.items()}})
    ratios = [r["ratio"] for r in rows]
    print(f"\npick/best over {len(rows)} cases: median {statistics.median(ratios):.2f} (target <= 1.2), "
          f"95th percentile {percentile(ratios, 95):.2f} (target <= 1.5), worst {max(ratios):.2f}; "
          f"best picked in {sum(r == 1.0 for r in ratios)} cases")
    print("estimate / measured per algorithm (geometric mean, spread): "
          + "; ".join(f"{a} {math.exp(statistics.fmean(map(math.log, e))):.2g} "
                      f"[{min(e):.2g}..{max(e):.2g}]" for a, e in errors.items()))
    if args.json:
        args.json.write_text(json.dumps({"threads": fastconv.get_num_threads(), "cases": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
