"""Module, Parameter and Sequential: the small part of ``torch.nn.Module`` that layers need.

Training is explicit rather than autograd: ``forward`` keeps what its ``backward`` needs (a
reference to the input, while in training mode), and ``backward(grad_output)`` returns the
gradient w.r.t. the input and accumulates the parameters' ``grad``.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator, Mapping
from typing import NamedTuple

import numpy as np

__all__ = ["IncompatibleKeys", "Module", "Parameter", "Sequential"]


class Parameter:
    """A learnable array and the gradient accumulated for it (the role of ``torch.nn.Parameter``).

    Parameters
    ----------
    data : array_like
        The values; kept as given when already an ndarray (no copy).

    Attributes
    ----------
    data : numpy.ndarray
        The values. Update it in place (``p.data -= lr * p.grad``) so that ``state_dict()``
        views stay valid.
    grad : numpy.ndarray or None
        Sum of the gradients of every ``backward`` since the last ``zero_grad``.

    Examples
    --------
    >>> import numpy as np
    >>> p = Parameter(np.zeros(3, dtype=np.float32))
    >>> p.shape, p.grad
    ((3,), None)
    >>> np.asarray(p).dtype
    dtype('float32')
    """

    __slots__ = ("data", "grad")

    def __init__(self, data) -> None:
        self.data: np.ndarray = np.asarray(data)
        self.grad: np.ndarray | None = None

    @property
    def shape(self) -> tuple[int, ...]:
        return self.data.shape

    @property
    def dtype(self) -> np.dtype:
        return self.data.dtype

    @property
    def ndim(self) -> int:
        return self.data.ndim

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        return np.array(self.data, dtype=dtype, copy=copy)

    def accumulate(self, grad: np.ndarray) -> None:
        """Add ``grad`` to :attr:`grad` (gradients of several backward passes sum, as torch)."""
        self.grad = grad if self.grad is None else self.grad + grad

    def __repr__(self) -> str:
        return f"Parameter containing:\n{self.data!r}"


class IncompatibleKeys(NamedTuple):
    """What ``load_state_dict(strict=False)`` skipped, as torch's ``_IncompatibleKeys``."""

    missing_keys: list[str]
    unexpected_keys: list[str]


def _indent(text: str, spaces: int) -> str:
    lines = text.split("\n")
    return "\n".join(lines[:1] + [" " * spaces + line for line in lines[1:]])


