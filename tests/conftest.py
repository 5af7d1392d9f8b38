"""Fixtures shared by the algorithm tests."""

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))

# The planner counts numba's start-up against compiled algorithms until numba has started
# (tests/test_planner_cold.py checks that in fresh processes); start it here so that every other
# test plans the same way whatever runs first.
import numba  # noqa: E402,F401


@pytest.fixture
def tiny_workspace():
    """A workspace of ~10 KB, so every call is cut into many tiles (several per sample)."""
    from fastconv import _config, set_workspace_limit
    saved = _config.workspace_bytes
    set_workspace_limit(0.01)
    yield
    _config.workspace_bytes = saved


@pytest.fixture(params=[1, 3], ids=["serial", "3-workers"])
def workers(request, monkeypatch):
    """Run tiles in the calling thread, or on three workers however small the call."""
    from fastconv.algorithms import _gemm_parallel
    monkeypatch.setattr(_gemm_parallel, "workers", lambda macs: request.param)
    return request.param
