"""A tools module whose import takes longer than gRPC holds a call the server has not
taken up (30 s by default): the host waits in Describe, its channel open, all along."""

import time

from pyvisor_worker import tool

time.sleep(32)


@tool
def ready() -> bool:
    return True
