"""The generated case list: spatial dims x stride x padding x dilation x groups x bias x batching x transposed.

Each case is a plain dict of torch.nn.functional keywords plus shapes, drawn reproducibly
from the grid so that every value of every axis appears, then pinned edge cases.
"""

from __future__ import annotations

import random

SIZES = {1: (11,), 2: (7, 6), 3: (5, 4, 6)}
KERNELS = {1: [(3,), (4,), (1,)], 2: [(3, 2), (2, 2), (1, 1), (3, 3)], 3: [(2, 3, 2), (1, 1, 1), (3, 3, 3)]}
PADDINGS = [0, 1, "tuple", "same", "valid", "pairs"]
STRIDES = [1, 2, "tuple"]
DILATIONS = [1, 2, "tuple"]
GROUPS = [(1, 2, 3), (2, 4, 6), (3, 3, 6), (2, 4, 2)]  # (groups, in_channels, out_channels): incl. depthwise x2
BATCH = [2, None, 1]  # None = unbatched


def _per_dim(value, nd, rng, choices):
    return tuple(rng.choice(choices) for _ in range(nd)) if value == "tuple" else value


def _forward_case(nd, rng):
    kernel = rng.choice(KERNELS[nd])
    groups, cin, cout = rng.choice(GROUPS)
    padding = rng.choice(PADDINGS)
    stride = 1 if padding == "same" else _per_dim(rng.choice(STRIDES), nd, rng, [1, 2, 3])
    dilation = _per_dim(rng.choice(DILATIONS), nd, rng, [1, 2])
    if padding == "tuple":
        padding = tuple(rng.choice([0, 1, 2]) for _ in range(nd))
    elif padding == "pairs":
        padding = tuple((rng.choice([0, 1, 2]), rng.choice([0, 1])) for _ in range(nd))
    return dict(nd=nd, batch=rng.choice(BATCH), size=SIZES[nd], cin=cin, cout=cout, kernel=kernel,
                stride=stride, padding=padding, dilation=dilation, groups=groups, bias=rng.random() < 0.6)


def _fits(case) -> bool:
    """Keep cases whose output is non-empty (the error tests cover the rest)."""
    nd = case["nd"]
    pad = case["padding"]
    if pad in ("same", "valid"):
        pad = 0 if pad == "valid" else None
    for i in range(nd):
        d = case["dilation"] if isinstance(case["dilation"], int) else case["dilation"][i]
        extent = d * (case["kernel"][i] - 1) + 1
        if pad is None:
            continue
        p = pad if isinstance(pad, int) else pad[i]
        lo, hi = p if isinstance(p, tuple) else (p, p)
        if case["size"][i] + lo + hi < extent:
            return False
    return True


def forward_cases(per_dim: int = 40, seed: int = 0) -> list[dict]:
    rng = random.Random(seed)
    cases = []
    for nd in (1, 2, 3):
        made = 0
        while made < per_dim:
            case = _forward_case(nd, rng)
            if _fits(case):
                cases.append(case)
                made += 1
    # pinned: 'same' with even kernels and dilation (asymmetric split), 1x1 pointwise, big stride
    cases += [
        dict(nd=2, batch=2, size=(8, 7), cin=2, cout=3, kernel=(4, 2), stride=1, padding="same", dilation=(1, 3),
             groups=1, bias=True),
        dict(nd=1, batch=1, size=(9,), cin=4, cout=4, kernel=(2,), stride=1, padding="same", dilation=1, groups=4,
             bias=False),
        dict(nd=2, batch=3, size=(5, 5), cin=4, cout=6, kernel=(1, 1), stride=1, padding=0, dilation=1, groups=2,
             bias=True),
        dict(nd=3, batch=1, size=(6, 5, 4), cin=2, cout=2, kernel=(2, 2, 2), stride=(3, 2, 1), padding=((1, 0), (0, 2), (2, 1)),
             dilation=(1, 2, 1), groups=1, bias=True),
    ]
    return cases


def transposed_cases(per_dim: int = 25, seed: int = 1) -> list[dict]:
    rng = random.Random(seed)
    cases = []
    for nd in (1, 2, 3):
        for _ in range(per_dim):
            kernel = rng.choice(KERNELS[nd])
            groups, cin, cout = rng.choice(GROUPS)
            stride = tuple(rng.choice([1, 2, 3]) for _ in range(nd))
            dilation = tuple(rng.choice([1, 2]) for _ in range(nd))
            padding = tuple(rng.choice([0, 1]) for _ in range(nd))
            output_padding = tuple(rng.randrange(max(s, d)) for s, d in zip(stride, dilation))
            size = tuple(max(2, n // 2) for n in SIZES[nd])
            cases.append(dict(nd=nd, batch=rng.choice(BATCH), size=size, cin=cin, cout=cout, kernel=kernel,
                              stride=stride, padding=padding, output_padding=output_padding, dilation=dilation,
                              groups=groups, bias=rng.random() < 0.6))
    return [c for c in cases if _transposed_fits(c)]


def _transposed_fits(case) -> bool:
    return all((n - 1) * s - 2 * p + d * (k - 1) + op + 1 > 0
               for n, s, p, d, k, op in zip(case["size"], case["stride"], case["padding"], case["dilation"],
                                            case["kernel"], case["output_padding"]))


def case_id(case: dict) -> str:
    keys = ("nd", "batch", "kernel", "stride", "padding", "dilation", "groups", "output_padding")
    return "-".join(f"{k}={case[k]}" for k in keys if k in case).replace(" ", "")


def arrays(case: dict, dtype, seed: int = 0, transposed: bool = False):
    """(x, w, b) numpy arrays for a case, in ``dtype``."""
    import numpy as np

    rng = np.random.default_rng(seed)

    def draw(*shape):
        a = rng.standard_normal(shape)
        if np.dtype(dtype).kind == "c":
            a = a + 1j * rng.standard_normal(shape)
        return a.astype(dtype)

    g = case["groups"]
    batch = () if case["batch"] is None else (case["batch"],)
    x = draw(*batch, case["cin"], *case["size"])
    w = draw(case["cin"], case["cout"] // g, *case["kernel"]) if transposed else draw(case["cout"], case["cin"] // g, *case["kernel"])
    b = draw(case["cout"]) if case["bias"] else None
    return x, w, b


def kwargs(case: dict) -> dict:
    keys = ("stride", "padding", "dilation", "groups") + (("output_padding",) if "output_padding" in case else ())
    return {k: case[k] for k in keys}


def explicit_padding(case: dict):
    """The case's padding without strings or pairs, for APIs that refuse them (None if impossible)."""
    pad = case["padding"]
    if pad == "valid":
        return 0
    if pad == "same" or (isinstance(pad, tuple) and any(isinstance(p, tuple) for p in pad)):
        return None
    return pad

