"""fastconv in one minute: forward, transposed and gradient calls on a small image batch, each checked.

Run:  python examples/quickstart.py
"""

from __future__ import annotations

import sys
import time

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

import fastconv
from fastconv import functional as F
from fastconv import grad


def image_batch(n: int = 4, size: int = 32) -> np.ndarray:
    """Discs and squares of random size and place, one grey channel, float32."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:size, :size]
    images = np.zeros((n, 1, size, size), np.float32)
    for i in range(n):
        cy, cx, r = rng.integers(8, size - 8, 2).tolist() + [int(rng.integers(3, 8))]
        shape = (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r if i % 2 else (abs(yy - cy) <= r) & (abs(xx - cx) <= r)
        images[i, 0] = shape
    return images


def check(label: str, ok: bool, detail: str) -> bool:
    print(f"  [{'ok' if ok else 'FAILED'}] {label}: {detail}")
    return ok


def main() -> int:
    x = image_batch()
    sobel = np.array([[1, 0, -1], [2, 0, -2], [1, 0, -1]], np.float32)
    w = np.stack([sobel, sobel.T])[:, None]  # (2 out channels, 1 in channel, 3, 3): horizontal/vertical edges
    print(f"fastconv {fastconv.__version__}: images {x.shape}, Sobel filters {w.shape}")
    results = []

    start = time.perf_counter()
    edges = F.conv2d(x, w, padding=1)
    windows = sliding_window_view(np.pad(x, [(0, 0), (0, 0), (1, 1), (1, 1)]), (3, 3), axis=(2, 3))
    by_hand = np.einsum("ncijkl,ockl->noij", windows, w)
    results.append(check("conv2d (Sobel edges, padding=1)", np.allclose(edges, by_hand, atol=1e-5),
                         f"{edges.shape}, max |diff| vs sliding-window einsum {np.abs(edges - by_hand).max():.1e}"))

    up_kernel = np.outer([0.5, 1, 0.5], [0.5, 1, 0.5]).astype(np.float32)[None, None]  # bilinear x2
    upsampled = F.conv_transpose2d(x, up_kernel, stride=2, padding=1, output_padding=1)
    interior = upsampled[:, :, 2:-2:2, 2:-2:2]
    results.append(check("conv_transpose2d (bilinear x2 upsampling)",
                         upsampled.shape == (4, 1, 64, 64) and np.allclose(interior, x[:, :, 1:-1, 1:-1]),
                         f"{x.shape} -> {upsampled.shape}, even pixels reproduce the input"))
    y = np.random.default_rng(1).standard_normal(upsampled.shape).astype(np.float32)
    down = F.conv2d(y, up_kernel, stride=2, padding=1)
    lhs, rhs = float(np.vdot(upsampled, y)), float(np.vdot(x, down))
    results.append(check("adjoint identity <conv_t(x), y> = <x, conv(y)>", np.isclose(lhs, rhs, rtol=1e-4),
                         f"{lhs:.4f} vs {rhs:.4f}"))

    # Gradients of the loss L = 0.5 * ||conv2d(x, w) - target||^2
    target = np.abs(edges)
    residual = edges - target
    dx = grad.conv2d_input(x.shape, w, residual, padding=1)
    dw = grad.conv2d_weight(x, w.shape, residual, padding=1)
    loss = lambda w_: 0.5 * float(np.sum((F.conv2d(x.astype(np.float64), w_, padding=1) - target) ** 2))  # noqa: E731
    eps, idx = 1e-4, (1, 0, 0, 2)
    bumped = w.astype(np.float64)
    bumped[idx] += eps
    up = loss(bumped)
    bumped[idx] -= 2 * eps
    numeric = (up - loss(bumped)) / (2 * eps)
    results.append(check("conv2d_weight vs finite differences", np.isclose(dw[idx], numeric, rtol=1e-3),
                         f"analytic {dw[idx]:.4f}, numeric {numeric:.4f}"))
    results.append(check("conv2d_input shape and adjointness", dx.shape == x.shape
                         and np.isclose(np.vdot(dx, x), np.vdot(residual, edges), rtol=1e-4),
                         f"{dx.shape}, <dx, x> = <dy, conv(x)>"))
    print(f"  planner: {fastconv.plan_for('conv2d', x.shape, w.shape, padding=1).choice.label} "
          f"(see `fastconv explain conv2d 4,1,32,32 2,1,3,3 --padding 1`)")
    print(f"done in {time.perf_counter() - start:.2f} s: {sum(results)}/{len(results)} checks passed")
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
