"""pyvisor_worker: serve Python functions ("tools") to the pyvisor Go runtime."""

__version__ = "0.1.0"
