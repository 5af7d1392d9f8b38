"""fastconv: PyTorch's convolution layer over NumPy arrays.

The functional API (``fastconv.functional``), the gradients (``fastconv.grad``), and
the planner that picks an algorithm per call (``fastconv.plan_for``).
"""

from ._config import set_accuracy, set_workspace_limit
from ._geometry import ConvGeometry
from .functional import (conv, conv1d, conv2d, conv3d, conv_transpose, conv_transpose1d, conv_transpose2d,
                         conv_transpose3d)
from .planner import Plan, plan, plan_for

__version__ = "0.1.0"

__all__ = [
    "ConvGeometry", "Plan", "conv", "conv1d", "conv2d", "conv3d", "conv_transpose", "conv_transpose1d",
    "conv_transpose2d", "conv_transpose3d", "plan", "plan_for", "set_accuracy", "set_workspace_limit", "__version__",
]
