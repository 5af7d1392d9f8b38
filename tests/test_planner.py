"""The planner: explain(), forced algorithms, the measuring mode and its caches (memory, disk, invalidation).

Timings are never asserted: the measuring mode is tested with injected times.
"""

import json

import numpy as np
import pytest

import fastconv
from fastconv import _measure, planner
from fastconv._cost_model import CALL_SECONDS
from fastconv.algorithms import ALGORITHMS
from fastconv.algorithms._base import Algorithm

SHAPES = dict(function="conv2d", input_shape=(2, 4, 9, 9), weight_shape=(6, 4, 3, 3), padding=1)


class Fake(Algorithm):
    """Claims to be cheaper than every other algorithm, declines groups > 1, counts its calls, computes like reference."""

    name = "fake"

    def __init__(self, fail: bool = False):
        self.calls = 0
        self.fail = fail

    def supports(self, geom, dtype, op):
        return "fake: groups > 1" if geom.groups > 1 else None

    def cost(self, geom, dtype, op):
        others = [alg.cost(geom, dtype, op) + CALL_SECONDS.get(name, 0.0) for name, alg in ALGORITHMS.items()
                  if name != self.name and op in alg.native_ops and alg.supports(geom, dtype, op) is None]
        return 0.5 * min(others)  # of the planner's estimates, per-call overheads included

    def forward(self, x, w, geom):
        self.calls += 1
        if self.fail:
            raise RuntimeError("broken kernel")
        return ALGORITHMS["reference"].forward(x, w, geom)


@pytest.fixture(autouse=True)
def fresh_planner(monkeypatch, tmp_path):
    monkeypatch.setenv("FASTCONV_CACHE_DIR", str(tmp_path / "cache"))
    planner.clear_plan_cache()
    yield
    planner.set_planner_mode("heuristic")
    planner.clear_plan_cache()


@pytest.fixture
def fake(monkeypatch):
    alg = Fake()
    monkeypatch.setitem(ALGORITHMS, "fake", alg)
    planner.clear_plan_cache()
    return alg


def plan(**overrides):
    kw = dict(SHAPES, **overrides)
    return fastconv.plan_for(kw.pop("function"), kw.pop("input_shape"), kw.pop("weight_shape"), **kw)


def fixed_times(monkeypatch, seconds: dict[str, float]):
    """Make the measuring mode see these medians (algorithm name -> seconds; others 1 s) instead of real timings."""
    real_race = _measure.race

    def fake_race(calls, repeats, **kw):
        _, failures = real_race(calls, 1, **kw)
        # algorithms the test does not name are registered by others: they come last
        return {label: seconds.get(label.split("/")[0], 1.0) for label in calls if label not in failures}, failures
    monkeypatch.setattr(_measure, "race", fake_race)


def test_explain_lists_every_algorithm_with_costs_and_the_choice():
    text = plan().explain()
    assert "forward (2, 4, 9, 9) * (6, 4, 3, 3) -> (2, 6, 9, 9), float32" in text
    p = plan()
    # algorithms without a forward method have no route to a forward call
    assert {c.algorithm for c in p.candidates} == {n for n, alg in ALGORITHMS.items() if "forward" in alg.native_ops}
    for c in p.candidates:
        assert c.label in text
    chosen = [line for line in text.splitlines() if line.lstrip().startswith("->")]
    assert len(chosen) == 1 and plan().choice.algorithm in chosen[0]
    assert "estimated" in chosen[0] and "ms" in chosen[0]


def test_explain_shows_rejection_reasons_and_gradient_routes(fake):
    text = plan(groups=2, weight_shape=(6, 2, 3, 3)).explain()
    assert "fake" in text and "rejected: fake: groups > 1" in text
    grad = plan(function="conv2d_input").explain()
    assert "(via forward)" in grad


def test_heuristic_takes_the_cheapest_estimate(fake):
    assert plan().choice.algorithm == "fake"
    assert plan(groups=2, weight_shape=(6, 2, 3, 3)).choice.algorithm != "fake"


