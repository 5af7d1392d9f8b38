"""The ``fastconv`` command. Each subcommand lives in its own module, imported only when used."""

from __future__ import annotations

import argparse
import importlib
import sys

#: name -> (module with add_arguments(parser) and run(args) -> int, one-line help)
SUBCOMMANDS = {
    "explain": ("fastconv._cli_explain", "show which algorithm the planner picks for a call, and why"),
    "demo": ("fastconv._cli_demo", "train a small convolutional network on scikit-learn's 8x8 digits"),
    "bench": ("fastconv._cli_bench", "time the reference workload against torch and the other peers installed"),
    "volume": ("fastconv._cli_volume", "convolve a zarr volume larger than memory on Dask workers, block by block"),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="fastconv", description="PyTorch's convolutions over NumPy arrays.")
    commands = parser.add_subparsers(dest="command", required=True)
    modules = {}
    for name, (module_name, help_text) in SUBCOMMANDS.items():
        sub = commands.add_parser(name, help=help_text, description=help_text)
        if name in (argv or sys.argv[1:])[:1]:
            modules[name] = importlib.import_module(module_name)
            modules[name].add_arguments(sub)
    args = parser.parse_args(argv)
    return int(modules[args.command].run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
