"""A tools module for the CLI tests (importable because tests/ is on PYTHONPATH)."""

from pyvisor_worker import tool


@tool
def hello(name: str = "world") -> str:
    """Say hello."""
    return f"hello {name}"
