"""A tool whose memory runs away, at a rate the caller chooses."""

import time

from pyvisor_worker import tool


@tool
def grow(mb_per_step: int, step_ms: int, steps: int) -> int:
    held = []
    for _ in range(steps):
        chunk = bytearray(mb_per_step << 20)
        for i in range(0, len(chunk), 4096):  # touch every page: resident, not just reserved
            chunk[i] = 1
        held.append(chunk)
        time.sleep(step_ms / 1000)
    return len(held)


@tool
def small() -> str:
    return "ok"
