"""The ``@tool`` decorator: it only marks a function; the worker discovers marked functions."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar, overload

F = TypeVar("F", bound=Callable[..., Any])

MARK = "__pyvisor_tool__"
"""Attribute set on a marked function; its value is a :class:`ToolOptions`."""


@dataclass(frozen=True, slots=True)
class ToolOptions:
    """What ``@tool(...)`` was given: an explicit name and description, or None for defaults."""

    name: str | None = None
    description: str | None = None


def _mark(fn: F, options: ToolOptions) -> F:
    if not inspect.isfunction(fn):
        raise TypeError(f"@tool can only mark functions, got {type(fn).__name__}")
    setattr(fn, MARK, options)
    return fn


@overload
def tool(fn: F, /) -> F: ...


@overload
def tool(*, name: str | None = None, description: str | None = None) -> Callable[[F], F]: ...


def tool(
    fn: F | None = None, /, *, name: str | None = None, description: str | None = None
) -> F | Callable[[F], F]:
    """Mark a sync/async function or (async) generator as a tool.

    Use as ``@tool`` or ``@tool(name="raise", description="...")``. The function is returned
    unchanged; nothing is registered anywhere.
    """
    options = ToolOptions(name=name, description=description)
    if fn is not None:
        return _mark(fn, options)

    def decorate(f: F) -> F:
        return _mark(f, options)

    return decorate


def options_of(obj: object) -> ToolOptions | None:
    """Return the options of a marked function, or None when ``obj`` is not a tool."""
    options = getattr(obj, MARK, None) if inspect.isfunction(obj) else None
    return options if isinstance(options, ToolOptions) else None
