"""Weight initialisation with torch.nn.init's distributions, drawn from a NumPy Generator.

The distributions (bounds, standard deviations, fan computation) are torch's exactly; the
numbers are not, since the random streams differ. Every function fills its array in place
and returns it; ``generator`` is a ``numpy.random.Generator``, a seed, or None (fresh entropy).
Complex arrays get independent real and imaginary parts, as torch.
"""

from __future__ import annotations

import math

import numpy as np

from .module import Parameter

__all__ = ["calculate_gain", "fan_in_and_fan_out", "kaiming_normal_", "kaiming_uniform_", "normal_", "uniform_",
           "xavier_normal_", "xavier_uniform_", "zeros_"]

_LINEAR = ("linear", "conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d", "conv_transpose3d",
           "sigmoid")


def calculate_gain(nonlinearity: str, param: float | None = None) -> float:
    """Recommended gain for a nonlinearity, as ``torch.nn.init.calculate_gain``.

    Examples
    --------
    >>> round(calculate_gain("leaky_relu", 5 ** 0.5), 6)
    0.57735
    """
    if nonlinearity in _LINEAR:
        return 1.0
    if nonlinearity == "tanh":
        return 5.0 / 3
    if nonlinearity == "relu":
        return math.sqrt(2.0)
    if nonlinearity == "leaky_relu":
        if param is None:
            slope = 0.01
        elif isinstance(param, (int, float)) and not isinstance(param, bool):
            slope = param
        else:
            raise ValueError(f"calculate_gain: negative_slope {param!r} is not a valid number")
        return math.sqrt(2.0 / (1 + slope**2))
    if nonlinearity == "selu":
        return 3.0 / 4
    raise ValueError(f"calculate_gain: unsupported nonlinearity {nonlinearity!r}; use one of "
                     f"{', '.join(_LINEAR)}, tanh, relu, leaky_relu, selu")


def fan_in_and_fan_out(shape: tuple[int, ...]) -> tuple[int, int]:
    """``(shape[1] * kernel volume, shape[0] * kernel volume)``, torch's fans of a weight.

    For transposed-convolution weights ``(C_in, C_out / groups, *kernel)`` this is what torch
    computes too (the fans of the stored layout), so initial bounds agree with torch.
    """
    if len(shape) < 2:
        raise ValueError(f"fan_in_and_fan_out: fans need an array of at least 2 dimensions, got shape {shape}")
    receptive = math.prod(shape[2:])
    return shape[1] * receptive, shape[0] * receptive


def _target(array) -> np.ndarray:
    data = array.data if isinstance(array, Parameter) else array
    if not isinstance(data, np.ndarray) or data.dtype.kind not in "fc":
        raise TypeError(f"init: expected a floating or complex ndarray or Parameter, got {type(array).__name__}"
                        + (f" of dtype {data.dtype}" if isinstance(data, np.ndarray) else ""))
    return data


def _fill(array, draw) -> np.ndarray | Parameter:
    """Fill ``array`` in place with ``draw(shape)`` (float64 samples; twice for complex)."""
    data = _target(array)
    if data.dtype.kind == "c":
        data[...] = draw(data.shape) + 1j * draw(data.shape)
    else:
        data[...] = draw(data.shape)
    return array


def uniform_(array, a: float = 0.0, b: float = 1.0, generator=None):
    """Fill with U(a, b)."""
    rng = np.random.default_rng(generator)
    return _fill(array, lambda shape: rng.uniform(a, b, shape))


def normal_(array, mean: float = 0.0, std: float = 1.0, generator=None):
    """Fill with N(mean, std^2)."""
    rng = np.random.default_rng(generator)
    return _fill(array, lambda shape: rng.normal(mean, std, shape))


def zeros_(array):
    """Fill with zeros."""
    _target(array)[...] = 0
    return array


def _kaiming_std(array, a: float, mode: str, nonlinearity: str) -> float:
    if mode not in ("fan_in", "fan_out"):
        raise ValueError(f"kaiming init: mode={mode!r} must be 'fan_in' or 'fan_out'")
    fan_in, fan_out = fan_in_and_fan_out(_target(array).shape)
    fan = fan_in if mode == "fan_in" else fan_out
    if fan == 0:
        raise ValueError(f"kaiming init: array of shape {_target(array).shape} has {mode} = 0")
    return calculate_gain(nonlinearity, a) / math.sqrt(fan)


def kaiming_uniform_(array, a: float = 0.0, mode: str = "fan_in", nonlinearity: str = "leaky_relu",
                     generator=None):
    """He uniform: U(-b, b) with ``b = gain * sqrt(3 / fan)``. Conv layers use ``a = sqrt(5)``,
    which gives ``b = 1 / sqrt(fan_in)``.

    Examples
    --------
    >>> w = kaiming_uniform_(np.empty((4, 2, 3, 3)), a=5 ** 0.5, generator=0)
    >>> bool(np.abs(w).max() <= 1 / 18 ** 0.5)
    True
    """
    bound = math.sqrt(3.0) * _kaiming_std(array, a, mode, nonlinearity)
    return uniform_(array, -bound, bound, generator)


def kaiming_normal_(array, a: float = 0.0, mode: str = "fan_in", nonlinearity: str = "leaky_relu",
                    generator=None):
    """He normal: N(0, std^2) with ``std = gain / sqrt(fan)``."""
    return normal_(array, 0.0, _kaiming_std(array, a, mode, nonlinearity), generator)


def _xavier_std(array, gain: float) -> float:
    fan_in, fan_out = fan_in_and_fan_out(_target(array).shape)
    return gain * math.sqrt(2.0 / float(fan_in + fan_out))


def xavier_uniform_(array, gain: float = 1.0, generator=None):
    """Glorot uniform: U(-b, b) with ``b = gain * sqrt(6 / (fan_in + fan_out))``."""
    bound = math.sqrt(3.0) * _xavier_std(array, gain)
    return uniform_(array, -bound, bound, generator)


def xavier_normal_(array, gain: float = 1.0, generator=None):
    """Glorot normal: N(0, std^2) with ``std = gain * sqrt(2 / (fan_in + fan_out))``."""
    return normal_(array, 0.0, _xavier_std(array, gain), generator)
