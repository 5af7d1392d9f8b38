"""``fastconv bench`` on a tiny suite: it runs, checks fastconv against torch, and writes its files.

No timing is asserted; the peers are checked for correctness so that their ratios mean something.
"""

import json

import numpy as np
import pytest

import fastconv
from fastconv import _bench_peers
from fastconv._bench_peers import Case, contenders
from fastconv.cli import main

TINY_SUITE = '''
CASES = [
    ("tiny.3x3", "conv2d", (2, 3, 9, 9), (4, 3, 3, 3), dict(padding=1)),
    ("tiny.same5s", "conv2d", (1, 2, 11, 11), (3, 2, 5, 5), dict(padding="same")),
    ("tiny.g2s2", "conv2d", (2, 4, 9, 9), (4, 2, 3, 3), dict(stride=2, padding=1, groups=2)),
    ("tiny.up1d", "conv_transpose1d", (2, 4, 7), (4, 3, 4), dict(stride=2, padding=1)),
    ("tiny.up3d", "conv_transpose3d", (1, 2, 3, 3, 3), (2, 2, 2, 2, 2), dict(stride=2)),
    ("tiny.dgrad", "grad_input2d", (2, 3, 8, 8), (4, 3, 3, 3), dict(padding=1)),
    ("tiny.wgrad", "grad_weight2d", (2, 3, 8, 8), (4, 3, 3, 3), dict(padding=1)),
]
'''


@pytest.fixture
def suite(tmp_path):
    path = tmp_path / "suite.py"
    path.write_text(TINY_SUITE)
    return path


def test_bench_runs_and_writes_table_json_and_chart(suite, tmp_path, capsys):
    pytest.importorskip("torch")
    out = tmp_path / "out"
    assert main(["bench", "--suite", str(suite), "--repeats", "1", "--threads", "1", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "| tiny.3x3 |" in text and "geometric mean" in text
    data = json.loads((out / "bench.json").read_text())
    assert data["threads"] == 1 and len(data["cases"]) == 7
    for row in data["cases"]:
        assert row["rel_error"] < 1e-5 and row["torch_rel_error"] < 1e-5, row["name"]
        assert {"fastconv", "torch"} <= set(row["times"])
        assert row["algorithm"] in {c.label for c in Case(row["name"], row["op"], tuple(row["x"]), tuple(row["w"]),
                                                           row["kwargs"]).plan().candidates}
    assert data["summary"]["vs_torch"] > 0
    # gradients are compared with their layer's forward pass timed in the same rounds
    assert set(data["summary"]["gradient_over_forward"]) == {"tiny.dgrad", "tiny.wgrad"}
    pytest.importorskip("matplotlib")
    assert (out / "bench.png").stat().st_size > 0
    fastconv.set_num_threads(None)


def test_case_filter_and_missing_suite(suite, tmp_path, capsys):
    assert main(["bench", "--suite", str(suite), "--cases", "nothing-matches", "--out", str(tmp_path)]) == 2
    with pytest.raises(FileNotFoundError):
        main(["bench", "--suite", str(tmp_path / "absent.py")])


@pytest.mark.parametrize("name, op, x, w, kw", [
    ("conv", "conv2d", (2, 3, 9, 8), (4, 3, 3, 2), dict(stride=(2, 1), padding=(1, 0))),
    ("same", "conv2d", (1, 2, 10, 10), (3, 2, 4, 4), dict(padding="same")),
    ("grouped", "conv1d", (2, 4, 20), (6, 2, 3), dict(groups=2, dilation=2)),
    ("up", "conv_transpose2d", (2, 4, 5, 5), (4, 3, 3, 3), dict(stride=2, padding=1, output_padding=1)),
])
def test_peers_compute_the_same_convolution(name, op, x, w, kw):
    torch = pytest.importorskip("torch")
    case = Case(name, op, x, w, kw)
    calls, skipped = contenders(case, threads=1)
    expect = calls.pop("torch")()
    for impl, call in calls.items():
        np.testing.assert_allclose(call(), expect, rtol=1e-4, atol=1e-4, err_msg=impl)
    if "groups" in kw or op.startswith("conv_transpose"):
        assert "numpy-im2col" in skipped
    torch.set_num_threads(fastconv.get_num_threads())


def test_gradient_cases_time_their_layers_forward_pass():
    """A gradient case's extra contender computes the forward convolution of the same layer."""
    case = Case("g", "grad_weight2d", (2, 3, 8, 8), (4, 3, 3, 3), dict(padding=1))
    calls, _ = contenders(case, threads=1)
    forward = Case("f", "conv2d", case.x, case.w, case.kwargs)
    np.testing.assert_array_equal(calls[_bench_peers.FORWARD](), fastconv.conv2d(*forward.operands(), padding=1))
    assert calls["fastconv"]().shape == case.w


def test_textbook_im2col_matches_reference():
    rng = np.random.default_rng(0)
    x, w = rng.standard_normal((2, 3, 7, 6, 5)), rng.standard_normal((4, 3, 3, 2, 3))
    geom = fastconv.plan_for("conv3d", x.shape, w.shape, stride=(2, 1, 2), padding=(1, 0, 2)).geom
    np.testing.assert_allclose(_bench_peers.textbook_im2col(x, w, geom),
                               fastconv.conv3d(x, w, stride=(2, 1, 2), padding=(1, 0, 2), algorithm="reference"),
                               rtol=1e-10, atol=1e-10)
