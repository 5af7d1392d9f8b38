"""save_model / load_model: safetensors round trips, torch-exported weights, and every bad file."""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
import pytest
import safetensors.numpy
import safetensors.torch
import torch
from torch import nn as tnn

from fastconv import nn


def _pair():
    """A fastconv network and its torch twin (same keys)."""
    ours = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1, padding_mode="reflect"), nn.SeparableConv2d(4, 6, 3, stride=2),
                         nn.ConvTranspose2d(6, 2, 2, stride=2))
    theirs = tnn.Sequential(tnn.Conv2d(1, 4, 3, padding=1, padding_mode="reflect"),
                            tnn.Sequential(OrderedDict(depthwise=tnn.Conv2d(4, 4, 3, stride=2, groups=4, bias=False),
                                                       pointwise=tnn.Conv2d(4, 6, 1))),
                            tnn.ConvTranspose2d(6, 2, 2, stride=2))
    return ours, theirs


def _snapshot(module):
    return {k: v.copy() for k, v in module.state_dict().items()}


def _assert_unchanged(module, before):
    for key, value in module.state_dict().items():
        np.testing.assert_array_equal(value, before[key], err_msg=key)


def test_round_trip(tmp_path):
    path = tmp_path / "net.safetensors"
    source = _pair()[0]
    nn.save_model(source, path, metadata={"note": "test"})
    target = _pair()[0]
    assert nn.load_model(target, path) == nn.IncompatibleKeys([], [])
    for key, value in source.state_dict().items():
        np.testing.assert_array_equal(target.state_dict()[key], value)
    assert safetensors.numpy.load_file(str(path)).keys() == source.state_dict().keys()


def test_torch_weights_exported_with_safetensors_give_identical_outputs(tmp_path):
    ours, theirs = _pair()
    path = tmp_path / "torch.safetensors"
    safetensors.torch.save_file(theirs.state_dict(), str(path))
    nn.load_model(ours, path)
    x = np.random.default_rng(0).standard_normal((2, 1, 8, 8)).astype(np.float32)
    expected = theirs(torch.from_numpy(x)).detach().numpy()
    np.testing.assert_allclose(ours(x), expected, rtol=0, atol=2e-6)


def test_torch_pickles_are_refused_with_the_conversion(tmp_path):
    ours, theirs = _pair()
    before = _snapshot(ours)
    for name in ("model.pt", "model.pth", "disguised.safetensors", "weights.bin"):
        path = tmp_path / name
        torch.save(theirs.state_dict(), path)
        with pytest.raises(ValueError, match=r"torch/pickle file.*safetensors\.torch\.save_file"):
            nn.load_model(ours, path)
    with pytest.raises(ValueError, match="pickle"):
        nn.save_model(ours, tmp_path / "out.pth")
    assert not (tmp_path / "out.pth").exists()
    _assert_unchanged(ours, before)


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty"])
def test_corrupt_files_are_clear_errors_and_change_nothing(tmp_path, damage):
    ours = _pair()[0]
    path = tmp_path / "net.safetensors"
    nn.save_model(_pair()[0], path)
    data = path.read_bytes()
    path.write_bytes({"truncate": data[:-7], "garbage": b"not a safetensors file at all", "empty": b""}[damage])
    before = _snapshot(ours)
    with pytest.raises(ValueError, match="is not a readable safetensors file"):
        nn.load_model(ours, path)
    _assert_unchanged(ours, before)


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        nn.load_model(_pair()[0], tmp_path / "absent.safetensors")


@pytest.mark.parametrize("edit,error,match", [
    (lambda s: s.pop("1.pointwise.bias"), ValueError, r"missing key\(s\) \['1.pointwise.bias'\]"),
    (lambda s: s.update({"3.weight": np.zeros(2, np.float32)}), ValueError, r"unexpected key\(s\) \['3.weight'\]"),
    (lambda s: s.update({"0.weight": np.zeros((4, 1, 5, 5), np.float32)}), ValueError, r"size mismatch for '0.weight'"),
    (lambda s: s.update({"2.bias": np.zeros(2, np.float64)}), TypeError, r"dtype mismatch for '2.bias': got float64"),
    (lambda s: s.update({"2.bias": np.zeros(2, np.int32)}), TypeError, r"dtype mismatch for '2.bias': got int32"),
])
def test_bad_contents_name_the_key_and_change_nothing(tmp_path, edit, error, match):
    ours = _pair()[0]
    state = {k: v.copy() for k, v in _pair()[0].state_dict().items()}
    edit(state)
    path = tmp_path / "edited.safetensors"
    safetensors.numpy.save_file(state, str(path))
    before = _snapshot(ours)
    with pytest.raises(error, match=match) as info:
        nn.load_model(ours, path)
    assert str(path) in str(info.value)
    _assert_unchanged(ours, before)


def test_non_strict_load_reports_and_loads_the_rest(tmp_path):
    source, target = _pair()[0], _pair()[0]
    state = {k: v for k, v in source.state_dict().items() if k != "0.bias"}
    path = tmp_path / "partial.safetensors"
    safetensors.numpy.save_file(state, str(path))
    assert nn.load_model(target, path, strict=False) == nn.IncompatibleKeys(["0.bias"], [])
    np.testing.assert_array_equal(target.state_dict()["0.weight"], source.state_dict()["0.weight"])


def test_float64_model_round_trip(tmp_path):
    path = tmp_path / "f64.safetensors"
    nn.save_model(nn.Conv3d(2, 2, 2, dtype=np.float64, generator=0), path)
    target = nn.Conv3d(2, 2, 2, dtype=np.float64)
    nn.load_model(target, path)
    np.testing.assert_array_equal(target.weight.data, nn.Conv3d(2, 2, 2, dtype=np.float64, generator=0).weight.data)
    with pytest.raises(TypeError, match="dtype=np.float64"):
        nn.load_model(nn.Conv3d(2, 2, 2), path)  # float32 model: float64 would lose precision


def test_torch_weights_example_runs():
    import runpy
    from pathlib import Path

    example = Path(__file__).resolve().parents[1] / "examples" / "torch_weights_inference.py"
    assert runpy.run_path(str(example))["main"]() == 0
