"""Process-wide settings: the workspace budget algorithms must tile within."""

from __future__ import annotations

import os

#: Bytes of scratch memory (im2col columns, transforms) one call may use beyond its output.
workspace_bytes: int = int(os.environ.get("FASTCONV_WORKSPACE_MB", "256")) * 2**20


def set_workspace_limit(megabytes: float) -> None:
    """Cap the scratch memory of one convolution call (default 256 MiB, or $FASTCONV_WORKSPACE_MB),
    and the free scratch kept between calls (see ``fastconv.release_workspace``)."""
    global workspace_bytes
    if megabytes <= 0:
        raise ValueError(f"set_workspace_limit: megabytes={megabytes} must be positive")
    workspace_bytes = int(megabytes * 2**20)
    from . import _workspace
    _workspace.trim()

#: Largest float32 relative L2 error (vs a float64 result) an algorithm may have to be chosen
#: by default. Fast algorithms whose documented bound exceeds it decline (say why) unless raised.
max_relative_error: float = 1e-5


def set_accuracy(max_relative_error_: float) -> None:
    """Allow algorithms up to this float32 relative L2 error (default 1e-5): larger trades accuracy for speed."""
    global max_relative_error
    if not max_relative_error_ > 0:
        raise ValueError(f"set_accuracy: max_relative_error={max_relative_error_} must be positive")
    max_relative_error = float(max_relative_error_)
