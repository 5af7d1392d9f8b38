"""Start-up costs, each measured in fresh subprocesses (medians):

* ``import fastconv``: wall time beyond ``import numpy`` and -X importtime's figure, and
  which heavy modules (numba, scipy, torch, dask) the import pulled in (should be none);
* the first call of each algorithm and op in a fresh process, beyond a warm call: what a user
  pays for loading compiled numba kernels from the on-disk cache, plus numba's own start-up
  (importing numba, and its target context, which imports scipy.linalg when SciPy is installed)
  for the first one. One process per (algorithm, op), after one process that fills the cache;
  measured again with numba initialised beforehand, which isolates the kernels' own load time.
  Wall and CPU seconds: on a loaded machine the CPU figure is the better estimate.

    python benchmarks/startup.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time

#: Small calls, one per kind of layer, so that every algorithm finds a geometry it accepts.
PROBES = [
    ("conv2d", (1, 8, 12, 12), (8, 8, 3, 3), dict(padding=1)),
    ("conv2d", (1, 8, 12, 12), (8, 1, 3, 3), dict(padding=1, groups=8)),
    ("conv2d", (1, 4, 40, 40), (4, 1, 15, 15), dict(padding=7, groups=4)),
    ("conv2d", (1, 8, 12, 12), (8, 8, 3, 3), dict(stride=2, padding=1)),
    ("conv1d", (1, 8, 64), (8, 8, 3), dict(padding=1)),
    ("conv3d", (1, 4, 8, 8, 8), (4, 4, 3, 3, 3), dict(padding=1)),
    ("conv_transpose2d", (1, 8, 8, 8), (8, 4, 2, 2), dict(stride=2)),
    ("conv_transpose2d", (1, 8, 8, 8), (8, 4, 4, 4), dict(stride=2, padding=1)),
    ("conv_transpose3d", (1, 4, 4, 4, 4), (4, 4, 2, 2, 2), dict(stride=2)),
    # channel-blocked kernels: 16 input channels a block; 32 outputs a phase for subpixel_blocked
    ("conv2d", (1, 16, 12, 12), (32, 16, 3, 3), dict(padding=1)),
    ("conv2d", (1, 32, 12, 12), (32, 32, 4, 4), dict(stride=2, padding=1)),
]

_FIRST_CALL = """
import json, sys, time
import numpy as np
import fastconv
from fastconv import functional, grad
function, x, w, kw, alg, op, preinit = json.loads(sys.argv[1])
if preinit:
    import numba
    from numba.core.registry import cpu_target
    cpu_target.target_context.refresh()
rng = np.random.default_rng(0)
xa, wa = rng.standard_normal(x, dtype=np.float32), rng.standard_normal(w, dtype=np.float32)
planned = fastconv.plan_for(function + {"forward": "", "input_grad": "_input", "weight_grad": "_weight"}[op]
                            if not function.startswith("conv_transpose") else function, x, w, algorithm=alg, **kw)
geom = planned.geom
if op == "forward":
    call = lambda: getattr(functional, function)(xa, wa, algorithm=alg, **kw)
elif op == "input_grad":
    dy = rng.standard_normal(geom.output_shape, dtype=np.float32)
    call = lambda: getattr(grad, function + "_input")(x, wa, dy, algorithm=alg, **kw)
else:
    dy = rng.standard_normal(geom.output_shape, dtype=np.float32)
    call = lambda: getattr(grad, function + "_weight")(xa, w, dy, algorithm=alg, **kw)
def timed():
    t0, c0 = time.perf_counter(), time.process_time()
    call()
    return time.perf_counter() - t0, time.process_time() - c0
first = timed()
warm = min(timed() for _ in range(3))
print(json.dumps([first, warm, "numba" in sys.modules, planned.choice.label]))
"""


def _python(code: str, *args: str) -> str:
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, check=True).stdout


def _wall(code: str, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        _python(code)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def import_cost(repeats: int) -> dict:
    """Median seconds: fastconv's own -X importtime total, and the wall time beyond python and numpy."""
    own, beyond = [], []
    for _ in range(repeats):
        err = subprocess.run([sys.executable, "-X", "importtime", "-c", "import fastconv"], capture_output=True,
                             text=True, check=True).stderr
        cumulative = {line.split("|")[2].strip(): int(line.split("|")[1]) / 1e6
                      for line in err.splitlines() if line.startswith("import time:") and "|" in line
                      and line.split("|")[1].strip().isdigit()}
        own.append(cumulative["fastconv"])
        beyond.append(cumulative["fastconv"] - cumulative.get("numpy", 0.0))
    cpu = statistics.median(float(_python("import time; c = time.process_time(); import fastconv; "
                                          "print(time.process_time() - c)")) for _ in range(repeats))
    heavy = _python("import sys, fastconv; print([m for m in ('numba', 'scipy', 'torch', 'dask', 'threadpoolctl') "
                    "if m in sys.modules])").strip()
    bare, numpy_only = _wall("pass", repeats), _wall("import numpy", repeats)
    with_fastconv = _wall("import fastconv", repeats)
    return {"cpu_fastconv_s": cpu, "importtime_fastconv_s": statistics.median(own), "importtime_beyond_numpy_s": statistics.median(beyond),
            "wall_python_s": bare, "wall_numpy_s": numpy_only,
            "wall_fastconv_s": with_fastconv, "beyond_numpy_s": with_fastconv - numpy_only, "heavy_modules": heavy}