def test_forced_unknown_algorithm_names_the_choices():
    with pytest.raises(ValueError, match="algorithm='nope' is unknown.*gemm"):
        plan(algorithm="nope")
    x, w = np.ones((1, 4, 5, 5), np.float32), np.ones((2, 4, 3, 3), np.float32)
    with pytest.raises(ValueError, match="conv2d.*nope"):
        fastconv.conv2d(x, w, algorithm="nope")


def test_forced_declining_algorithm_says_why(fake):
    with pytest.raises(ValueError, match="fake: groups > 1"):
        plan(groups=2, weight_shape=(6, 2, 3, 3), algorithm="fake")
    forced = plan(algorithm="fake")
    assert forced.forced == "fake" and {c.algorithm for c in forced.candidates} == {"fake"}
    assert "forced algorithm='fake'" in forced.explain()


def test_mode_setting_round_trip_and_validation():
    assert fastconv.get_planner_mode() == "heuristic"
    fastconv.set_planner_mode("measure")
    assert fastconv.get_planner_mode() == "measure"
    with pytest.raises(ValueError, match="set_planner_mode: mode='fast'"):
        fastconv.set_planner_mode("fast")


def test_environment_chooses_the_mode(monkeypatch):
    monkeypatch.setenv("FASTCONV_PLANNER", "measure")
    assert planner._env_mode() == "measure"
    monkeypatch.setenv("FASTCONV_PLANNER", "quick")
    with pytest.raises(ValueError, match="FASTCONV_PLANNER='quick'"):
        planner._env_mode()


def test_measure_mode_picks_the_fastest_measured(monkeypatch, fake):
    rng = np.random.default_rng(1)
    x, w = rng.standard_normal((2, 4, 9, 9)), rng.standard_normal((6, 4, 3, 3))
    expected = fastconv.conv2d(x, w, padding=1)
    fixed_times(monkeypatch, {"fake": 5e-3, "gemm": 1e-3, "reference": 2e-3})
    fastconv.set_planner_mode("measure")
    p = plan()
    assert p.choice.algorithm == "gemm"  # the heuristic would take fake
    text = p.explain()
    assert "measured 1 ms" in text and "measured 5 ms" in text
    np.testing.assert_allclose(fastconv.conv2d(x, w, padding=1), expected, rtol=1e-12)


def test_measure_mode_skips_hopeless_candidates(monkeypatch, fake):
    fixed_times(monkeypatch, {"fake": 5e-3, "gemm": 1e-3, "reference": 2e-3})
    fastconv.set_planner_mode("measure")
    p = plan(input_shape=(4, 16, 16, 16), weight_shape=(16, 16, 3, 3))  # reference's estimate is far above the others'
    assert [c.measured for c in p.candidates if c.algorithm == "reference"] == [None]
    assert "reference                    estimated" in p.explain() and "not measured" in p.explain()


def test_measure_mode_caches_in_memory(monkeypatch, fake):
    fixed_times(monkeypatch, {"fake": 1e-3, "gemm": 5e-3, "reference": 9e-3})
    fastconv.set_planner_mode("measure")
    assert plan().choice.algorithm == "fake"
    calls = fake.calls
    plan()
    planner._plan.cache_clear()  # the measurement store still holds the times
    assert plan().choice.algorithm == "fake"
    assert fake.calls == calls
    fastconv.set_num_threads(1)  # a new thread count is a new key
    try:
        plan()
        assert fake.calls > calls
    finally:
        fastconv.set_num_threads(None)


def test_measure_mode_persists_and_reloads(monkeypatch, fake, tmp_path):
    fixed_times(monkeypatch, {"fake": 1e-3, "gemm": 5e-3, "reference": 9e-3})
    fastconv.set_planner_mode("measure", persist=True)
    plan()
    path = _measure.cache_file()
    assert path.parent == tmp_path / "cache"
    data = json.loads(path.read_text())
    assert data["fastconv"] == fastconv.__version__ and data["cpu"] == _measure.cpu_model()
    assert any(entry.get("fake/native") == 1e-3 for entry in data["entries"].values())
    calls = fake.calls
    planner.clear_plan_cache()  # a new process: nothing in memory
    assert plan().choice.algorithm == "fake"
    assert fake.calls == calls  # answered from the file


