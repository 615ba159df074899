"""The webhook's logic: handshake, per-item clientState check, routing, packing, persist-or-fail."""

from __future__ import annotations

import asyncio
import base64
import hmac
import json
import logging
import math
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from shared.errors import InvalidInputError, PayloadTooLargeError, TransientError
from shared.events.group_commit import GroupCommit, _Waiter, pack_waiters
from shared.events.notifications import parse_envelope
from shared.events.webhook import NotificationWebhook, WebhookConfig, validation_token
from tests.unit.events import samples
from tests.unit.events.fakes import FakeQueues, FakeRegistry
from tests.unit.ordering import until

CONFIG = WebhookConfig()
NOTIFY, LIFECYCLE = CONFIG.notifications_queue, CONFIG.lifecycle_queue
RECEIVED = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)
ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(name="queues")
def _queues() -> FakeQueues:
    return FakeQueues()


@pytest.fixture(name="webhook")
def _webhook(queues: FakeQueues) -> NotificationWebhook:
    """A webhook that knows one subscription and its secret."""
    return NotificationWebhook(FakeRegistry({samples.SUBSCRIPTION: samples.SECRET}), queues)  # type: ignore[arg-type]


def queued_items(queues: FakeQueues, name: str) -> list[Any]:
    return [item for text in queues.sent[name] for item in parse_envelope(text).items]


def test_validation_token_is_echoed_when_short_and_printable() -> None:
    """Graph's decoded token comes back unchanged."""
    token = "Validation: Testing client application reachability for subscription Request-Id: 1f2e"
    assert validation_token(token) == token


@pytest.mark.parametrize("token", ["", "x" * 1025, "a\r\nSet-Cookie: x=1", "\x00"])
def test_validation_token_that_is_empty_long_or_has_control_characters_is_400(token: str) -> None:
    """No unbounded or header-splitting echo: InvalidInputError (400)."""
    with pytest.raises(InvalidInputError):
        validation_token(token)


async def test_valid_items_are_queued_without_their_secret(webhook: NotificationWebhook, queues: FakeQueues) -> None:
    """Accepted change items land in graph-notifications, in order, with clientState stripped."""
    result = await webhook.accept(samples.body(samples.user_change(), samples.message_change()))
    assert (result.accepted, result.lifecycle, result.messages, result.dropped) == (2, 0, 1, {})
    items = queued_items(queues, NOTIFY)
    assert [i["resource"] for i in items] == [samples.user_change()["resource"], samples.message_change()["resource"]]
    assert samples.SECRET not in queues.sent[NOTIFY][0]


async def test_wrong_missing_or_unknown_client_state_drops_only_that_item(
    webhook: NotificationWebhook, queues: FakeQueues
) -> None:
    """Mismatch, missing secret and unknown subscription are counted per reason; good neighbours proceed."""
    stranger = {**samples.user_change(), "subscriptionId": "00000000-0000-0000-0000-000000000000"}
    result = await webhook.accept(
        samples.body(
            samples.user_change(secret="wrong"), samples.user_change(secret=None), stranger, samples.user_change()
        )
    )
    assert result.accepted == 1
    assert result.dropped == {"client_state_mismatch": 2, "unknown_subscription": 1}
    assert len(queued_items(queues, NOTIFY)) == 1


async def test_the_answer_does_not_tell_whether_a_subscription_exists(webhook: NotificationWebhook) -> None:
    """An outsider posting a guessed clientState for a real id and for a made-up id gets the same 202 body:
    our answers must not be an oracle for which subscription ids exist."""
    stranger = {**samples.user_change(secret="guess"), "subscriptionId": "00000000-0000-0000-0000-000000000000"}
    real = (await webhook.accept(samples.body(samples.user_change(secret="guess")))).to_dict()
    made_up = (await webhook.accept(samples.body(stranger))).to_dict()
    assert real == made_up == {"accepted": 0, "lifecycle": 0, "messages": 0, "dropped": {"refused": 1}}


async def test_a_declared_body_over_the_limit_is_refused_before_reading(webhook: NotificationWebhook) -> None:
    """413 by Content-Length alone (the body is never parsed); sizes within the limit and odd headers pass."""
    limit = webhook.config.limits.max_body_bytes
    with pytest.raises(PayloadTooLargeError):
        webhook.refuse_oversized(str(limit + 1))
    for fine in (None, "", str(limit), " 12 ", "-5", "1e9", "١٢"):
        webhook.refuse_oversized(fine)


