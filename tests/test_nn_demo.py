"""The ``fastconv demo`` pieces (loss, ReLU, pooling) against torch, and a one-epoch run end to end."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from fastconv import _cli_demo as demo
from fastconv.cli import main


def test_cross_entropy_matches_torch_label_smoothing():
    rng = np.random.default_rng(0)
    logits = rng.standard_normal((5, 10, 1, 1)) * 3
    labels = rng.integers(0, 10, 5)
    loss, grad = demo.cross_entropy(logits, labels, smoothing=0.1)
    lt = torch.tensor(logits[:, :, 0, 0], requires_grad=True)
    expected = F.cross_entropy(lt, torch.from_numpy(labels), label_smoothing=0.1)
    expected.backward()
    assert loss == pytest.approx(expected.item(), rel=1e-12)
    np.testing.assert_allclose(grad[:, :, 0, 0], lt.grad.numpy(), atol=1e-12)


def test_relu_and_pooling_backward_match_torch():
    x = np.random.default_rng(1).standard_normal((2, 3, 4, 4))
    xt = torch.tensor(x, requires_grad=True)
    F.adaptive_avg_pool2d(torch.relu(xt), 1).sum().backward()
    relu, pool = demo.ReLU(), demo.GlobalAvgPool()
    y = pool(relu(x))
    np.testing.assert_allclose(relu.backward(pool.backward(np.ones_like(y))), xt.grad.numpy(), atol=1e-15)


def test_demo_runs_end_to_end(tmp_path, capsys):
    pytest.importorskip("sklearn")
    out = tmp_path / "digits.safetensors"
    code = main(["demo", "--epochs", "1", "--out", str(out)])
    printed = capsys.readouterr().out
    assert code in (0, 1)  # one epoch need not reach the 97% target
    assert out.exists()
    assert "predictions identical" in printed
    assert "convolution backward" in printed and "convolution forward" in printed
    accuracy = float(printed.split("test accuracy ")[1].split("%")[0])
    assert accuracy > 50  # one epoch already learns a lot


def test_readme_layers_example_runs():
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    block = readme.split("## Layers and training")[1].split("```python\n")[1].split("```")[0]
    namespace: dict = {}
    exec(compile(block, "README layers example", "exec"), namespace)
    assert namespace["y"].shape == (8, 32, 16, 16) and namespace["dx"].shape == (8, 3, 32, 32)


def test_text_progress_bar_without_tqdm(capsys):
    bar = demo._TextBar(total=20, desc="training")
    for _ in range(20):
        bar.update(1)
        bar.set_postfix_str("epoch 1/1 loss 0.1")
    bar.close()
    lines = capsys.readouterr().out.strip().splitlines()  # not a tty: one line per 10%
    assert len(lines) == 10
    assert lines[-1] == "training [##############################] 100% epoch 1/1 loss 0.1"
