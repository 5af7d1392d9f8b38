"""Array plumbing shared by algorithms: padding (and its adjoint) and grouped views."""

from __future__ import annotations

import numpy as np

from .._geometry import ConvGeometry


def pad_input(x: np.ndarray, geom: ConvGeometry) -> np.ndarray:
    """x zero-padded by ``geom.padding``; negative padding crops. Returns x itself when there is none."""
    if all(p == (0, 0) for p in geom.padding):
        return x
    widths = [(0, 0), (0, 0)] + [(max(lo, 0), max(hi, 0)) for lo, hi in geom.padding]
    padded = np.pad(x, widths) if any(w != (0, 0) for w in widths) else x
    crop = (slice(None), slice(None)) + tuple(
        slice(max(-lo, 0), padded.shape[2 + i] - max(-hi, 0)) for i, (lo, hi) in enumerate(geom.padding)
    )
    return padded[crop]


def unpad_input(x_padded: np.ndarray, geom: ConvGeometry) -> np.ndarray:
    """Adjoint of :func:`pad_input`: the padded-gradient's interior (cropped inputs get zero)."""
    if all(p == (0, 0) for p in geom.padding):
        return x_padded
    widths = [(0, 0), (0, 0)] + [(max(-lo, 0), max(-hi, 0)) for lo, hi in geom.padding]
    grown = np.pad(x_padded, widths) if any(w != (0, 0) for w in widths) else x_padded
    crop = (slice(None), slice(None)) + tuple(
        slice(max(lo, 0), grown.shape[2 + i] - max(hi, 0)) for i, (lo, hi) in enumerate(geom.padding)
    )
    return grown[crop]


def batch_chunks(batch: int, bytes_per_sample: int, budget: int):
    """Slices of the batch whose scratch memory (bytes_per_sample each) stays within budget."""
    step = max(1, budget // max(bytes_per_sample, 1))
    for start in range(0, batch, step):
        yield slice(start, min(start + step, batch))


def grouped(a: np.ndarray, groups: int) -> np.ndarray:
    """(N, C, ...) -> (N, groups, C/groups, ...) view."""
    return a.reshape(a.shape[0], groups, a.shape[1] // groups, *a.shape[2:])
