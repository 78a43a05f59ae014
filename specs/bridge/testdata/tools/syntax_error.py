"""A tools module with a syntax error, as a typo makes."""

from pyvisor_worker import tool


@tool
def half(x: int) -> int
    return x // 2
