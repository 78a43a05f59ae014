"""Tools whose exceptions are hostile: a __str__ that raises, a message of megabytes."""

from pyvisor_worker import tool


class Hostile(Exception):
    def __str__(self) -> str:
        raise RuntimeError("no str for you")


@tool
def hostile_str() -> None:
    raise Hostile


@tool
def huge_message() -> None:
    raise ValueError("x" * (32 << 20))


@tool
def fine() -> str:
    return "ok"
