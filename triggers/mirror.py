"""The directory mirror's rounds: the debounced ``mirror-rounds`` queue and the safety-net timer."""

from __future__ import annotations

import azure.functions as func

from shared.index_time import timer_schedule
from shared.invocation import run_queue, run_timer
from shared.names import MIRROR_ROUNDS_QUEUE
from shared.wiring import registry
from shared.wiring_mirror import MIRROR, mirrored

bp = func.Blueprint()


@bp.function_name("mirror_round")
@bp.queue_trigger(arg_name="msg", queue_name=MIRROR_ROUNDS_QUEUE, connection="AzureWebJobsStorage")
async def mirror_round(msg: func.QueueMessage, context: func.Context) -> None:
    async def handle() -> object:
        if not mirrored():
            return None  # a message left from when the directory was mirrored: nothing to do
        return await (await registry.get(MIRROR)).run_round()

    await run_queue("mirror_round", context, msg, handle, queue=MIRROR_ROUNDS_QUEUE)


@bp.function_name("mirror_safety_net")
@bp.timer_trigger(arg_name="timer", schedule=timer_schedule("MIRROR_SCHEDULE"), run_on_startup=True, use_monitor=True)
async def mirror_safety_net(timer: func.TimerRequest, context: func.Context) -> None:
    async def handle() -> object:
        if not mirrored():
            return None
        return await (await registry.get(MIRROR)).tick()

    await run_timer("mirror_safety_net", context, handle)