@pytest.mark.parametrize("field", ["fastconv", "cpu"])
def test_disk_cache_is_invalidated_by_version_or_cpu(monkeypatch, fake, field):
    fixed_times(monkeypatch, {"fake": 1e-3, "gemm": 5e-3, "reference": 9e-3})
    fastconv.set_planner_mode("measure", persist=True)
    plan()
    path = _measure.cache_file()
    data = json.loads(path.read_text())
    data[field] = "something else"
    path.write_text(json.dumps(data))
    planner.clear_plan_cache()
    calls = fake.calls
    plan()
    assert fake.calls > calls  # measured again
    assert json.loads(path.read_text())[field] != "something else"  # and rewritten for this version and CPU


def test_unreadable_cache_file_is_ignored(monkeypatch, fake):
    fixed_times(monkeypatch, {"fake": 1e-3, "gemm": 5e-3, "reference": 9e-3})
    path = _measure.cache_file()
    path.parent.mkdir(parents=True)
    path.write_text("{not json")
    fastconv.set_planner_mode("measure", persist=True)
    assert plan().choice.algorithm == "fake"
    assert json.loads(path.read_text())["entries"]


def test_memory_only_measurement_writes_no_file(monkeypatch, fake):
    fixed_times(monkeypatch, {"fake": 1e-3, "gemm": 5e-3, "reference": 9e-3})
    fastconv.set_planner_mode("measure")
    plan()
    assert not _measure.cache_file().exists()


def test_a_candidate_that_fails_when_measured_is_rejected(monkeypatch):
    monkeypatch.setitem(ALGORITHMS, "fake", Fake(fail=True))
    fastconv.set_planner_mode("measure")
    p = plan()
    assert p.choice.algorithm != "fake"
    assert "failed when measured: RuntimeError: broken kernel" in p.explain()


def test_real_measurement_times_the_candidates():
    fastconv.set_planner_mode("measure")
    p = plan(function="conv2d_weight")
    assert any(c.measured is not None and c.measured > 0 for c in p.candidates)
    assert p.choice.measured is not None


def test_race_times_every_callable_and_reports_failures():
    counts = {"a": 0, "b": 0}

    def ok(name):
        def call():
            counts[name] += 1
        return call

    def broken():
        raise ValueError("no")
    times, failures = _measure.race({"a": ok("a"), "b": ok("b"), "c": broken}, repeats=3)
    assert set(times) == {"a", "b"} and all(t >= 0 for t in times.values())
    assert failures == {"c": "ValueError: no"}
    assert counts["a"] >= 2 and counts["b"] >= 2  # a warm-up call, then timed ones


def test_small_calls_go_to_algorithms_with_little_per_call_overhead():
    """Each estimate includes its algorithm's fixed cost per call (``CALL_SECONDS``), which decides
    small calls: estimating work alone sent this (1, 16, 8, 8) depthwise layer to fft (0.75 ms on
    the reference machine) where depthwise took 0.14 ms."""
    import numba  # noqa: F401  # numba started: compiled algorithms carry no start-up cost
    p = fastconv.plan_for("conv2d", (1, 16, 8, 8), (16, 1, 3, 3), padding=1, groups=16)
    assert p.choice.algorithm == "depthwise", p.explain()
    assert all(c.cost >= CALL_SECONDS[c.algorithm] for c in p.candidates if c.cost is not None)
    assert set(CALL_SECONDS) == set(ALGORITHMS)


@pytest.mark.parametrize("fn, xs, ws, kw", [
    ("conv2d", (1, 3, 8, 8), (4, 3, 3, 3), dict(stride=2, padding=1)),
    ("conv1d", (1, 8, 8), (8, 1, 3), dict(groups=8)),
    ("conv_transpose2d", (1, 8, 5, 5), (8, 4, 3, 3), dict(stride=3)),
])
def test_every_reason_names_its_algorithm_once(fn, xs, ws, kw):
    """Errors and explain() show reasons as algorithms give them ("gemm: ..."), the route added."""
    plan = fastconv.plan_for(fn, xs, ws, "float32", **kw)
    rejected = [c for c in plan.candidates if c.reason]
    assert rejected and all(c.reason.startswith(f"{c.algorithm}: ") for c in rejected)
    assert not any(f"{c.algorithm}: {c.algorithm}:" in c.reason for c in rejected)
