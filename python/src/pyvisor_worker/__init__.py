"""pyvisor_worker: serve Python functions ("tools") to the pyvisor Go runtime."""

from pyvisor_worker.context import ToolContext
from pyvisor_worker.decorator import tool

__version__ = "0.1.0"

__all__ = ["ToolContext", "__version__", "tool"]
