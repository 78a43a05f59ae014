"""pyvisor_worker: serve Python functions ("tools") to the pyvisor Go runtime."""

from pyvisor_worker.context import ToolContext
from pyvisor_worker.decorator import tool
from pyvisor_worker.gocall import GoError
from pyvisor_worker.shm import PayloadTooLarge
from pyvisor_worker.upgrade import on_upgrade

__version__ = "0.1.0"

__all__ = ["GoError", "PayloadTooLarge", "ToolContext", "__version__", "on_upgrade", "tool"]
