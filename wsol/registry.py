"""Name registries: a config value maps to exactly one builder in code."""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable
from typing import Generic, TypeVar

from .errors import WsolError

__all__ = ["Registry", "close_matches"]

T = TypeVar("T")


def close_matches(name: str, choices: Iterable[str], n: int = 5) -> list[str]:
    """The ``n`` names in ``choices`` closest to ``name`` (prefix matches first)."""
    choices = list(choices)
    prefix = [c for c in choices if c.startswith(name) and c != name][:n]
    fuzzy = difflib.get_close_matches(name, choices, n=n, cutoff=0.5)
    return list(dict.fromkeys(prefix + fuzzy))[:n]


class Registry(Generic[T]):
    """A named collection of builders, filled by a decorator.

    Example::

        METHODS = Registry("method")

        @METHODS.register("gradcam")
        class GradCAM(...): ...

        METHODS.get("gradcam")
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def decorator(obj: T) -> T:
            if name in self._items:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._items[name] = obj
            return obj

        return decorator

    def get(self, name: str) -> T:
        if name not in self._items:
            hint = close_matches(name, self._items) or sorted(self._items)
            raise WsolError(f"unknown {self.kind} {name!r}; did you mean: {', '.join(hint)}")
        return self._items[name]

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: str) -> bool:
        return name in self._items
