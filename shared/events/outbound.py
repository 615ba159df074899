"""The ``graph-events`` wire format: what downstream consumers read, and the one decoder for it.

Two shapes, chosen by ``FORWARD_EVENTS_PER_MESSAGE``:

- ``1``: one event per queue message, the event's JSON object itself (``{"id": ..., "type": ...}``);
- ``> 1`` (the default, 100): a versioned envelope ``{"v": 2, "events": [event, ...]}`` with up to that
  many events, as many as fit one queue message (64 KiB of base64, so 48 KiB of text). An event too large
  for a message even alone travels without its ``data`` (as in the single shape).

A consumer that must handle both (a rolling change of the setting) uses ``decode_events``: the envelope
is recognised by its ``v`` key, which no event object has. Consumers dedupe on each event's ``id``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

ENVELOPE_VERSION = 2
_OPEN = '{"v":2,"events":['
_CLOSE = "]}"


def pack(events: Sequence[str], max_events: int, max_text_bytes: int) -> list[list[int]]:
    """Indexes of ``events`` (JSON texts) per message: in order, each message at most ``max_events``
    events and ``max_text_bytes`` of envelope text. ``max_events == 1``: one event per message."""
    messages: list[list[int]] = []
    size = 0
    overhead = len(_OPEN) + len(_CLOSE)
    for index, text in enumerate(events):
        item = len(text.encode("utf-8")) + 1  # the separating comma
        full = messages and (len(messages[-1]) >= max_events or size + item > max_text_bytes)
        if not messages or full:
            messages.append([])
            size = overhead
        messages[-1].append(index)
        size += item
    return messages


def encode(events: Sequence[str], packed: bool) -> str:
    """The message text for event JSON texts: the envelope when ``packed``, else the one event."""
    if not packed:
        (only,) = events
        return only
    return _OPEN + ",".join(events) + _CLOSE


def fits_alone(text: str, max_text_bytes: int, packed: bool) -> bool:
    """Whether one event's JSON fits a message by itself (in the envelope when ``packed``)."""
    overhead = len(_OPEN) + len(_CLOSE) if packed else 0
    return len(text.encode("utf-8")) + overhead <= max_text_bytes


def decode_events(text: str) -> list[dict[str, Any]]:
    """The events of one ``graph-events`` message, whichever shape it has; ``ValueError`` if neither."""
    document = json.loads(text)
    if isinstance(document, dict) and "v" in document:
        events = document.get("events")
        if document["v"] != ENVELOPE_VERSION or not isinstance(events, list):
            raise ValueError(f"unknown graph-events envelope version {document['v']!r}")
        if not all(isinstance(e, dict) for e in events):
            raise ValueError("graph-events envelope holds a non-object event")
        return events
    if isinstance(document, dict) and "id" in document and "type" in document:
        return [document]
    raise ValueError("not a graph-events message")