class Module:
    """Base class of every layer: parameters, children, ``state_dict`` and the training contract.

    Subclasses call ``super().__init__()`` first, assign :class:`Parameter` and :class:`Module`
    attributes (they are registered by name, so ``state_dict`` keys match torch's:
    ``block.0.weight``), and implement ``forward`` and ``backward``.
    ``module(x)`` calls ``forward(x)``.

    In training mode (the default) ``forward`` keeps a reference to its input so that
    ``backward`` can compute the weight gradient; do not modify that array in place before
    ``backward``. ``eval()`` stops keeping it (inference, no ``backward``).
    """

    training: bool

    def __init__(self) -> None:
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_modules", OrderedDict())
        object.__setattr__(self, "training", True)

    # ---- registration ----------------------------------------------------------------
    def __setattr__(self, name: str, value) -> None:
        params = self.__dict__.get("_parameters")
        if params is None:
            raise AttributeError(f"{type(self).__name__}: call super().__init__() before assigning attributes")
        modules = self.__dict__["_modules"]
        if isinstance(value, Parameter):
            modules.pop(name, None)
            self.__dict__.pop(name, None)
            params[name] = value
        elif isinstance(value, Module):
            params.pop(name, None)
            self.__dict__.pop(name, None)
            modules[name] = value
        elif name in params or name in modules:
            if value is not None:
                kind = "Parameter" if name in params else "Module"
                raise TypeError(f"{type(self).__name__}.{name} holds a {kind}; assign a {kind} or None, "
                                f"got {type(value).__name__}")
            (params if name in params else modules)[name] = None
        else:
            object.__setattr__(self, name, value)

    def __getattr__(self, name: str):
        # only reached when normal lookup fails: parameters and children live in their dicts
        for store in ("_parameters", "_modules"):
            found = self.__dict__.get(store, {})
            if name in found:
                return found[name]
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def __delattr__(self, name: str) -> None:
        for store in (self._parameters, self._modules):
            if name in store:
                del store[name]
                return
        object.__delattr__(self, name)

    def register_parameter(self, name: str, param: Parameter | None) -> None:
        """Register ``param`` (or None: an absent parameter, like ``bias=False``) under ``name``."""
        if param is not None and not isinstance(param, Parameter):
            raise TypeError(f"register_parameter: {name!r} must be a Parameter or None, got {type(param).__name__}")
        self.__dict__.pop(name, None)
        self._modules.pop(name, None)
        self._parameters[name] = param

    def add_module(self, name: str, module: Module | None) -> None:
        """Register a child module under ``name`` (its parameters get the prefix ``name.``)."""
        if module is not None and not isinstance(module, Module):
            raise TypeError(f"add_module: {name!r} must be a fastconv.nn.Module, got {type(module).__name__}")
        if not isinstance(name, str) or not name or "." in name:
            raise ValueError(f"add_module: module name must be a non-empty string without '.', got {name!r}")
        self.__dict__.pop(name, None)
        self._parameters.pop(name, None)
        self._modules[name] = module

    # ---- traversal -------------------------------------------------------------------
    def named_children(self) -> Iterator[tuple[str, Module]]:
        return ((name, m) for name, m in self._modules.items() if m is not None)

    def children(self) -> Iterator[Module]:
        return (m for _, m in self.named_children())

    def named_modules(self, prefix: str = "") -> Iterator[tuple[str, Module]]:
        """This module and every descendant, with dotted names (this one is ``prefix``)."""
        yield prefix, self
        for name, child in self.named_children():
            yield from child.named_modules(f"{prefix}.{name}" if prefix else name)

    def modules(self) -> Iterator[Module]:
        return (m for _, m in self.named_modules())

    def _named_parameters_all(self, prefix: str = "") -> Iterator[tuple[str, Parameter]]:
        for module_name, module in self.named_modules(prefix):
            for name, p in module._parameters.items():
                if p is not None:
                    yield (f"{module_name}.{name}" if module_name else name), p

    def named_parameters(self, prefix: str = "", recurse: bool = True) -> Iterator[tuple[str, Parameter]]:
        """``(name, Parameter)`` pairs, each parameter once even when shared."""
        found = self._named_parameters_all(prefix) if recurse else (
            ((f"{prefix}.{n}" if prefix else n), p) for n, p in self._parameters.items() if p is not None)
        seen: set[int] = set()
        for name, p in found:
            if id(p) not in seen:
                seen.add(id(p))
                yield name, p

    def parameters(self, recurse: bool = True) -> Iterator[Parameter]:
        return (p for _, p in self.named_parameters(recurse=recurse))

    # ---- weights ---------------------------------------------------------------------
    def state_dict(self) -> OrderedDict[str, np.ndarray]:
        """Parameter name -> array, with torch's keys (``0.weight``, ``block.conv.bias``).

        The arrays are the parameters' own (not copies), as torch's state_dict shares storage.
        """
        return OrderedDict((name, p.data) for name, p in self._named_parameters_all())

    def load_state_dict(self, state_dict: Mapping, strict: bool = True) -> IncompatibleKeys:
        """Copy arrays from any mapping of names to arrays into the parameters (in place).

        Accepts ``state_dict()`` of a fastconv or torch module, ``safetensors.numpy.load_file``
        output, or any dict of array-likes. Every key is checked before anything is copied,
        so on error the module's weights are untouched.

        Parameters
        ----------
        state_dict : Mapping[str, array_like]
            Arrays keyed as :meth:`state_dict` names them.
        strict : bool
            Refuse missing and unexpected keys (default); otherwise report them.

        Returns
        -------
        IncompatibleKeys
            ``(missing_keys, unexpected_keys)``.

        Raises
        ------
        ValueError
            Missing or unexpected keys (strict), or an array whose shape differs; the message names the key.
        TypeError
            ``state_dict`` is not a mapping, or an array's dtype cannot be cast losslessly to the parameter's.
        """
        who = f"{type(self).__name__}.load_state_dict"
        if not isinstance(state_dict, Mapping):
            raise TypeError(f"{who}: expected a mapping of names to arrays, got {type(state_dict).__name__}")
        own = self.state_dict()
        missing = [k for k in own if k not in state_dict]
        unexpected = [k for k in state_dict if k not in own]
        if strict and (missing or unexpected):
            parts = []
            if missing:
                parts.append(f"missing key(s) {missing}")
            if unexpected:
                parts.append(f"unexpected key(s) {unexpected}")
            raise ValueError(f"{who}: {' and '.join(parts)}; this module's keys are {list(own)} "
                             f"(pass strict=False to load the keys that match)")
        staged = [(own[key], _checked(who, key, state_dict[key], own[key])) for key in own if key in state_dict]
        for target, value in staged:
            np.copyto(target, value, casting="safe")
        return IncompatibleKeys(missing, unexpected)

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Reset every parameter's gradient (to None, as torch's default, or to zeros)."""
        for p in self.parameters():
            p.grad = None if set_to_none or p.grad is None else np.zeros_like(p.grad)

    # ---- modes and calls -------------------------------------------------------------
    def train(self, mode: bool = True) -> Module:
        """Set training mode on this module and its descendants (forward keeps inputs for backward)."""
        for m in self.modules():
            object.__setattr__(m, "training", bool(mode))
        return self

    def eval(self) -> Module:
        """Inference mode: forward keeps no inputs, backward is unavailable."""
        return self.train(False)

    def forward(self, *args, **kwargs):
        raise NotImplementedError(f"{type(self).__name__} does not implement forward()")

    def backward(self, grad_output: np.ndarray) -> np.ndarray:
        """Gradient w.r.t. the last forward's input; accumulates parameter gradients."""
        raise NotImplementedError(f"{type(self).__name__} does not implement backward(grad_output)")

    def __call__(self, *args, **kwargs):
        return self.forward(*args, **kwargs)

    # ---- repr (torch's format, so printed models compare line for line) --------------
    def extra_repr(self) -> str:
        return ""

    def __repr__(self) -> str:
        extra = self.extra_repr()
        extra_lines = extra.split("\n") if extra else []
        child_lines = [f"({name}): {_indent(repr(m), 2)}" for name, m in self._modules.items()]
        lines = extra_lines + child_lines
        body = ""
        if lines:
            body = extra_lines[0] if len(extra_lines) == 1 and not child_lines else "\n  " + "\n  ".join(lines) + "\n"
        return f"{type(self).__name__}({body})"


