"""Schedules, message decoding and indexing: the pure parts of the timer and queue triggers."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta

import azure.functions as func
import pytest

from devtools.funchost.config import ConfigError
from devtools.funchost.indexing import index
from devtools.funchost.queues import MessageDecodeError, decode_body
from devtools.funchost.timers import CronSchedule, IntervalSchedule, parse_schedule

T0 = datetime(2025, 3, 1, 12, 0, 0, tzinfo=UTC)


def test_six_field_ncrontab_puts_seconds_first() -> None:
    """'*/15 * * * * *' fires every 15 seconds; '0 */5 * * * *' every five minutes on the minute."""
    assert parse_schedule("*/15 * * * * *").next_after(T0) == T0 + timedelta(seconds=15)
    assert parse_schedule("0 */5 * * * *").next_after(T0 + timedelta(seconds=1)) == T0 + timedelta(minutes=5)


def test_five_field_cron_and_timespan_schedules() -> None:
    """A five-field expression is classic cron (minute first); 'hh:mm:ss' is a fixed interval."""
    assert parse_schedule("*/10 * * * *").next_after(T0) == T0 + timedelta(minutes=10)
    interval = parse_schedule("00:00:30")
    assert isinstance(interval, IntervalSchedule)
    assert interval.next_after(T0) == T0 + timedelta(seconds=30)


def test_invalid_schedules_are_rejected() -> None:
    for bad in ("every minute", "* * *", "61 * * * * *", "00:00:00"):
        with pytest.raises(ConfigError):
            parse_schedule(bad)


def test_monitor_default_depends_on_the_interval() -> None:
    """The host monitors schedules of a minute or more by default: the hint tells which those are."""
    assert CronSchedule("*/5 * * * * *").interval_hint == timedelta(seconds=5)
    assert CronSchedule("0 0 * * * *").interval_hint == timedelta(hours=1)


def test_message_bodies_decode_per_message_encoding() -> None:
    """base64 text is decoded; 'none' passes the text through; invalid base64 is a decode error."""
    assert decode_body(base64.b64encode(b'{"a": 1}').decode(), "base64") == b'{"a": 1}'
    assert decode_body("plain text", "none") == b"plain text"
    with pytest.raises(MessageDecodeError):
        decode_body("not base64!", "base64")


def test_index_reads_triggers_and_skips_what_it_cannot_bind() -> None:
    """HTTP/queue/timer functions are indexed with their binding settings; a function with an output
    binding the harness does not provide is left out (reported as in error) instead of failing at call."""
    app = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS)

    @app.route(route="r/{id}", methods=["GET"], auth_level=func.AuthLevel.ADMIN)
    def web(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
        return func.HttpResponse()

    @app.function_name("renamed")
    @app.queue_trigger(arg_name="msg", queue_name="%Q%", connection="Conn")
    async def queue(msg: func.QueueMessage) -> None:
        return None

    @app.timer_trigger(schedule="0 * * * * *", arg_name="t", run_on_startup=True, use_monitor=False)
    def timer(t: func.TimerRequest) -> None:
        return None

    @app.queue_trigger(arg_name="msg", queue_name="in", connection="AzureWebJobsStorage")
    @app.queue_output(arg_name="out", queue_name="out", connection="AzureWebJobsStorage")
    def forward(msg: func.QueueMessage, out: func.Out[str]) -> None:
        return None

    errors: dict[str, str] = {}
    found = {f.name: f for f in index(app, errors)}
    assert set(found) == {"web", "renamed", "timer"}
    assert list(errors) == ["forward"]
    assert "queue (out)" in errors["forward"]
    assert (found["web"].route, found["web"].methods, found["web"].auth_level) == ("r/{id}", ("GET",), "admin")
    assert found["web"].wants_context
    assert not found["web"].is_async
    renamed = found["renamed"]
    assert (renamed.queue_name, renamed.connection, renamed.arg_name) == ("%Q%", "Conn", "msg")
    assert found["renamed"].is_async
    assert (found["timer"].schedule, found["timer"].run_on_startup, found["timer"].use_monitor) == (
        "0 * * * * *",
        True,
        False,
    )
    assert index(app)  # a second index of the same app object does not call get_functions() again
