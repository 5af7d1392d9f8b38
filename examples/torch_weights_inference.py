"""Run a PyTorch model's weights with fastconv: export once with safetensors, then infer without torch.

    pip install -e ".[io]" torch==2.13.0 && python examples/torch_weights_inference.py

Step 1 (where torch is installed) saves the model's ``state_dict`` as ``.safetensors``: plain
arrays and their names, no pickle. Step 2 (torch not needed) builds the same layers with
``fastconv.nn``; the state_dict keys match torch's, so ``load_model`` fills them directly.
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections import OrderedDict
from collections.abc import Callable

import numpy as np

from fastconv import nn


def fastconv_model() -> nn.Sequential:
    """A small encoder-decoder: the layer arguments are exactly torch's."""
    return nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1, padding_mode="reflect"),
        nn.SeparableConv2d(16, 32, 3, stride=2, padding=1),  # keys: 1.depthwise.weight, 1.pointwise.*
        nn.ConvTranspose2d(32, 8, 4, stride=2, padding=1),
        nn.Conv2d(8, 1, 1),
    )


def export_from_torch(path: str) -> Callable[[np.ndarray], np.ndarray]:
    """Build the torch twin, save its weights with safetensors; return it for comparison."""
    import safetensors.torch
    import torch
    from torch import nn as tnn

    torch.manual_seed(0)
    model = tnn.Sequential(
        tnn.Conv2d(3, 16, 3, padding=1, padding_mode="reflect"),
        tnn.Sequential(OrderedDict(depthwise=tnn.Conv2d(16, 16, 3, stride=2, padding=1, groups=16, bias=False),
                                   pointwise=tnn.Conv2d(16, 32, 1))),
        tnn.ConvTranspose2d(32, 8, 4, stride=2, padding=1),
        tnn.Conv2d(8, 1, 1),
    ).eval()
    safetensors.torch.save_file(model.state_dict(), path)
    return lambda x: model(torch.from_numpy(x)).detach().numpy()


def main() -> int:
    path = os.path.join(tempfile.mkdtemp(), "model.safetensors")
    try:
        torch_model = export_from_torch(path)
    except ImportError:
        print("this example exports weights from torch: pip install torch==2.13.0 safetensors", file=sys.stderr)
        return 2
    print(f"torch weights saved to {path}")

    model = fastconv_model().eval()  # eval(): inference only, inputs are not kept for backward
    nn.load_model(model, path)
    x = np.random.default_rng(0).standard_normal((4, 3, 32, 32)).astype(np.float32)
    y = model(x)
    expected = torch_model(x)
    error = float(np.abs(y - expected).max() / np.abs(expected).max())
    print(f"fastconv output {y.shape}, max relative difference from torch {error:.1e}")
    return 0 if error < 1e-5 else 1


if __name__ == "__main__":
    sys.exit(main())
