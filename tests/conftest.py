import os
import sys

sys.path.insert(0, os.path.dirname(__file__))

# The planner counts numba's start-up against compiled algorithms until numba has started
# (tests/test_planner_cold.py checks that in fresh processes); start it here so that every other
# test plans the same way whatever runs first.
import numba  # noqa: E402,F401