async def test_malformed_items_are_dropped_and_counted(webhook: NotificationWebhook, queues: FakeQueues) -> None:
    """Items that are not objects or have wrong types are dropped as invalid; the rest are kept."""
    body = json.dumps({"value": [1, "x", {**samples.user_change(), "changeType": []}, samples.user_change()]})
    result = await webhook.accept(body.encode())
    assert (result.accepted, result.dropped) == (1, {"invalid": 3})


async def test_lifecycle_items_go_to_the_lifecycle_queue_from_either_endpoint(
    webhook: NotificationWebhook, queues: FakeQueues
) -> None:
    """A POST mixing change and lifecycle items splits them between the two queues."""
    result = await webhook.accept(samples.body(samples.user_change(), samples.lifecycle("missed")))
    assert (result.accepted, result.lifecycle, result.messages) == (2, 1, 2)
    assert [i["lifecycleEvent"] for i in queued_items(queues, LIFECYCLE)] == ["missed"]
    assert len(queued_items(queues, NOTIFY)) == 1


async def test_client_state_is_compared_in_constant_time(
    webhook: NotificationWebhook, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every item's clientState goes through hmac.compare_digest."""
    calls: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    await webhook.accept(samples.body(samples.user_change(), samples.user_change(secret="wrong")))
    assert len(calls) == 2


async def test_refusals_are_logged_without_the_secret(
    webhook: NotificationWebhook, caplog: pytest.LogCaptureFixture
) -> None:
    """The log names the subscription and the reason, never the expected or the received secret."""
    caplog.set_level(logging.INFO, logger="graphapp")
    await webhook.accept(samples.body(samples.user_change(secret="attacker-guess")))
    assert samples.SUBSCRIPTION in caplog.text
    assert samples.SECRET not in caplog.text
    assert "attacker-guess" not in caplog.text


async def test_invalid_body_enqueues_nothing(webhook: NotificationWebhook, queues: FakeQueues) -> None:
    """A body-level problem is a 400 with no side effects."""
    with pytest.raises(InvalidInputError):
        await webhook.accept(b'{"value": 3}')
    assert not queues.sent


async def test_failed_send_raises_transient_error_and_claims_nothing() -> None:
    """If any queue send fails the whole POST is refused with TransientError (→ 503, Graph redelivers)."""
    queues = FakeQueues(failing={LIFECYCLE})
    webhook = NotificationWebhook(FakeRegistry({samples.SUBSCRIPTION: samples.SECRET}), queues)  # type: ignore[arg-type]
    with pytest.raises(TransientError):
        await webhook.accept(samples.body(samples.user_change(), samples.lifecycle()))


async def test_a_full_post_of_1000_items_is_packed_into_few_messages(
    webhook: NotificationWebhook, queues: FakeQueues
) -> None:
    """1,000 message items (~600 bytes each) travel in about size/48 KiB messages, each ≤ 64 KiB in base64."""
    items = [samples.message_change(message=f"m{i:04}") for i in range(1000)]
    result = await webhook.accept(samples.body(*items))
    texts = queues.sent[NOTIFY]
    assert result.accepted == 1000
    assert result.messages == len(texts)
    total = sum(len(t.encode()) for t in texts)
    assert len(texts) <= math.ceil(total / CONFIG.max_message_text_bytes) + 1
    assert all(len(base64.b64encode(t.encode())) <= 64 * 1024 for t in texts)
    assert [i["resourceData"]["id"] for i in queued_items(queues, NOTIFY)] == [f"m{i:04}" for i in range(1000)]


@pytest.mark.parametrize("count", [1, 7, 100, 333])
async def test_packing_fills_messages_with_whole_items(count: int) -> None:
    """N equal items → ceil(N / items-per-message) messages; every item intact and in order."""
    items = [json.dumps({"n": f"{i:04}", "pad": "é" * 300}, ensure_ascii=False) for i in range(count)]
    limit = 10_000
    messages = [text for text, _ in pack_waiters([_Waiter(RECEIVED, items)], limit)]
    per_message = len(parse_envelope(messages[0]).items)
    assert len(messages) == math.ceil(count / per_message)
    assert all(len(m.encode()) <= limit for m in messages)
    assert [int(i["n"]) for m in messages for i in parse_envelope(m).items] == list(range(count))


async def test_concurrent_posts_share_queue_messages() -> None:
    """POSTs arriving together (or while a send is in flight) are packed together: 20 concurrent POSTs of
    10 items travel in at most 2 messages instead of 20, and each POST is acknowledged. Here the first POST's
    send is in flight while the other 19 arrive."""
    sent: list[str] = []
    in_flight, release = asyncio.Event(), asyncio.Event()
    arrived: list[int] = []

    async def send(text: str) -> None:
        in_flight.set()
        await release.wait()
        sent.append(text)

    async def post(items: list[str]) -> int:
        arrived.append(1)  # persist queues the items before it first suspends
        return await commit.persist(RECEIVED, items)

    commit = GroupCommit(send, 48 * 1024)
    posts = [[json.dumps({"post": p, "n": n}) for n in range(10)] for p in range(20)]
    first = asyncio.create_task(post(posts[0]))
    await until(in_flight.is_set, "the first POST's send in flight")
    others = [asyncio.create_task(post(items)) for items in posts[1:]]
    await until(lambda: len(arrived) == 20, "all 20 POSTs queued behind the send in flight")
    release.set()
    counts = await asyncio.gather(first, *others)
    assert counts == [1] * 20
    assert len(sent) <= 2
    delivered = [(i["post"], i["n"]) for text in sent for i in parse_envelope(text).items]
    assert sorted(delivered) == [(p, n) for p in range(20) for n in range(10)]


async def test_a_failed_send_fails_exactly_the_posts_it_carried() -> None:
    """A POST whose items were in a failed message gets the error; POSTs only in other messages succeed."""
    carried_by_failed: set[int] = set()

    async def send(text: str) -> None:
        await asyncio.sleep(0)  # a round trip: the other messages' sends run meanwhile
        posts = {item["post"] for item in parse_envelope(text).items}
        if 2 in posts:
            carried_by_failed.update(posts)
            raise OSError("storage down")

    commit = GroupCommit(send, 400)  # small messages: the posts end up in different messages
    posts = [[json.dumps({"post": p, "pad": "x" * 150})] for p in range(4)]
    results = await asyncio.gather(*(commit.persist(RECEIVED, items) for items in posts), return_exceptions=True)
    failed = {p for p, r in enumerate(results) if isinstance(r, OSError)}
    assert failed == carried_by_failed
    assert 2 in failed
    assert len(failed) < 4


async def test_flushes_are_spaced_by_the_interval_and_a_quiet_post_goes_at_once() -> None:
    """A POST after a quiet spell is sent at once; POSTs arriving within ``min_interval`` of that flush wait
    for the next one (never longer than the interval) and travel together in one message."""
    loop = asyncio.get_running_loop()
    sent_at: list[float] = []
    sent: list[str] = []

    async def send(text: str) -> None:
        sent_at.append(loop.time())
        sent.append(text)

    interval = 0.2
    commit = GroupCommit(send, 48 * 1024, min_interval=interval)
    started = loop.time()
    assert await commit.persist(RECEIVED, [json.dumps({"n": "first"})]) == 1
    assert sent_at[0] - started < interval / 2  # no company and no earlier flush: no wait

    async def post(n: int) -> float:
        await asyncio.sleep(0.01 * n)  # spread over 50 ms, all inside the interval
        await commit.persist(RECEIVED, [json.dumps({"n": f"later-{n}"})])
        return loop.time()

    acked_at = await asyncio.gather(*(post(n) for n in range(6)))
    assert len(sent) == 2  # the six later POSTs shared one message
    assert sorted(i["n"] for i in parse_envelope(sent[1]).items) == sorted(f"later-{n}" for n in range(6))
    assert sent_at[1] - sent_at[0] >= interval * 0.95
    assert max(acked_at) - sent_at[0] < interval * 2  # each waited at most about the interval

    await asyncio.sleep(interval * 1.5)  # quiet again
    before = loop.time()
    await commit.persist(RECEIVED, [json.dumps({"n": "after a pause"})])
    assert sent_at[2] - before < interval / 2


def test_the_webhook_path_imports_no_graph_sdk() -> None:
    """Importing the webhook and processors loads neither msgraph nor kiota (the ack must not pay for them)."""
    code = (
        "import sys, shared.events.webhook, shared.events.processor, shared.events.lifecycle;"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('msgraph', 'msgraph_core', 'kiota_http')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "[]"
