"""Schema derivation, argument validation, @tool marking and discovery."""

from __future__ import annotations

import json
import types
from collections.abc import AsyncIterator, Iterator
from typing import Any, Literal, Optional

import pytest

from pyvisor_worker import ToolContext, tool
from pyvisor_worker.decorator import options_of
from pyvisor_worker.tools import Kind, discover, first_paragraph, make_tool


def schema_of(fn: Any) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(make_tool(fn).schema_json)
    return result


def test_schema_from_type_hints() -> None:
    def f(
        i: int, x: float, s: str, b: bool, items: list[int], any_list: list,  # type: ignore[type-arg]
        d: dict[str, float], o: Optional[int], u: str | None = None, free: Any = None,  # noqa: UP045
        bare=1, lit: Literal["a", "b"] = "a", ctx: ToolContext | None = None,
    ) -> None: ...

    f.__annotations__["ctx"] = ToolContext  # the context parameter is recognised exactly
    s = schema_of(f)
    p = s["properties"]
    assert s["type"] == "object" and s["additionalProperties"] is False
    assert s["required"] == ["i", "x", "s", "b", "items", "any_list", "d", "o"]
    assert p["i"] == {"type": "integer"}
    assert p["x"] == {"type": "number"}
    assert p["s"] == {"type": "string"}
    assert p["b"] == {"type": "boolean"}
    assert p["items"] == {"type": "array", "items": {"type": "integer"}}
    assert p["any_list"] == {"type": "array"}
    assert p["d"] == {"type": "object", "additionalProperties": {"type": "number"}}
    assert p["o"] == {"anyOf": [{"type": "integer"}, {"type": "null"}]}
    assert p["u"] == {"anyOf": [{"type": "string"}, {"type": "null"}], "default": None}
    assert p["free"] == {"default": None}
    assert p["bare"] == {"default": 1}
    assert p["lit"] == {"enum": ["a", "b"], "default": "a"}
    assert "ctx" not in p
    assert make_tool(f).context_param == "ctx"


def test_unsupported_annotation_is_a_clear_error() -> None:
    def f(x: complex) -> None: ...

    with pytest.raises(TypeError, match="tool 'f': parameter 'x': unsupported") as info:
        make_tool(f)
    # Where the tool is: the worker's start error points the user at their own file and line.
    line = f.__code__.co_firstlineno
    assert f'(File "{__file__}", line {line})' in str(info.value)


def test_positional_only_is_rejected() -> None:
    def f(x: int, /) -> None: ...

    with pytest.raises(TypeError, match="keyword"):
        make_tool(f)


def add(a: int, b: int) -> int:
    return a + b


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"a": 1}, "missing required argument 'b' for tool 'add' (sent: a; parameters: a, b)"),
        ({"A": 1, "B": 2}, ("missing required argument 'a' for tool 'add' (sent: A, B; parameters: a, b;"
                            " Go struct fields without json tags? Tag them: `json:\"a\"`)")),
        ({"a": 1, "b": 2, "c": 3}, "unknown argument 'c' for tool 'add' (sent: a, b, c; parameters: a, b)"),
        ({"a": 1, "b": 2, "c": 3, "d": 4},
         "unknown arguments 'c', 'd' for tool 'add' (sent: a, b, c, d; parameters: a, b)"),
        ({"a": "1", "b": 2}, "argument 'a' of tool 'add' must be integer, got string"),
        ({"a": True, "b": 2}, "argument 'a' of tool 'add' must be integer, got boolean"),
        ({"a": 1.5, "b": 2}, "argument 'a' of tool 'add' must be integer, got number"),
        ([1, 2], "arguments for tool 'add' must be a JSON object"),
        (None, "arguments for tool 'add' must be a JSON object"),
    ],
)
def test_validation_messages_name_the_parameter(arguments: Any, message: str) -> None:
    assert make_tool(add).validator.validate(arguments) == message