def _checked(who: str, key: str, value, target: np.ndarray) -> np.ndarray:
    """``value`` as an array that fits ``target`` exactly, or an error naming ``key``."""
    try:  # arrays and tensors keep their dtype (checked below); plain lists take the parameter's
        array = np.asarray(value) if hasattr(value, "dtype") else np.asarray(value, dtype=target.dtype)
    except Exception as exc:  # torch tensors needing .detach(), ragged lists, ...
        raise TypeError(f"{who}: {key!r} could not be converted to an array ({exc})") from None
    if array.shape != target.shape:
        raise ValueError(f"{who}: size mismatch for {key!r}: got shape {array.shape}, the module's parameter "
                         f"has shape {target.shape}; check the layer's channels, kernel_size and groups")
    if array.dtype.kind not in "fc" or not np.can_cast(array.dtype, target.dtype, casting="safe"):
        raise TypeError(f"{who}: dtype mismatch for {key!r}: got {array.dtype}, the module's parameter is "
                        f"{target.dtype}; build the module with dtype=np.{array.dtype} or cast the array "
                        f"(value.astype(np.{target.dtype}))")
    return array


class Sequential(Module):
    """Modules applied in order; ``backward`` runs their backward passes in reverse.

    Parameters
    ----------
    *modules : Module, or one ``OrderedDict`` of name -> Module
        Children named ``"0"``, ``"1"``, ... (or by the dict's keys), as ``torch.nn.Sequential``.

    Examples
    --------
    >>> from fastconv.nn import Conv2d, Sequential
    >>> net = Sequential(Conv2d(1, 4, 3), Conv2d(4, 2, 1))
    >>> list(net.state_dict())
    ['0.weight', '0.bias', '1.weight', '1.bias']
    """

    def __init__(self, *modules) -> None:
        super().__init__()
        if len(modules) == 1 and isinstance(modules[0], OrderedDict):
            for name, module in modules[0].items():
                self.add_module(name, module)
        else:
            for index, module in enumerate(modules):
                self.add_module(str(index), module)

    def __len__(self) -> int:
        return len(self._modules)

    def __iter__(self) -> Iterator[Module]:
        return iter(self._modules.values())

    def __getitem__(self, index):
        items = list(self._modules.items())
        if isinstance(index, slice):
            return Sequential(OrderedDict(items[index]))
        return items[index][1]

    def append(self, module: Module) -> Sequential:
        self.add_module(str(len(self)), module)
        return self

    def forward(self, input):
        for module in self:
            input = module(input)
        return input

    def backward(self, grad_output: np.ndarray) -> np.ndarray:
        for module in reversed(list(self)):
            grad_output = module.backward(grad_output)
        return grad_output
