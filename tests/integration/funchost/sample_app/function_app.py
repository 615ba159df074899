"""A test-only function app that exercises every trigger the harness serves.

Each invocation appends one JSON line to ``$SAMPLE_RECORD_DIR/<function>.jsonl`` so tests in another
process can see what the function received. Schedules and queue names come from ``%SETTING%``
expressions so each test picks its own.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path
from typing import Any

import azure.functions as func

app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)


def record(function: str, **fields: Any) -> None:
    directory = os.environ.get("SAMPLE_RECORD_DIR")
    if not directory:
        return
    line = json.dumps({"function": function, "t": time.time(), **fields}, default=str)
    with open(Path(directory) / f"{function}.jsonl", "a", encoding="utf-8") as out:
        out.write(line + "\n")


@app.route(route="hello/{name}", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
async def hello(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    payload = {
        "name": req.route_params["name"],
        "method": req.method,
        "url": req.url,
        "params": dict(req.params),
        "header": req.headers.get("x-sample"),
        "request_type": type(req).__module__ + "." + type(req).__qualname__,
        "invocation_id": context.invocation_id,
        "function_name": context.function_name,
    }
    return func.HttpResponse(json.dumps(payload), mimetype="application/json", headers={"x-served-by": "sample"})


@app.route(route="items/{id:int?}", methods=["GET", "POST"])
def items(req: func.HttpRequest) -> func.HttpResponse:
    """Function-level auth, an optional int-constrained parameter, and the request body (sync: thread pool)."""
    payload = {"id": req.route_params.get("id"), "method": req.method, "body_length": len(req.get_body())}
    return func.HttpResponse(json.dumps(payload), status_code=201 if req.method == "POST" else 200)


@app.route(route="secret", methods=["GET"], auth_level=func.AuthLevel.ADMIN)
def secret(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse("admin only")


@app.route(route="boom", auth_level=func.AuthLevel.ANONYMOUS)
def boom(req: func.HttpRequest) -> func.HttpResponse:
    raise RuntimeError("sensitive detail that must not reach the caller")


@app.route(route="ping", auth_level=func.AuthLevel.ANONYMOUS)
async def ping(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse("pong")


@app.queue_trigger(arg_name="msg", queue_name="%SAMPLE_QUEUE%", connection="AzureWebJobsStorage")
def on_message(msg: func.QueueMessage) -> None:
    """Fails while ``dequeue_count <= fail_times`` of the JSON body (``fail_times: -1`` fails always);
    sleeps ``sleep`` seconds first so tests can watch concurrency."""
    body = msg.get_body()
    started = time.time()
    spec = json.loads(body)
    time.sleep(float(spec.get("sleep", 0)))
    record(
        "on_message",
        id=msg.id,
        body=body.decode("utf-8", "replace"),
        dequeue_count=msg.dequeue_count,
        insertion_time=msg.insertion_time,
        pop_receipt=bool(msg.pop_receipt),
        message_type=type(msg).__module__ + "." + type(msg).__qualname__,
        started=started,
    )
    fail_times = int(spec.get("fail_times", 0))
    if fail_times < 0 or (msg.dequeue_count or 0) <= fail_times:
        raise RuntimeError(f"failing on purpose (dequeue {msg.dequeue_count})")


@app.timer_trigger(schedule="%TICK_SCHEDULE%", arg_name="timer", run_on_startup=False)
async def tick(timer: func.TimerRequest) -> None:
    """Sleeps ``TICK_SLEEP`` seconds so a run can overrun its schedule."""
    started = time.time()
    record("tick", phase="start", past_due=timer.past_due, started=started)
    await asyncio.sleep(float(os.environ.get("TICK_SLEEP", "0")))
    record("tick", phase="end", past_due=timer.past_due, started=started, ended=time.time())


@app.timer_trigger(schedule="0 0 0 1 1 *", arg_name="timer", run_on_startup=True)
def yearly(timer: func.TimerRequest, context: func.Context) -> None:
    """Runs at startup (run_on_startup) and when fired through the admin API; its schedule is yearly."""
    record(
        "yearly",
        past_due=timer.past_due,
        schedule_status=getattr(timer, "schedule_status", None),  # on the concrete TimerRequest
        timer_type=type(timer).__module__ + "." + type(timer).__qualname__,
        invocation_id=context.invocation_id,
    )
