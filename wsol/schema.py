"""The types and ranges of config values, beyond what OmegaConf's own types express.

OmegaConf (2.3) types a leaf as one of bool, int, float, str, an enum, a list or a dict, optionally null. A few
settings take one of several kinds (``model.layer``: a module name or a list of them; ``speed.compile``: a bool or
a mode name); their schema field is untyped for OmegaConf and carries its real type as a ``kind``. Numbers carry a
:class:`Range`. :func:`conforms` and :func:`describe` read both, so one checker validates every leaf of every
schema (``wsol.config.check_leaves``).
"""

from __future__ import annotations

import enum
import types
import typing
from dataclasses import dataclass
from typing import Any, Literal

__all__ = ["PROTOCOL", "Range", "conforms", "describe"]

_UNIONS = (typing.Union, types.UnionType)


@dataclass(frozen=True)
class Range:
    """The allowed numbers: ``low ≤ v`` (``low < v`` when ``low_open``) and ``v ≤ high`` (``v < high`` when
    ``high_open``); ``None`` is unbounded. A list's elements are checked one by one."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False

    def __contains__(self, value: object) -> bool:
        if isinstance(value, bool) or not isinstance(value, int | float):
            return True  # not a number: the kind check's business
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return False
        return not (self.high is not None and (value >= self.high if self.high_open else value > self.high))

    def describe(self) -> str:
        if self.low is not None and self.high is not None:
            return f"in {'(' if self.low_open else '['}{self.low:g}, {self.high:g}{')' if self.high_open else ']'}"
        if self.low is not None:
            return f"{'>' if self.low_open else '≥'} {self.low:g}"
        return f"{'<' if self.high_open else '≤'} {self.high:g}" if self.high is not None else "any number"


class _ProtocolSetting:
    """Marks a signature's parameter as a protocol setting: ``Annotated[int, Range(1), PROTOCOL]``."""

    def __repr__(self) -> str:
        return "PROTOCOL"


PROTOCOL = _ProtocolSetting()


def _is_list(value: object) -> bool:
    from omegaconf import ListConfig

    return isinstance(value, list | tuple | ListConfig)


def _is_dict(value: object) -> bool:
    from omegaconf import DictConfig

    return isinstance(value, dict | DictConfig)


def conforms(value: object, kind: Any) -> bool:
    """Whether ``value`` (as composed) is of ``kind``: a type, a ``Union``, a ``Literal``, ``list[X]``, ``dict``."""
    if kind is Any:
        return True
    if kind is type(None) or kind is None:
        return value is None
    origin = typing.get_origin(kind)
    if origin in _UNIONS:
        return any(conforms(value, k) for k in typing.get_args(kind))
    if origin is Literal:
        return any(type(value) is type(v) and value == v for v in typing.get_args(kind))
    if origin is list:
        (inner,) = typing.get_args(kind) or (Any,)
        return _is_list(value) and all(conforms(v, inner) for v in value)
    if origin is dict or kind is dict:
        return _is_dict(value)
    if isinstance(kind, type) and issubclass(kind, enum.Enum):
        return isinstance(value, kind) or value in {m.value for m in kind}
    if kind is bool:
        return isinstance(value, bool)
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if kind is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if kind is str:
        return isinstance(value, str)
    return isinstance(value, kind) if isinstance(kind, type) else True


_PLURAL = {int: "integers", float: "numbers", bool: "booleans", str: "strings"}
_NAMES = {int: "an integer", float: "a number", bool: "true or false", str: "a string", dict: "a mapping {k: v}"}


def _alternatives(kind: Any) -> list[str]:
    """The words of a union's, a ``Literal``'s or a bool's alternatives, null last."""
    origin = typing.get_origin(kind)
    if kind is bool:
        return ["true", "false"]
    if origin is Literal:
        return [str(v) for v in typing.get_args(kind)]
    if origin in _UNIONS:
        args = typing.get_args(kind)
        words = [w for k in args if k is not type(None) for w in _alternatives(k)]
        return words + (["null"] if type(None) in args else [])
    return [describe(kind)]


def describe(kind: Any) -> str:
    """``kind`` in words, as an error line says what a key expects."""
    if kind is type(None) or kind is None:
        return "null"
    origin = typing.get_origin(kind)
    if origin in _UNIONS or origin is Literal or kind is bool:
        words = _alternatives(kind)
        return ", ".join(words[:-1]) + f" or {words[-1]}" if len(words) > 1 else words[0]
    if origin is list:
        (inner,) = typing.get_args(kind) or (Any,)
        return f"a list of {_PLURAL.get(inner, 'values')}"
    if origin is dict:
        return _NAMES[dict]
    if isinstance(kind, type) and issubclass(kind, enum.Enum):
        return "one of " + ", ".join(m.value for m in kind)
    return _NAMES.get(kind, str(kind))
