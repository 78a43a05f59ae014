"""A tools module whose import takes a while, as a model's load does."""

import sys
import time

from pyvisor_worker import tool

print("model_import: loading the model...", file=sys.stderr, flush=True)
time.sleep(2.5)


@tool
def predict(x: float) -> float:
    """The model's answer."""
    return 2 * x