def first_calls() -> list[dict]:
    """Per algorithm and op it runs natively: first call in a fresh process minus a warm call (seconds)."""
    import fastconv
    from fastconv.algorithms import ALGORITHMS
    rows = []
    for name, alg in ALGORITHMS.items():
        if name == "reference":
            continue
        for op in alg.native_ops:
            probe = _probe_for(fastconv, name, op)
            if probe is None:
                rows.append({"algorithm": name, "op": op, "note": "no probe it accepts"})
                continue
            _python(_FIRST_CALL, json.dumps([*probe, name, op, False]))  # fills the on-disk kernel cache if empty
            row = {"algorithm": name, "op": op, "probe": probe[:3]}
            for preinit in (False, True):
                first, warm, row["numba"], _ = json.loads(_python(_FIRST_CALL, json.dumps([*probe, name, op, preinit])))
                tag = "_preinit" if preinit else ""
                row[f"extra_wall{tag}_s"] = first[0] - warm[0]
                row[f"extra_cpu{tag}_s"] = first[1] - warm[1]
            rows.append(row)
    return rows


def planned_first_calls() -> list[dict]:
    """Per probe, with the planner's own choice (no forced algorithm): the first call in a fresh
    process minus a warm call. Until numba has started the planner counts its start-up against
    the compiled algorithms, so these small calls run on NumPy-only ones."""
    rows = []
    for fn, x, w, kw in PROBES:
        first, warm, numba_loaded, choice = json.loads(_python(_FIRST_CALL, json.dumps([fn, x, w, kw, None,
                                                                                        "forward", False])))
        rows.append({"algorithm": choice, "op": "forward", "probe": (fn, x, w), "numba": numba_loaded,
                     "extra_wall_s": first[0] - warm[0], "extra_cpu_s": first[1] - warm[1]})
    return rows


def _probe_for(fastconv, name: str, op: str):
    function = {"forward": "", "input_grad": "_input", "weight_grad": "_weight"}[op]
    for fn, x, w, kw in PROBES:
        if op != "forward" and fn.startswith("conv_transpose"):
            continue
        try:
            fastconv.plan_for(fn + function, x, w, algorithm=name, **kw)
        except ValueError:
            continue
        return fn, x, w, kw
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    imp = import_cost(args.repeats)
    print(f"import fastconv: {imp['importtime_fastconv_s'] * 1e3:.0f} ms by -X importtime, "
          f"{imp['importtime_beyond_numpy_s'] * 1e3:.0f} ms of it beyond numpy; {imp['cpu_fastconv_s'] * 1e3:.0f} ms CPU; "
          f"wall {imp['wall_fastconv_s'] * 1e3:.0f} ms vs {imp['wall_numpy_s'] * 1e3:.0f} ms for numpy alone and "
          f"{imp['wall_python_s'] * 1e3:.0f} ms for a bare python; heavy modules imported: {imp['heavy_modules']}")
    print("\nfirst call in a fresh process (kernels cached on disk), ms beyond a warm call; "
          "'kernel only': numba initialised beforehand")
    print(f"{'algorithm':<12} {'op':<12} {'probe':<40} {'wall':>6} {'cpu':>6} {'kernel only: wall':>18} {'cpu':>6}  numba")
    for row in first_calls():
        if "note" in row:
            print(f"{row['algorithm']:<12} {row['op']:<12} {row['note']}")
            continue
        probe = f"{row['probe'][0]} {row['probe'][1]}x{row['probe'][2]}"
        print(f"{row['algorithm']:<12} {row['op']:<12} {probe:<40} {row['extra_wall_s'] * 1e3:6.0f} "
              f"{row['extra_cpu_s'] * 1e3:6.0f} {row['extra_wall_preinit_s'] * 1e3:18.0f} "
              f"{row['extra_cpu_preinit_s'] * 1e3:6.0f}  {row['numba']}")
    print("\nfirst call in a fresh process with the planner's choice (no algorithm forced), ms beyond a warm call")
    print(f"{'planned':<16} {'probe':<48} {'wall':>6} {'cpu':>6}  numba")
    for row in planned_first_calls():
        probe = f"{row['probe'][0]} {row['probe'][1]}x{row['probe'][2]}"
        print(f"{row['algorithm']:<16} {probe:<48} {row['extra_wall_s'] * 1e3:6.0f} {row['extra_cpu_s'] * 1e3:6.0f}"
              f"  {row['numba']}")


if __name__ == "__main__":
    main()
