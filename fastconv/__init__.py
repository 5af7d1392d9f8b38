"""fastconv: PyTorch's convolution layer over NumPy arrays.

The functional API (``fastconv.functional``), the gradients (``fastconv.grad``), and
the planner that picks an algorithm per call (``fastconv.plan_for``).
"""

from ._config import set_accuracy, set_workspace_limit
from ._geometry import ConvGeometry
from ._threads import get_num_threads, set_num_threads
from ._workspace import release_workspace
from .functional import (conv, conv1d, conv2d, conv3d, conv_transpose, conv_transpose1d, conv_transpose2d,
                         conv_transpose3d)
from .planner import Plan, clear_plan_cache, get_planner_mode, plan, plan_for, set_planner_mode

__version__ = "0.1.0"

__all__ = [
    "ConvGeometry", "Plan", "conv", "conv1d", "conv2d", "conv3d", "conv_transpose", "conv_transpose1d",
    "conv_transpose2d", "conv_transpose3d", "plan", "plan_for", "set_accuracy", "set_workspace_limit", "release_workspace", "__version__",
    "get_num_threads", "set_num_threads", "get_planner_mode", "set_planner_mode", "clear_plan_cache",
]
