"""Tools for the slot specs: what environment the runtime gave the worker that ran a call."""

import os
import time
from typing import Any

from pyvisor_worker import tool


@tool
def environment(names: list[str], hold: float = 0.0) -> dict[str, Any]:
    """Return this process's pid and the values of the variables ``names`` (None when unset),
    after holding the worker ``hold`` seconds (so concurrent calls land on distinct workers)."""
    time.sleep(hold)
    return {"pid": os.getpid(), "env": {name: os.environ.get(name) for name in names}}
