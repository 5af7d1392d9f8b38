"""Small calls: the planner's choice and its time per call, where fixed costs dominate.

Each checkout (this one, and optionally ``--against`` another, e.g. a ``git worktree`` of an
older commit) is timed in its own fresh processes, alternating round by round so that both see
the same minutes of a noisy machine; per call, the median of 300 timed calls after 30 untimed.

    python benchmarks/small_calls.py [--against PATH] [--rounds 4]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

#: (input shape, weight shape, keyword arguments) of each small call.
CALLS = [
    ((1, 16, 8, 8), (16, 1, 3, 3), {"padding": 1, "groups": 16}),
    ((1, 8, 12, 12), (8, 8, 3, 3), {"padding": 1}),
    ((1, 8, 64), (8, 8, 3), {"padding": 1}),
    ((2, 32, 16, 16), (32, 32, 3, 3), {"padding": 1}),
    ((1, 4, 8, 8, 8), (4, 4, 3, 3, 3), {"padding": 1}),
    ((1, 32, 16, 16), (32, 1, 5, 5), {"padding": 2, "groups": 32}),
]

_TIMER = r'''
import json, sys, time
sys.path.insert(0, sys.argv[1])
import numba  # noqa: F401  # started: the planner's cold-start rule is not what is measured
import numpy as np
import fastconv
rng = np.random.default_rng(0)
out = []
for xs, ws, kw in json.loads(sys.argv[2]):
    x, w = rng.standard_normal(xs, dtype=np.float32), rng.standard_normal(ws, dtype=np.float32)
    name = f"conv{len(xs) - 2}d"
    call = lambda: getattr(fastconv, name)(x, w, **kw)
    for _ in range(30):
        call()
    times = []
    for _ in range(300):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    out.append([float(np.median(times)), fastconv.plan_for(name, xs, ws, **kw).choice.algorithm])
print(json.dumps(out))
'''


def time_checkout(path: Path) -> list[tuple[float, str]]:
    done = subprocess.run([sys.executable, "-c", _TIMER, str(path), json.dumps(CALLS)], capture_output=True,
                          text=True, check=True)
    return [tuple(row) for row in json.loads(done.stdout.strip().splitlines()[-1])]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--against", type=Path, help="another checkout of fastconv to compare with")
    parser.add_argument("--rounds", type=int, default=4)
    args = parser.parse_args()
    checkouts = {"this": Path(__file__).resolve().parents[1]}
    if args.against:
        checkouts["other"] = args.against.resolve()
    runs = {name: [] for name in checkouts}
    for _ in range(args.rounds):
        for name, path in checkouts.items():
            runs[name].append(time_checkout(path))
    print("| call | " + " | ".join(f"{name} checkout" for name in checkouts) + (" | ratio |" if args.against else " |"))
    print("|---" * (len(checkouts) + 1 + bool(args.against)) + "|")
    for i, (xs, ws, kw) in enumerate(CALLS):
        cells, medians = [], []
        for name in checkouts:
            median = statistics.median(run[i][0] for run in runs[name])
            medians.append(median)
            cells.append(f"{median * 1e6:.0f} us ({runs[name][0][i][1]})")
        ratio = f" | {medians[0] / medians[1]:.2f}" if args.against else ""
        print(f"| {xs} x {ws} {kw} | " + " | ".join(cells) + ratio + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