def test_validation_accepts_valid_arguments() -> None:
    def f(x: float, xs: list[int], d: dict[str, list[str]], o: int | None = None) -> None: ...

    v = make_tool(f).validator
    assert v.validate({"x": 1, "xs": [], "d": {}}) is None  # an int is a number
    assert v.validate({"x": 1.5, "xs": [1, 2], "d": {"k": ["a"]}, "o": None}) is None
    assert v.validate({"x": 1.5, "xs": [1, 2], "d": {}, "o": 3}) is None


def test_validation_is_recursive() -> None:
    def f(xs: list[int], d: dict[str, list[str]], o: int | None = None) -> None: ...

    v = make_tool(f).validator
    assert v.validate({"xs": [1, "2"], "d": {}}) == (
        "argument 'xs[1]' of tool 'f' must be integer, got string"
    )
    assert v.validate({"xs": [], "d": {"k": ["a", 2]}}) == (
        "argument 'd.k[1]' of tool 'f' must be string, got integer"
    )
    assert v.validate({"xs": [], "d": {}, "o": "x"}) == (
        "argument 'o' of tool 'f' must be integer or null, got string"
    )
    assert v.validate({"xs": [True], "d": {}}) == (
        "argument 'xs[0]' of tool 'f' must be integer, got boolean"
    )


def test_bool_is_not_a_number_either() -> None:
    def f(x: float) -> None: ...

    assert make_tool(f).validator.validate({"x": False}) == (
        "argument 'x' of tool 'f' must be number, got boolean"
    )


def test_go_fields_without_tags_are_named_when_every_parameter_is_optional() -> None:
    def f(a: int = 0, b: int = 0) -> int:
        return a + b

    assert make_tool(f).validator.validate({"A": 1}) == (
        "unknown argument 'A' for tool 'f' (sent: A; parameters: a, b;"
        " Go struct fields without json tags? Tag them: `json:\"a\"`)"
    )


def test_context_parameter_cannot_be_passed_as_an_argument() -> None:
    def f(ctx: ToolContext) -> None: ...

    assert make_tool(f).validator.validate({"ctx": 1}) == (
        "unknown argument 'ctx' for tool 'f' (sent: ctx; parameters: none)"
    )


def test_kwargs_allow_additional_properties() -> None:
    def f(a: int, **rest: Any) -> None: ...

    t = make_tool(f)
    assert json.loads(t.schema_json)["additionalProperties"] is True
    assert t.validator.validate({"a": 1, "zzz": 2}) is None


def test_tool_decorator_only_marks() -> None:
    def plain(x: int) -> int:
        return x

    marked = tool(plain)
    assert marked is plain and marked(2) == 2

    @tool(name="raise", description="custom")
    def fail() -> None: ...

    opts = options_of(fail)
    assert opts is not None and opts.name == "raise" and opts.description == "custom"
    assert options_of(lambda: None) is None
    with pytest.raises(TypeError):
        tool(42)  # type: ignore[call-overload]


def test_kinds_and_descriptions() -> None:
    def s() -> None:
        """First line
        continues here.

        Details."""

    async def a() -> None: ...

    def g() -> Iterator[int]:
        yield 1

    async def ag() -> AsyncIterator[int]:
        yield 1

    assert make_tool(s).kind is Kind.SYNC and not make_tool(s).streaming
    assert make_tool(a).kind is Kind.ASYNC and make_tool(a).is_async
    assert make_tool(g).kind is Kind.SYNC_GEN and make_tool(g).streaming
    assert make_tool(ag).kind is Kind.ASYNC_GEN and make_tool(ag).is_async
    assert make_tool(s).description == "First line continues here."
    assert first_paragraph(None) == ""


def test_discover_finds_marked_functions_once_and_rejects_duplicates() -> None:
    m1 = types.ModuleType("m1")
    m2 = types.ModuleType("m2")

    @tool
    def one() -> int:
        return 1

    def unmarked() -> None: ...

    m1.one = one  # type: ignore[attr-defined]
    m1.unmarked = unmarked  # type: ignore[attr-defined]
    m2.one_again = one  # type: ignore[attr-defined]
    assert list(discover([m1, m2])) == ["one"]

    @tool(name="one")
    def another() -> int:
        return 2

    m2.another = another  # type: ignore[attr-defined]
    with pytest.raises(ValueError, match="two tools are named 'one'"):
        discover([m1, m2])
