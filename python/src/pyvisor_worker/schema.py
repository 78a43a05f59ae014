"""JSON Schema of a tool's parameters, derived from type hints, and its precompiled validator.

Supported annotations: int (integer; bool is not an integer), float (number; ints accepted),
str, bool, None, list/list[X]/tuple[X, ...] (array), dict/dict[str, X] (object), X | Y and
Optional[X] (anyOf), Literal[...] (enum), Any or no annotation (anything), and the arrays
that travel beside the JSON: numpy.ndarray / numpy.typing.NDArray[...] (a tensor) and
pyarrow.Table / pyarrow.RecordBatch (an Arrow table), schema ``{"x-pyvisor-array": ...}``.
"""

from __future__ import annotations

import inspect
import json
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

Problem = tuple[str, str, str]
"""(path, expected, got): where a value is wrong, what was expected, what it was (JSON names)."""

Check = Callable[[Any, str], "Problem | None"]


def json_type(value: object) -> str:
    """Return the JSON type name of a decoded JSON value."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


@dataclass(frozen=True, slots=True)
class _Node:
    schema: dict[str, Any]
    expected: str
    check: Check | None  # None accepts anything


def _leaf(schema_type: str, accept: Callable[[Any], bool]) -> _Node:
    def check(value: Any, path: str) -> Problem | None:
        return None if accept(value) else (path, schema_type, json_type(value))

    return _Node({"type": schema_type}, schema_type, check)


_INTEGER = _leaf("integer", lambda v: isinstance(v, int) and not isinstance(v, bool))
_NUMBER = _leaf("number", lambda v: isinstance(v, (int, float)) and not isinstance(v, bool))
_STRING = _leaf("string", lambda v: isinstance(v, str))
_BOOLEAN = _leaf("boolean", lambda v: isinstance(v, bool))
_NULL = _leaf("null", lambda v: v is None)
_ANY = _Node({}, "any value", None)


def _array_format(tp: Any) -> str | None:
    """"tensor" or "arrow" for an array annotation, known by name (importing neither
    numpy nor pyarrow)."""
    origin = typing.get_origin(tp) or tp
    module = getattr(origin, "__module__", "") or ""
    name = getattr(origin, "__name__", "")
    if module.split(".")[0] == "numpy" and name == "ndarray":
        return "tensor"
    if module.split(".")[0] == "pyarrow" and name in ("Table", "RecordBatch"):
        return "arrow"
    return None


def _array_node(fmt: str) -> _Node:
    expected = "a tensor" if fmt == "tensor" else "an Arrow table"

    def check(value: Any, path: str) -> Problem | None:
        if isinstance(value, (type(None), bool, int, float, str, list, dict)):
            return (path, f"{expected} (sent as an array beside the JSON: WithArray in Go)",
                    json_type(value))
        return None

    return _Node({"x-pyvisor-array": fmt}, expected, check)


def _array(item: _Node) -> _Node:
    schema: dict[str, Any] = {"type": "array"}
    if item.check is None:
        return _Node(schema | ({"items": item.schema} if item.schema else {}), "array",
                     _leaf("array", lambda v: isinstance(v, list)).check)
    schema["items"] = item.schema
    item_check = item.check

    def check(value: Any, path: str) -> Problem | None:
        if not isinstance(value, list):
            return (path, "array", json_type(value))
        for i, v in enumerate(value):
            problem = item_check(v, f"{path}[{i}]")
            if problem is not None:
                return problem
        return None

    return _Node(schema, "array", check)


def _object(value_node: _Node) -> _Node:
    schema: dict[str, Any] = {"type": "object"}
    if value_node.check is None:
        if value_node.schema:
            schema["additionalProperties"] = value_node.schema
        return _Node(schema, "object", _leaf("object", lambda v: isinstance(v, dict)).check)
    schema["additionalProperties"] = value_node.schema
    value_check = value_node.check

    def check(value: Any, path: str) -> Problem | None:
        if not isinstance(value, dict):
            return (path, "object", json_type(value))
        for k, v in value.items():
            problem = value_check(v, f"{path}.{k}")
            if problem is not None:
                return problem
        return None

    return _Node(schema, "object", check)


def _any_of(options: list[_Node]) -> _Node:
    if any(o.check is None for o in options):
        return _ANY
    checks = [o.check for o in options if o.check is not None]
    expected = " or ".join(o.expected for o in options)

    def check(value: Any, path: str) -> Problem | None:
        for c in checks:
            if c(value, path) is None:
                return None
        return (path, expected, json_type(value))

    return _Node({"anyOf": [o.schema for o in options]}, expected, check)


def _enum(values: tuple[Any, ...]) -> _Node:
    allowed = list(values)
    expected = "one of " + ", ".join(json.dumps(v) for v in allowed)

    def check(value: Any, path: str) -> Problem | None:
        for a in allowed:
            if value == a and type(value) is type(a):
                return None
        return (path, expected, json.dumps(value, default=str))

    return _Node({"enum": allowed}, expected, check)


def _compile(tp: Any) -> _Node:
    if tp is Any or tp is inspect.Parameter.empty or tp is object:
        return _ANY
    if tp is None or tp is type(None):
        return _NULL
    fmt = _array_format(tp)
    if fmt is not None:
        return _array_node(fmt)
    if tp is bool:
        return _BOOLEAN
    if tp is int:
        return _INTEGER
    if tp is float:
        return _NUMBER
    if tp is str:
        return _STRING
    if tp in (list, tuple, Sequence):
        return _array(_ANY)
    if tp in (dict, Mapping):
        return _object(_ANY)
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin is typing.Union or origin is types.UnionType:
        return _any_of([_compile(a) for a in args])
    if origin is typing.Literal:
        return _enum(args)
    if origin in (list, Sequence, set, frozenset):
        return _array(_compile(args[0]) if args else _ANY)
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return _array(_compile(args[0]))
        return _array(_any_of([_compile(a) for a in args]) if args else _ANY)
    if origin in (dict, Mapping):
        if args and args[0] is not str:
            raise TypeError(f"dict keys must be str for JSON, got {args[0]!r}")
        return _object(_compile(args[1]) if len(args) == 2 else _ANY)
    raise TypeError(f"unsupported parameter annotation {tp!r}")


def _json_default(value: Any) -> tuple[bool, Any]:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return False, None
    return True, value


@dataclass(frozen=True, slots=True)
class ParamsValidator:
    """Checks a decoded ``arguments`` value against a tool's parameters; precompiled, cheap."""

    tool: str
    names: frozenset[str]
    ordered: tuple[str, ...]
    required: tuple[str, ...]
    checks: tuple[tuple[str, Check], ...]

    def _sent(self, args: dict[str, Any]) -> str:
        """Say what was sent against what the tool takes, and spot a Go struct's field names
        (A for a): a struct without json tags encodes its fields as they are spelled."""
        said = f"(sent: {', '.join(args) or 'none'}; parameters: {', '.join(self.ordered) or 'none'}"
        for key in args:
            if key not in self.names and key.lower() in self.names:
                return said + f'; Go struct fields without json tags? Tag them: `json:"{key.lower()}"`)'
        return said + ")"

    def validate(self, args: Any) -> str | None:
        """Return None when ``args`` is valid, else an error message naming the parameter."""
        if not isinstance(args, dict):
            return f"arguments for tool '{self.tool}' must be a JSON object"
        for name in self.required:
            if name not in args:
                return f"missing required argument '{name}' for tool '{self.tool}' {self._sent(args)}"
        if len(args) > len(self.required):
            unknown = [key for key in args if key not in self.names]
            if unknown:
                quoted = ", ".join(f"'{key}'" for key in unknown)
                plural = "s" if len(unknown) > 1 else ""
                return f"unknown argument{plural} {quoted} for tool '{self.tool}' {self._sent(args)}"
        for name, check in self.checks:
            if name in args:
                problem = check(args[name], name)
                if problem is not None:
                    path, expected, got = problem
                    return f"argument '{path}' of tool '{self.tool}' must be {expected}, got {got}"
        return None


