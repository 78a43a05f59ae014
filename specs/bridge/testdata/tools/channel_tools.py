"""Tools for the channel specs: a body that outlives its cancellation, and one that ends the
worker's channel while the process lives on."""

import asyncio
import time

from pyvisor_worker import ToolContext, tool
from pyvisor_worker.channel import Channel


@tool
def linger(seconds: float, ctx: ToolContext) -> bool:
    """Wait for cancellation, then go on running ``seconds`` more before returning."""
    ctx.wait_cancelled(60)
    time.sleep(seconds)
    return True


@tool
async def end_channel() -> None:
    """End every Channel of this worker from the server side, as a bug in the frame loop
    would: the process keeps running."""
    for task in asyncio.all_tasks():
        frame = task.get_coro().cr_frame
        channel = frame.f_locals.get("self") if frame is not None else None
        if isinstance(channel, Channel):
            channel._end()
