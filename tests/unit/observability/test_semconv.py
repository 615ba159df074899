"""Span names and attributes from the semantic conventions: URLs without credentials, server from the URL."""

from __future__ import annotations

import pytest

from shared.metrics import semconv


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (
            "https://graph.microsoft.com/v1.0/users/a%40b.com/messages?%24top=2&%24skiptoken=eyJhbGc%3D#x",
            "https://graph.microsoft.com/v1.0/users/a%40b.com/messages?$top=2&$skiptoken=REDACTED",
        ),
        (
            "https://graph.microsoft.com/v1.0/users/delta?$deltatoken=abc",
            "https://graph.microsoft.com/v1.0/users/delta?$deltatoken=REDACTED",
        ),
        (
            "https://me:pw@host.example:8443/p?sig=s&se=2030&code=c",
            "https://host.example:8443/p?sig=REDACTED&se=2030&code=REDACTED",
        ),
        ("http://[::1]:8070/v1.0/users", "http://[::1]:8070/v1.0/users"),
    ],
)
def test_safe_url_keeps_the_request_but_no_credential(url: str, expected: str) -> None:
    assert semconv.safe_url(url) == expected


def test_http_client_span_names_the_method_and_the_server() -> None:
    name, attributes = semconv.http_client("GET", "https://graph.microsoft.com/v1.0/users/x")
    assert name == "GET"
    assert attributes == {
        "http.request.method": "GET",
        "url.full": "https://graph.microsoft.com/v1.0/users/x",
        "server.address": "graph.microsoft.com",
        "server.port": 443,
    }


def test_only_message_operations_of_a_queue_are_messaging_spans() -> None:
    url = "https://acct.queue.core.windows.net/graph-events"
    assert semconv.queue_call("create_queue", "graph-events", url) is None
    name, kind, attributes = semconv.queue_call("send_message", "graph-events", url) or ("", "", {})
    assert (name, kind) == ("send graph-events", "client")
    assert attributes["messaging.operation.type"] == "send"
    name, kind, attributes = semconv.queue_process("graph-notifications", "m-1", 2)
    assert (name, kind, attributes["messaging.operation.type"]) == (
        "process graph-notifications",
        "consumer",
        "process",
    )
