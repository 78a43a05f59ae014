"""pyvisor_worker: serve Python functions ("tools") to the pyvisor Go runtime."""

from pyvisor_worker.context import ToolContext
from pyvisor_worker.decorator import tool
from pyvisor_worker.gocall import GoError

__version__ = "0.1.0"

__all__ = ["GoError", "ToolContext", "__version__", "tool"]
