"""Process-wide settings: the workspace budget algorithms must tile within."""

from __future__ import annotations

import os

#: Bytes of scratch memory (im2col columns, transforms) one call may use beyond its output.
workspace_bytes: int = int(os.environ.get("FASTCONV_WORKSPACE_MB", "256")) * 2**20


def set_workspace_limit(megabytes: float) -> None:
    """Cap the scratch memory of one convolution call (default 256 MiB, or $FASTCONV_WORKSPACE_MB)."""
    global workspace_bytes
    if megabytes <= 0:
        raise ValueError(f"set_workspace_limit: megabytes={megabytes} must be positive")
    workspace_bytes = int(megabytes * 2**20)
