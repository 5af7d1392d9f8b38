"""Time the reference workload (../shared/bench/suite.py) against torch and the installed peers.

Same as ``fastconv bench``; run ``python benchmarks/run.py --help`` for the options, e.g.
``python benchmarks/run.py --cases resnet50 --threads 1 --repeats 7``.
"""

import sys

from fastconv.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", *sys.argv[1:]]))
