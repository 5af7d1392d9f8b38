"""``fastconv demo``: train a small all-convolutional network on scikit-learn's bundled 8x8 digits.

Readable as an example of training with :mod:`fastconv.nn`: the library gives the
convolution layers (forward, backward, weights on disk); ReLU, pooling, the loss and the
optimiser are written here, in a few lines of NumPy each, because they are not convolutions.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections import defaultdict
from contextlib import contextmanager

import numpy as np

from . import nn
from .nn.conv import _ConvNd

TARGET_ACCURACY = 0.97


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=0.02, help="initial Adam learning rate (decays linearly to 0)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the initial weights and the shuffling")
    parser.add_argument("--out", default=os.path.join(tempfile.gettempdir(), "fastconv-digits.safetensors"),
                        help="where to save the trained weights (.safetensors)")


# ---- the parts of the network that are not convolutions -----------------------------------
class ReLU(nn.Module):
    def forward(self, x):
        self.mask = x > 0
        return x * self.mask

    def backward(self, grad):
        return grad * self.mask


class GlobalAvgPool(nn.Module):
    """(N, C, H, W) -> (N, C, 1, 1)."""

    def forward(self, x):
        self.shape = x.shape
        return x.mean(axis=(2, 3), keepdims=True)

    def backward(self, grad):
        return np.broadcast_to(grad / (self.shape[2] * self.shape[3]), self.shape).copy()


def build_network(generator):
    """3x3 conv -> ReLU -> strided 3x3 conv -> ReLU -> strided separable 3x3 conv -> ReLU -> global
    average pool -> 1x1 conv classifier: (N, 1, 8, 8) images to (N, 10, 1, 1) logits."""
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1, generator=generator), ReLU(),
        nn.Conv2d(16, 32, 3, stride=2, padding=1, generator=generator), ReLU(),  # 8x8 -> 4x4
        nn.SeparableConv2d(32, 128, 3, stride=2, padding=1, generator=generator), ReLU(),  # -> 2x2
        GlobalAvgPool(),
        nn.Conv2d(128, 10, 1, generator=generator),
    )


def cross_entropy(logits: np.ndarray, labels: np.ndarray, smoothing: float = 0.1) -> tuple[float, np.ndarray]:
    """Mean softmax cross-entropy against label-smoothed targets, and its gradient w.r.t. the
    logits (N, 10, 1, 1). Smoothing (as torch's ``label_smoothing``) keeps the small network from
    becoming over-confident on 1437 training images: about +0.5% test accuracy here."""
    z = logits[:, :, 0, 0].astype(np.float64)
    z -= z.max(axis=1, keepdims=True)
    log_p = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    target = np.full_like(log_p, smoothing / log_p.shape[1])
    target[np.arange(len(labels)), labels] += 1 - smoothing
    loss = -(target * log_p).sum(axis=1).mean()
    grad = (np.exp(log_p) - target) / len(labels)
    return float(loss), grad[:, :, None, None].astype(logits.dtype)


class Adam:
    def __init__(self, params, lr: float, betas=(0.9, 0.999), eps=1e-8) -> None:
        self.params, self.lr, self.betas, self.eps, self.t = list(params), lr, betas, eps, 0
        self.m = [np.zeros_like(p.data) for p in self.params]
        self.v = [np.zeros_like(p.data) for p in self.params]

    def step(self) -> None:
        self.t += 1
        b1, b2 = self.betas
        scale = self.lr * np.sqrt(1 - b2**self.t) / (1 - b1**self.t)
        for p, m, v in zip(self.params, self.m, self.v):
            m *= b1
            m += (1 - b1) * p.grad
            v *= b2
            v += (1 - b2) * p.grad**2
            p.data -= (scale * m / (np.sqrt(v) + self.eps)).astype(p.data.dtype)


# ---- timing and progress ------------------------------------------------------------------
class Clock:
    """Seconds spent per category: convolution forward / backward, and the other layers."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)

    @contextmanager
    def __call__(self, layer, direction: str):
        kind = "convolution" if isinstance(layer, (_ConvNd, nn.SeparableConv2d)) else "ReLU / pooling"
        start = time.perf_counter()
        yield
        self.seconds[f"{kind} {direction}"] += time.perf_counter() - start


def forward(net, x, clock: Clock):
    # net(x) does the same; stepping through the layers here lets the clock see each one
    for layer in net:
        with clock(layer, "forward"):
            x = layer(x)
    return x


def backward(net, grad, clock: Clock) -> None:
    for layer in reversed(list(net)):
        with clock(layer, "backward"):
            grad = layer.backward(grad)


class _TextBar:
    """The part of tqdm's interface used here, for when tqdm is not installed."""

    def __init__(self, total: int, desc: str) -> None:
        self.total, self.desc, self.n, self.postfix, self._shown = total, desc, 0, "", -1

    def update(self, n: int = 1) -> None:
        self.n += n
        percent = 100 * self.n // self.total
        if percent != self._shown and (sys.stdout.isatty() or percent % 10 == 0):
            self._shown = percent
            filled = 30 * self.n // self.total
            end = "\r" if sys.stdout.isatty() and self.n < self.total else "\n"
            print(f"{self.desc} [{'#' * filled}{'.' * (30 - filled)}] {percent:3d}% {self.postfix}", end=end,
                  flush=True)

    def set_postfix_str(self, text: str) -> None:
        self.postfix = text

    def close(self) -> None:
        if sys.stdout.isatty() and self._shown < 100:
            print()


def _progress(total: int, desc: str):
    try:
        from tqdm import tqdm
    except ImportError:
        return _TextBar(total, desc)
    return tqdm(total=total, desc=desc, unit="batch", dynamic_ncols=True)


# ---- the run --------------------------------------------------------------------------------
def _load_digits():
    try:
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split
    except ImportError:
        return None
    digits = load_digits()  # bundled with scikit-learn: no download
    x = (digits.images / 16.0).astype(np.float32)[:, None]  # (1797, 1, 8, 8) in [0, 1]
    x = (x - x.mean()) / x.std()
    return train_test_split(x, digits.target, test_size=0.2, stratify=digits.target, random_state=0)


def predict(net, x: np.ndarray, clock: Clock | None = None, batch: int = 256) -> np.ndarray:
    """Logits (N, 10), in batches; timed by ``clock`` when given."""
    apply = (lambda xb: forward(net, xb, clock)) if clock else net
    return np.concatenate([apply(x[i:i + batch])[:, :, 0, 0] for i in range(0, len(x), batch)])


def run(args: argparse.Namespace) -> int:
    begin = time.perf_counter()
    try:
        import safetensors
    except ImportError:
        safetensors = None
    data = _load_digits()
    if data is None or safetensors is None:
        print("fastconv demo needs scikit-learn and safetensors: pip install 'fastconv[demo]'", file=sys.stderr)
        return 2
    x_train, x_test, y_train, y_test = data
    start = time.perf_counter()
    rng = np.random.default_rng(args.seed)
    net = build_network(rng)
    optimiser = Adam(net.parameters(), lr=args.lr)
    clock = Clock()
    n_params = sum(p.data.size for p in net.parameters())
    print(f"Training on scikit-learn's 8x8 digits: {len(x_train)} train / {len(x_test)} test images, "
          f"{n_params} parameters\n{net}")

    steps = -(-len(x_train) // args.batch_size)
    total_steps, step, first_step = args.epochs * steps, 0, 0.0
    bar = _progress(total_steps, "training")
    test_accuracy = 0.0
    for epoch in range(1, args.epochs + 1):
        order = rng.permutation(len(x_train))
        total_loss = correct = 0.0
        for i in range(0, len(order), args.batch_size):
            batch = order[i:i + args.batch_size]
            logits = forward(net, x_train[batch], clock)
            loss, grad = cross_entropy(logits, y_train[batch])
            net.zero_grad()
            backward(net, grad, clock)
            optimiser.lr = args.lr * (1 - step / total_steps)
            optimiser.step()
            step += 1
            if step == 1:
                first_step = time.perf_counter() - start
            total_loss += loss * len(batch)
            correct += (logits[:, :, 0, 0].argmax(axis=1) == y_train[batch]).sum()
            bar.update(1)
        net.eval()
        test_accuracy = float((predict(net, x_test, clock).argmax(axis=1) == y_test).mean())
        net.train()
        bar.set_postfix_str(f"epoch {epoch}/{args.epochs} loss {total_loss / len(order):.4f} "
                            f"train acc {correct / len(order):.1%} test acc {test_accuracy:.1%}")
    bar.close()
    train_seconds = time.perf_counter() - start

    # weights to disk and back into a freshly initialised network
    net.eval()
    nn.save_model(net, args.out, metadata={"model": "fastconv demo: digits 8x8"})
    fresh = build_network(np.random.default_rng(args.seed + 1)).eval()
    nn.load_model(fresh, args.out)
    logits, reloaded = predict(net, x_test), predict(fresh, x_test)
    same = bool(np.array_equal(logits.argmax(axis=1), reloaded.argmax(axis=1)) and np.allclose(logits, reloaded))

    print(f"\ntest accuracy {test_accuracy:.2%} ({round(test_accuracy * len(y_test))}/{len(y_test)}) "
          f"after {args.epochs} epochs: training {train_seconds:.1f} s, whole run "
          f"{time.perf_counter() - begin:.1f} s (with data loading and the reload check)")
    print(f"weights saved to {args.out}; reloaded into a fresh network: predictions "
          f"{'identical' if same else 'DIFFER'}")
    accounted = sum(clock.seconds.values())
    print(f"where the training time went (first batch {first_step:.1f} s: it includes numba's one-time "
          f"kernel compilation, cached on disk):")
    for name, seconds in sorted(clock.seconds.items(), key=lambda kv: -kv[1]):
        print(f"  {name:<24} {seconds:6.2f} s  {seconds / train_seconds:6.1%}")
    rest = train_seconds - accounted
    print(f"  {'loss, Adam, data, bar':<24} {rest:6.2f} s  {rest / train_seconds:6.1%}")
    if test_accuracy < TARGET_ACCURACY:
        print(f"test accuracy below the {TARGET_ACCURACY:.0%} target", file=sys.stderr)
    return 0 if same and test_accuracy >= TARGET_ACCURACY else 1
