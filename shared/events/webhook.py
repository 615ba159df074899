"""The webhook's logic: validate a Graph POST, check each item's clientState, persist, then ack.

Graph wants a 2xx within ~3 s and retries a 5xx for hours, so the rule is *persist first*: every
accepted item is in a Storage queue before ``accept`` returns, and if any send fails ``accept`` raises
``StorageUnavailableError`` (→ 503) and Graph redelivers the whole POST; the copies that did land are absorbed by
the processor's dedupe. Items are packed into as few queue messages as fit (64 KiB after base64), sent
concurrently: one send per ~48 KiB instead of one per item. Change items go to ``graph-notifications``,
lifecycle items to ``graph-lifecycle``, whichever endpoint they arrived on.

This path imports no msgraph and calls no Graph: a hot webhook costs a cached dict lookup per
subscription and one queue send per message.

With ``verify_post`` (``RICH_NOTIFICATIONS``) a POST whose items carry resource data must prove it comes
from Graph: its ``validationTokens`` are checked once per POST, before anything is persisted. A POST that
fails is answered 202 like any other (Graph's advice: an outsider learns nothing), counted under the
failure's reason, logged, and nothing of it is kept; if the issuer's keys cannot be fetched the answer is
503 (nothing judged, Graph redelivers). Items keep their ``encryptedContent`` (still encrypted) for the
processor, which decrypts them; without ``verify_post`` it is dropped, as before.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import re
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Literal, Protocol

from shared import metrics
from shared.errors import InvalidInputError, PayloadTooLargeError, StorageUnavailableError
from shared.events.group_commit import GroupCommit
from shared.events.notifications import (
    DEFAULT_LIMITS,
    ChangeNotification,
    LifecycleNotification,
    Notification,
    NotificationLimits,
    encode_envelope,
    parse_item,
    parse_post,
)
from shared.names import LIFECYCLE_QUEUE, NOTIFICATIONS_QUEUE
from shared.richdata.errors import RichDataError
from shared.secret import Secret
from shared.storage import QUEUE_MESSAGE_MAX_BYTES, Queues, storage_call
from shared.telemetry import get_logger

log = get_logger("events.webhook")

DropReason = Literal["invalid", "unknown_subscription", "client_state_mismatch"]
# What the sender is told: an unknown subscription and a wrong clientState are one reason, so the
# answer never tells an outsider which subscription ids exist (logs and metrics keep them apart).
_PUBLIC_REASON = {"unknown_subscription": "refused", "client_state_mismatch": "refused"}
UNVERIFIED = "unverified"  # a refused rich POST's reasons are "unverified:<code>" (metrics, logs)
PostVerifier = Callable[[list[Any], Any], Awaitable[object]]  # (raw items, validationTokens); raises if refused
_TOKEN_FORBIDDEN = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


@dataclass(frozen=True)
class WebhookConfig:
    """Tunables of the webhook path; defaults follow Graph's and Storage's documented limits."""

    notifications_queue: str = NOTIFICATIONS_QUEUE
    lifecycle_queue: str = LIFECYCLE_QUEUE
    max_message_bytes: int = QUEUE_MESSAGE_MAX_BYTES  # measured after base64 (host.json encoding)
    max_validation_token_chars: int = 1024
    persist_timeout_seconds: float = 2.0  # leaves room inside Graph's ~3 s acknowledgement budget
    flush_interval_seconds: float = 0.1  # least time between two change-queue flushes (group_commit.py)
    limits: NotificationLimits = field(default=DEFAULT_LIMITS)

    @property
    def max_message_text_bytes(self) -> int:
        """UTF-8 bytes that encode to at most ``max_message_bytes`` of base64 (4 chars per 3 bytes)."""
        return self.max_message_bytes // 4 * 3


@dataclass(frozen=True)
class AcceptResult:
    """What one POST came to: for the 202 body and the log line."""

    accepted: int
    lifecycle: int
    messages: int
    dropped: Mapping[str, int]

    def to_dict(self) -> dict[str, Any]:
        """The 202 body: counts only, with refusals merged into one reason."""
        public: Counter[str] = Counter()
        for reason, count in self.dropped.items():
            public["refused" if reason.startswith(UNVERIFIED) else _PUBLIC_REASON.get(reason, reason)] += count
        return {"accepted": self.accepted, "lifecycle": self.lifecycle, "messages": self.messages, "dropped": public}


class ClientStateSource(Protocol):
    """Where the webhook learns each subscription's secret (``SubscriptionRegistry`` in the app)."""

    async def client_states(self, subscription_ids: set[str]) -> Mapping[str, Secret | None]: ...


def validation_token(token: str, config: WebhookConfig | None = None) -> str:
    """The handshake token to echo back as ``text/plain`` (the trigger passes the decoded query value).

    Bounded and free of control characters, so the echo can never become a header-splitting or
    oversized response; it is echoed as plain text, never interpreted.
    """
    limit = (config or WebhookConfig()).max_validation_token_chars
    if not token or len(token) > limit or _TOKEN_FORBIDDEN.search(token):
        raise InvalidInputError(f"validationToken must be 1 to {limit} printable characters")
    return token


def client_state_matches(received: str | None, expected: Secret | None) -> bool:
    """Constant-time comparison, so response timing reveals nothing about the secret."""
    if received is None or expected is None or not expected.reveal():
        return False
    return hmac.compare_digest(received.encode("utf-8", "surrogatepass"), expected.reveal().encode("utf-8"))


