"""Tool discovery: find ``@tool``-marked functions in modules and describe how to call them."""

from __future__ import annotations

import enum
import inspect
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from pyvisor_worker.context import ToolContext
from pyvisor_worker.decorator import options_of
from pyvisor_worker.schema import ParamsValidator, parameters_of


class Kind(enum.Enum):
    """How a tool is called: plain or async function, sync or async generator."""

    SYNC = "sync"
    ASYNC = "async"
    SYNC_GEN = "sync_generator"
    ASYNC_GEN = "async_generator"

    @property
    def streaming(self) -> bool:
        return self in (Kind.SYNC_GEN, Kind.ASYNC_GEN)

    @property
    def is_async(self) -> bool:
        return self in (Kind.ASYNC, Kind.ASYNC_GEN)


@dataclass(frozen=True, slots=True)
class Tool:
    """One discovered tool, with everything the hot path needs precomputed."""

    name: str
    description: str
    func: Callable[..., Any]
    kind: Kind
    schema_json: str
    validator: ParamsValidator
    context_param: str | None

    @property
    def streaming(self) -> bool:
        return self.kind.streaming

    @property
    def is_async(self) -> bool:
        return self.kind.is_async


def _kind(fn: Callable[..., Any]) -> Kind:
    if inspect.isasyncgenfunction(fn):
        return Kind.ASYNC_GEN
    if inspect.iscoroutinefunction(fn):
        return Kind.ASYNC
    if inspect.isgeneratorfunction(fn):
        return Kind.SYNC_GEN
    return Kind.SYNC


def first_paragraph(doc: str | None) -> str:
    """Return a docstring's first paragraph on one line ("" without a docstring)."""
    if not doc:
        return ""
    cleaned = inspect.cleandoc(doc)
    return " ".join(cleaned.split("\n\n", 1)[0].split())


def make_tool(fn: Callable[..., Any], name: str | None = None, description: str | None = None) -> Tool:
    """Build a Tool for ``fn`` (its name defaults to ``fn.__name__``)."""
    tool_name = name or fn.__name__
    try:
        params = parameters_of(fn, tool_name, ToolContext)
    except TypeError as exc:
        raise TypeError(f"{exc} ({where(fn)})") from None
    return Tool(
        name=tool_name,
        description=description if description is not None else first_paragraph(fn.__doc__),
        func=fn,
        kind=_kind(fn),
        schema_json=params.schema_json,
        validator=params.validator,
        context_param=params.context_param,
    )


def where(fn: Callable[..., Any]) -> str:
    """Say where ``fn`` is defined, as a traceback's frame does: File "path", line N."""
    code = getattr(inspect.unwrap(fn), "__code__", None)
    if code is None:
        return f"in {getattr(fn, '__module__', '?')}"
    return f'File "{code.co_filename}", line {code.co_firstlineno}'


def discover(modules: Iterable[ModuleType]) -> Mapping[str, Tool]:
    """Return the marked functions of ``modules`` as tools, by name.

    A function reachable from several modules counts once; two different functions with the
    same tool name are an error (ValueError). Bad signatures raise TypeError.
    """
    found: dict[str, Tool] = {}
    for module in modules:
        for obj in list(vars(module).values()):
            options = options_of(obj)
            if options is None:
                continue
            t = make_tool(obj, options.name, options.description)
            existing = found.get(t.name)
            if existing is not None and existing.func is not obj:
                raise ValueError(
                    f"two tools are named '{t.name}': "
                    f"{existing.func.__module__}.{existing.func.__qualname__} and "
                    f"{obj.__module__}.{obj.__qualname__}"
                )
            found[t.name] = t
    return dict(sorted(found.items()))
