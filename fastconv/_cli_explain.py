"""``fastconv explain conv2d 4,64,56,56 64,64,3,3 --padding 1``: the planner's reasoning."""

from __future__ import annotations

import argparse
import ast


def _shape(text: str) -> tuple[int, ...]:
    return tuple(int(v) for v in text.replace("x", ",").split(",") if v)


def _param(text: str):
    return ast.literal_eval(text) if text[:1] in "(['\"" or text.lstrip("-").isdigit() else text


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("function", help="conv2d, conv_transpose3d, conv2d_input, conv2d_weight, ...")
    parser.add_argument("input_shape", type=_shape, help="batched input shape, e.g. 4,64,56,56")
    parser.add_argument("weight_shape", type=_shape, help="weight shape, e.g. 64,64,3,3")
    parser.add_argument("--dtype", default="float32")
    for name in ("stride", "padding", "dilation", "output_padding"):
        parser.add_argument(f"--{name.replace('_', '-')}", dest=name, type=_param, default=0 if "padding" in name else 1)
    parser.add_argument("--groups", type=int, default=1)
    parser.add_argument("--algorithm", default=None)


def run(args: argparse.Namespace) -> int:
    from .planner import plan_for

    plan = plan_for(args.function, args.input_shape, args.weight_shape, args.dtype, stride=args.stride,
                    padding=args.padding, dilation=args.dilation, groups=args.groups,
                    output_padding=args.output_padding, algorithm=args.algorithm)
    print(plan.explain())
    return 0