@dataclass(frozen=True, slots=True)
class Parameters:
    """A tool's parameter schema (JSON text), its validator, and its ToolContext parameter."""

    schema: dict[str, Any]
    schema_json: str
    validator: ParamsValidator
    context_param: str | None


def parameters_of(fn: Callable[..., Any], tool_name: str, context_type: type) -> Parameters:
    """Derive the JSON Schema and validator of ``fn``'s keyword parameters.

    A parameter annotated ``context_type`` (ToolContext) is injected, not part of the schema.
    Raises TypeError for positional-only or ``*args`` parameters and unsupported annotations.
    """
    sig = inspect.signature(fn)
    hints = typing.get_type_hints(fn)
    properties: dict[str, Any] = {}
    required: list[str] = []
    checks: list[tuple[str, Check]] = []
    context_param: str | None = None
    extra_allowed = False
    for name, param in sig.parameters.items():
        annotation = hints.get(name, inspect.Parameter.empty)
        if annotation is context_type:
            context_param = name
            continue
        if param.kind is inspect.Parameter.VAR_KEYWORD:
            extra_allowed = True
            continue
        if param.kind in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.VAR_POSITIONAL):
            raise TypeError(
                f"tool '{tool_name}': parameter '{name}' must be passable by keyword"
            )
        try:
            node = _compile(annotation)
        except TypeError as exc:
            raise TypeError(f"tool '{tool_name}': parameter '{name}': {exc}") from None
        prop = dict(node.schema)
        if param.default is inspect.Parameter.empty:
            required.append(name)
        else:
            ok, default = _json_default(param.default)
            if ok:
                prop["default"] = default
        properties[name] = prop
        if node.check is not None:
            checks.append((name, node.check))
    schema: dict[str, Any] = {
        "type": "object",
        "properties": properties,
        "required": required,
        "additionalProperties": extra_allowed,
    }
    validator = ParamsValidator(
        tool=tool_name,
        names=frozenset(properties) if not extra_allowed else _AnyName(),
        ordered=tuple(properties),
        required=tuple(required),
        checks=tuple(checks),
    )
    return Parameters(schema, json.dumps(schema, separators=(",", ":")), validator, context_param)


class _AnyName(frozenset[str]):
    """A name set that contains every name (for tools taking ``**kwargs``)."""

    def __contains__(self, item: object) -> bool:
        return True
