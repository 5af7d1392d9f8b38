"""Error messages that carry the whole call: function, shapes, parameter and a fix."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class CallContext:
    """Who is asking: the public function's name and the shapes it was given."""

    function: str
    input_shape: tuple | None = None
    weight_shape: tuple | None = None
    input_label: str = "input"
    weight_label: str = "weight"

    def _suffix(self) -> str:
        parts = []
        if self.input_shape is not None:
            parts.append(f"{self.input_label} {tuple(self.input_shape)}")
        if self.weight_shape is not None:
            parts.append(f"{self.weight_label} {tuple(self.weight_shape)}")
        return f" ({', '.join(parts)})" if parts else ""

    def value_error(self, message: str) -> ValueError:
        return ValueError(f"{self.function}: {message}{self._suffix()}")

    def type_error(self, message: str) -> TypeError:
        return TypeError(f"{self.function}: {message}{self._suffix()}")

    def with_shapes(self, input_shape=None, weight_shape=None) -> "CallContext":
        return CallContext(
            self.function,
            self.input_shape if input_shape is None else tuple(input_shape),
            self.weight_shape if weight_shape is None else tuple(weight_shape),
            self.input_label,
            self.weight_label,
        )