class NotificationWebhook:
    """``accept(body)`` for both webhook endpoints; one instance per process."""

    def __init__(
        self,
        registry: ClientStateSource,
        queues: Queues,
        config: WebhookConfig | None = None,
        *,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        on_ack: Callable[[float], None] | None = None,
        verify_post: PostVerifier | None = None,
    ) -> None:
        self._registry = registry
        self._verify_post = verify_post  # rich notifications: the POST's validation tokens (shared/richdata)
        self._on_ack = on_ack  # told every accept's duration (the background gate steers by it)
        self._queues = queues
        self.config = config or WebhookConfig()
        self._now = now
        longest_time = datetime(2000, 1, 1, microsecond=1, tzinfo=UTC)  # isoformat drops zero microseconds
        envelope = len(encode_envelope(longest_time, []).encode("utf-8"))
        self._max_item_bytes = self.config.max_message_text_bytes - envelope
        limit = self.config.max_message_text_bytes
        timeout = self.config.persist_timeout_seconds
        interval = self.config.flush_interval_seconds
        self._changes = GroupCommit(self._sender(self.config.notifications_queue), limit, timeout, interval)
        self._lifecycle = GroupCommit(self._sender(self.config.lifecycle_queue), limit, timeout)

    def refuse_oversized(self, content_length: str | None) -> None:
        """``PayloadTooLargeError`` (413) when the declared ``Content-Length`` is over our limit, checked
        before the body is read; a body sent without the header is still bounded while parsing."""
        limit = self.config.limits.max_body_bytes
        declared = (content_length or "").strip()
        if declared.isascii() and declared.isdigit() and int(declared) > limit:
            raise PayloadTooLargeError(f"the body is larger than {limit} bytes")

    async def accept(self, body: bytes) -> AcceptResult:
        """Validate, authenticate per item, persist. ``InvalidInputError`` for a bad body (nothing kept),
        ``StorageUnavailableError`` if storage failed (nothing may be claimed as accepted)."""
        started = time.perf_counter()
        try:
            result = await self._accept(body)
        finally:
            elapsed = time.perf_counter() - started
            metrics.record_webhook_ack(elapsed)
            if self._on_ack is not None:
                self._on_ack(elapsed)
        metrics.record_notifications("accepted", result.accepted)
        for reason, count in result.dropped.items():
            metrics.record_notifications("dropped", count, reason)
        return result

    async def _accept(self, body: bytes) -> AcceptResult:
        received_at = self._now()
        raw_items, tokens = parse_post(body, self.config.limits)
        if self._verify_post is not None:
            try:
                await self._verify_post(raw_items, tokens)
            except RichDataError as error:
                log.warning("refused a POST of %d notifications: %s: %s", len(raw_items), error.code, error.message)
                return AcceptResult(0, 0, 0, {f"{UNVERIFIED}:{error.code}": len(raw_items)})
        dropped: Counter[str] = Counter()
        parsed: list[Notification] = []
        for raw in raw_items:
            try:
                parsed.append(parse_item(raw, self.config.limits))
            except InvalidInputError as error:
                dropped["invalid"] += 1
                log.info("dropped an invalid notification: %s", error.message)
        secrets = await self._registry.client_states({n.subscription_id for n in parsed})
        changes: list[str] = []
        lifecycle: list[str] = []
        refused: set[str] = set()
        for item in parsed:
            expected = secrets.get(item.subscription_id)
            if expected is None or not client_state_matches(item.client_state, expected):
                dropped["unknown_subscription" if expected is None else "client_state_mismatch"] += 1
                refused.add(item.subscription_id)
                continue
            if self._verify_post is None and isinstance(item, ChangeNotification) and item.encrypted_content:
                item = replace(item, encrypted_content=None)  # rich notifications are off: not carried
            text = json.dumps(item.to_wire(), ensure_ascii=False, separators=(",", ":"))
            if len(text.encode("utf-8")) > self._max_item_bytes:
                dropped["invalid"] += 1
                log.info("dropped a notification of subscription %s: too large", item.subscription_id)
                continue
            (lifecycle if isinstance(item, LifecycleNotification) else changes).append(text)
        if refused:
            shown = ", ".join(sorted(refused)[:5])
            log.warning("refused notifications %s for subscriptions %s", dict(dropped), shown)
        messages = await self._persist(received_at, changes, lifecycle)
        return AcceptResult(len(changes) + len(lifecycle), len(lifecycle), messages, dict(dropped))

    async def _persist(self, received_at: datetime, changes: list[str], lifecycle: list[str]) -> int:
        """Both kinds of item through their queue's group commit; every send must succeed in time."""
        try:
            async with storage_call("persist notifications", self.config.persist_timeout_seconds):
                with metrics.span("queue.send"):
                    counts = await asyncio.gather(
                        self._changes.persist(received_at, changes), self._lifecycle.persist(received_at, lifecycle)
                    )
        except StorageUnavailableError as error:
            # Graph retries a 5xx for up to 4 hours; a short Retry-After is only a hint for other callers.
            raise StorageUnavailableError(
                f"could not persist the notifications: {error.message}", retry_after=5
            ) from error
        return sum(counts)

    def _sender(self, queue: str) -> Callable[[str], Awaitable[None]]:
        async def send(message: str) -> None:
            await (await self._queues.get(queue)).send_message(message)

        return send
