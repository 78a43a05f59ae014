"""``python -m pyvisor_worker``: see :mod:`pyvisor_worker.cli`."""

from pyvisor_worker.cli import main

if __name__ == "__main__":
    main()
