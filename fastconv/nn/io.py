"""Weights on disk as ``.safetensors`` (never pickle), with torch's state_dict keys.

A torch model's weights load into the equivalent fastconv layers once saved with
``safetensors.torch.save_file(model.state_dict(), "model.safetensors")``.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .module import IncompatibleKeys, Module

__all__ = ["load_model", "save_model"]

_CONVERT = ('convert it in Python with torch installed: `import torch, safetensors.torch; '
            'safetensors.torch.save_file(torch.load(path, weights_only=True), "model.safetensors")` for a saved '
            'state_dict, or `safetensors.torch.save_file(model.state_dict(), "model.safetensors")` for a model')


def _safetensors_numpy(function: str):
    try:
        import safetensors.numpy
    except ImportError:
        raise ImportError(f"{function} needs the safetensors package: pip install 'fastconv[io]' "
                          f"(or pip install safetensors)") from None
    return safetensors.numpy


def _is_pickle(head: bytes) -> bool:
    """torch.save's zip archive, or a bare pickle (b"\\x80" + protocol). A safetensors file starts
    with its header's length (8 bytes, whose first may also be 0x80), then b"{"."""
    return head.startswith(b"PK\x03\x04") or (head.startswith(b"\x80") and head[8:9] != b"{")


def _refuse_pickle(function: str, path: Path, head: bytes = b"") -> None:
    if path.suffix.lower() in (".pt", ".pth") or _is_pickle(head):
        raise ValueError(f"{function}: {str(path)!r} looks like a torch/pickle file; fastconv reads and writes only "
                         f".safetensors (pickle can run arbitrary code). To use these weights, {_CONVERT}")


def save_model(module: Module, path: str | os.PathLike, metadata: dict[str, str] | None = None) -> None:
    """Write ``module.state_dict()`` to a ``.safetensors`` file.

    Parameters
    ----------
    module : fastconv.nn.Module
    path : str or os.PathLike
        Destination, conventionally ending in ``.safetensors``.
    metadata : dict of str to str, optional
        Free text stored in the file's header.

    Raises
    ------
    ValueError
        ``path`` ends in ``.pt``/``.pth`` (pickle formats are never written).
    ImportError
        safetensors is not installed (``pip install 'fastconv[io]'``).

    Examples
    --------
    >>> import tempfile, os
    >>> from fastconv.nn import Conv2d, save_model, load_model
    >>> path = os.path.join(tempfile.mkdtemp(), "conv.safetensors")
    >>> save_model(Conv2d(1, 2, 3, generator=0), path)
    >>> load_model(Conv2d(1, 2, 3), path)
    IncompatibleKeys(missing_keys=[], unexpected_keys=[])
    """
    if not isinstance(module, Module):
        raise TypeError(f"save_model: expected a fastconv.nn.Module, got {type(module).__name__}")
    path = Path(path)
    _refuse_pickle("save_model", path)
    st = _safetensors_numpy("save_model")
    st.save_file({k: np.ascontiguousarray(v) for k, v in module.state_dict().items()}, str(path), metadata=metadata)


def load_model(module: Module, path: str | os.PathLike, strict: bool = True) -> IncompatibleKeys:
    """Load a ``.safetensors`` file into ``module`` (as ``safetensors.torch.load_model``).

    The whole file is read and checked before any weight changes, so on error the module is
    untouched.

    Parameters
    ----------
    module : fastconv.nn.Module
    path : str or os.PathLike
        A ``.safetensors`` file, from :func:`save_model` or ``safetensors.torch.save_file``.
    strict : bool
        Refuse missing and unexpected keys (default).

    Returns
    -------
    IncompatibleKeys
        ``(missing_keys, unexpected_keys)`` (both empty when ``strict``).

    Raises
    ------
    FileNotFoundError
        No file at ``path``.
    ValueError
        A torch/pickle file (with how to convert it), a corrupt or truncated file, missing or
        unexpected keys, or a shape mismatch (naming the key).
    TypeError
        A dtype that does not cast losslessly to the parameter's (naming the key).
    """
    if not isinstance(module, Module):
        raise TypeError(f"load_model: expected a fastconv.nn.Module, got {type(module).__name__}")
    path = Path(path)
    with open(path, "rb") as f:  # FileNotFoundError names the path
        head = f.read(9)
    _refuse_pickle("load_model", path, head)
    st = _safetensors_numpy("load_model")
    try:
        state = st.load_file(str(path))
    except OSError:
        raise
    except Exception as exc:  # safetensors' own error type varies across versions
        raise ValueError(f"load_model: {str(path)!r} is not a readable safetensors file (corrupt, truncated, "
                         f"or a dtype NumPy lacks such as bfloat16): {exc}") from None
    try:
        return module.load_state_dict(state, strict=strict)
    except (ValueError, TypeError) as exc:
        raise type(exc)(f"load_model: {str(path)!r}: {exc}") from None
