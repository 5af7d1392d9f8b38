"""The planner before numba has started: small calls run on NumPy-only algorithms, numba starts
when a call (or the small calls together, ski-rental style) would save more than its start-up.

Each test runs in a fresh interpreter: in this one numba is already imported (conftest)."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np

import fastconv
from fastconv._cost_model import COMPILER_STARTUP_SECONDS


def _fresh(code: str) -> dict:
    """Run ``code`` in a fresh interpreter; it prints one JSON object as its last line."""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_a_small_first_call_runs_without_starting_numba():
    out = _fresh("""
import json, sys
import numpy as np, fastconv
rng = np.random.default_rng(0)
x, w = rng.standard_normal((2, 8, 16, 16)), rng.standard_normal((8, 8, 3, 3))
plan = fastconv.plan_for("conv2d", x.shape, w.shape, "float64", padding=1)
y = fastconv.conv2d(x, w, padding=1)
print(json.dumps({"choice": plan.choice.algorithm, "startup": plan.choice.startup, "explain": plan.explain(),
                  "numba": "numba" in sys.modules, "y": y.ravel().tolist()}))
""")
    assert not out["numba"] and out["startup"] == 0
    assert not fastconv.algorithms.ALGORITHMS[out["choice"]].compiled
    assert "one-time numba start-up" in out["explain"]
    rng = np.random.default_rng(0)
    x, w = rng.standard_normal((2, 8, 16, 16)), rng.standard_normal((8, 8, 3, 3))
    expected = fastconv.conv2d(x, w, padding=1, algorithm="reference")
    np.testing.assert_allclose(np.array(out["y"]).reshape(expected.shape), expected, rtol=1e-12, atol=1e-12)


def test_small_calls_start_numba_once_their_loss_reaches_its_start_up():
    out = _fresh("""
import json, sys
import numpy as np, fastconv
x = np.ones((2, 64, 48, 48), np.float32)  # fft ~20 ms, estimated ~18 ms slower than gemm once warm
w = np.ones((64, 64, 3, 3), np.float32)
calls = []
for i in range(100):
    plan = fastconv.plan_for("conv2d", x.shape, w.shape, stride=2, padding=1)
    calls.append([plan.choice.algorithm, plan.rent, "numba" in sys.modules])
    fastconv.conv2d(x, w, stride=2, padding=1)
    if calls[-1][2]:
        break
print(json.dumps(calls))
""")
    cold = [c for c in out if not c[2]]
    assert cold and out[-1][2], "numba never started"
    assert all(rent > 0 for _, rent, _ in cold)  # each cold call was estimated slower than a compiled one
    paid = sum(rent for _, rent, _ in cold)
    assert paid >= COMPILER_STARTUP_SECONDS and paid - cold[-1][1] < COMPILER_STARTUP_SECONDS
    assert fastconv.algorithms.ALGORITHMS[out[-1][0]].compiled  # warm: the compiled algorithm now wins


def test_once_numba_runs_no_cost_counts_its_start_up():
    plan = fastconv.plan_for("conv2d", (1, 8, 16, 16), (8, 8, 3, 3), padding=1)
    assert all(c.startup == 0 for c in plan.candidates) and plan.rent == 0
