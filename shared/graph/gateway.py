"""The one path every Graph call takes: retry → per-mailbox slot → circuit breaker → one HTTP request.

Requests go through the SDK's request builders with a native response handler, so the SDK's auth and
middleware apply but no model classes are parsed (the first call of a process costs ~35 ms, not ~1.2 s);
GETs are sent with ``native_get``, so the model modules are not even imported.
Results are plain dicts; failures are the app's errors (``responses.py``).

Attempts per logical call are bounded by ``RetryPolicy.max_attempts`` (default 3; the SDK's RetryHandler
is off, see ``client.py``); an open breaker stops them at once. A queue-triggered caller that still fails
is redelivered by the host up to ``maxDequeueCount`` (5) times, so one notification can cost at most
3 x 5 = 15 Graph requests in the worst case, and far fewer once the breaker opens.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any
from urllib.parse import quote, urlsplit

import httpx
from kiota_abstractions.base_request_configuration import RequestConfiguration
from kiota_abstractions.native_response_handler import NativeResponseHandler
from kiota_http.middleware.options import ResponseHandlerOption
from msgraph import GraphServiceClient

from shared import metrics
from shared.errors import CircuitOpenError, TransientError, UnavailableError
from shared.graph.responses import TRANSPORT_ERRORS, json_body, transport_error
from shared.names import DIRECTORY_BREAKER, MAIL_BREAKER, SUBSCRIPTIONS_BREAKER
from shared.resilience.breaker import BreakerRegistry
from shared.resilience.limits import KeyedLimiter
from shared.resilience.retry import OnRetry, RetryPolicy, call_with_retry
from shared.telemetry import get_logger

log = get_logger("graph")

# Breaker keys per Graph workload (shared.names): an Outlook outage must not block directory reads.
DIRECTORY, MAIL, SUBSCRIPTIONS = DIRECTORY_BREAKER, MAIL_BREAKER, SUBSCRIPTIONS_BREAKER
MAX_FLEET_PAGES = 1_000  # 999 users per page: a bound far beyond any tenant, against a nextLink loop


def native_request(query: Any = None) -> RequestConfiguration[Any]:
    """Request options that return the raw httpx response (no model parsing; errors as status codes)."""
    return RequestConfiguration(options=[ResponseHandlerOption(NativeResponseHandler())], query_parameters=query)


def native_get(builder: Any, query: Any = None) -> Callable[[], Awaitable[httpx.Response]]:
    """The GET a request builder describes, sent through the SDK's adapter as the raw response.

    ``builder.get`` imports the typed model it would parse into before sending (``User`` pulls in a few
    dozen model modules, ~60 ms on a cold call), even though the native handler never parses it; the
    request information it sends is the same. Built per attempt, as ``builder.get`` would.
    """

    async def send() -> httpx.Response:
        info = builder.to_get_request_information(native_request(query))
        response: httpx.Response = await builder.request_adapter.send_primitive_async(info, "bytes", None)
        return response

    return send


def next_page_query(next_link: object) -> str | None:
    """The query of a Graph nextLink, kept as Graph wrote it (``$skip`` or an opaque ``$skiptoken``).

    Only the query is kept: the next request is built from our base URL and the mailbox we asked for,
    so neither a nextLink nor a cursor made from it can point a call at another host or mailbox.
    """
    if not isinstance(next_link, str):
        return None
    query = urlsplit(next_link).query
    if not query:
        log.warning("Graph nextLink without a query; paging stops here")
        return None
    return query


class GraphGateway:
    """Graph reads and writes as dicts, with retries, breakers and mailbox concurrency applied."""

    def __init__(
        self,
        client: GraphServiceClient,
        breakers: BreakerRegistry,
        retry: RetryPolicy,
        mailbox_limiter: KeyedLimiter,
        *,
        on_retry: OnRetry | None = None,
        on_close: Callable[[], Awaitable[None]] | None = None,
        attempt_timeout: float = 30.0,
    ) -> None:
        self.client = client
        self._breakers = breakers
        self._retry = retry
        self._mailboxes = mailbox_limiter
        self._on_retry = on_retry
        self._on_close = on_close
        self._attempt_timeout = attempt_timeout  # token acquisition + request: httpx only bounds the request

    async def call(
        self, workload: str, send: Callable[[], Awaitable[httpx.Response]], *, mailbox: str | None = None
    ) -> dict[str, Any]:
        """Run one logical Graph call: each attempt takes the mailbox's slot, then passes the breaker.

        The slot comes first so that waiting for it (a local limit) is never a breaker outcome and is
        not spent holding the breaker's half-open probe lease.
        """
        breaker = self._breakers.get(workload)

        async def once() -> dict[str, Any]:
            started = time.perf_counter()
            try:
                async with asyncio.timeout(self._attempt_timeout):
                    response = await send()
            except TRANSPORT_ERRORS as error:
                metrics.record_graph_attempt(workload, "transport_error", time.perf_counter() - started)
                raise transport_error(error) from error
            outcome = metrics.graph_outcome(response.status_code)
            metrics.record_graph_attempt(workload, outcome, time.perf_counter() - started)
            return json_body(response)

        async def admitted() -> dict[str, Any]:
            async with self._slot(mailbox):
                try:
                    return await breaker.call(once)
                except CircuitOpenError:
                    metrics.record_graph_attempt(workload, "breaker_rejected", None)
                    raise

        def on_retry(error: TransientError, attempt: int, wait: float) -> None:
            status = error.status or 0
            reason = "429" if status == 429 else "5xx" if status >= 500 else "transport_error"
            metrics.record_graph_retry(workload, reason)
            if self._on_retry is not None:
                self._on_retry(error, attempt, wait)

        with metrics.span("graph.call", {"graph.workload": workload}):
            return await call_with_retry(admitted, self._retry, on_retry=on_retry)

    async def aclose(self) -> None:
        """Close the HTTP connections and the credential (process shutdown, tests)."""
        if self._on_close is not None:
            await self._on_close()

    @contextlib.asynccontextmanager
    async def _slot(self, mailbox: str | None) -> AsyncIterator[None]:
        if mailbox is None:
            yield
            return
        async with self._mailboxes.slot(mailbox.lower()):
            yield

    # --- directory ------------------------------------------------------------------------------

    async def get_user(self, user_id: str, select: list[str] | None = None) -> dict[str, Any]:
        """``GET /users/{id | userPrincipalName}``."""
        builder = self.client.users.by_user_id(user_id)
        query = builder.UserItemRequestBuilderGetQueryParameters(select=select) if select else None
        return await self.call(DIRECTORY, native_get(builder, query))

    # --- mail -----------------------------------------------------------------------------------

    async def list_messages(
        self, user_id: str, *, top: int, select: list[str], skip: int = 0, continuation: str | None = None
    ) -> tuple[list[dict[str, Any]], str | None]:
        """One page of ``GET /users/{id}/messages`` (newest first) and the continuation of the next page.

        ``continuation`` is the query of a previous page's nextLink (see ``next_page_query``); it is sent
        to ``{base}/users/{user_id}/messages``, so its host and path are always ours. ``skip`` serves
        pages asked for by a ``$skip`` number (old cursors).
        """
        builder = self.client.users.by_user_id(user_id).messages
        if continuation is not None:
            if "#" in continuation or any(char.isspace() for char in continuation):
                raise ValueError("a continuation is a percent-encoded query")
            base = str(self.client.request_adapter.base_url).rstrip("/")
            builder = builder.with_url(f"{base}/users/{quote(user_id, safe='')}/messages?{continuation}")
            query = None
        else:
            query = builder.MessagesRequestBuilderGetQueryParameters(
                top=top, select=select, orderby=["receivedDateTime desc"], skip=skip or None
            )
        body = await self.call(MAIL, native_get(builder, query), mailbox=user_id)
        items = body.get("value")
        if not isinstance(items, list):
            raise UnavailableError("Graph answered a message page without a value array")
        return [item for item in items if isinstance(item, dict)], next_page_query(body.get("@odata.nextLink"))

    async def list_fleet_users(self, group_id: str | None, *, transitive: bool = False) -> list[dict[str, Any]]:
        """Every user of a group (its direct or transitive members) or, with no group, of the tenant, as
        ``{id, accountEnabled}``, 999 per page. NextLinks are followed on our base URL, their query only."""
        select = ["id", "accountEnabled"]
        builder: Any
        if group_id is None:
            builder = self.client.users
            query: Any = builder.UsersRequestBuilderGetQueryParameters(select=select, top=999)
            path = "/users"
        else:
            group = self.client.groups.by_group_id(group_id)
            builder = (group.transitive_members if transitive else group.members).graph_user
            query = builder.GraphUserRequestBuilderGetQueryParameters(select=select, top=999)
            collection = "transitiveMembers" if transitive else "members"
            path = f"/groups/{quote(group_id, safe='')}/{collection}/graph.user"  # the cast as the SDK writes it
        base = str(self.client.request_adapter.base_url).rstrip("/")
        users: list[dict[str, Any]] = []
        for _ in range(MAX_FLEET_PAGES):
            body = await self.call(DIRECTORY, native_get(builder, query))
            items = body.get("value")
            if not isinstance(items, list):
                raise UnavailableError("Graph answered a member page without a value array")
            users += [item for item in items if isinstance(item, dict) and isinstance(item.get("id"), str)]
            following = next_page_query(body.get("@odata.nextLink"))
            if following is None:
                return users
            builder, query = builder.with_url(f"{base}{path}?{following}"), None
        raise UnavailableError(f"more than {MAX_FLEET_PAGES} pages of members: refusing to follow further")

    async def get_message(self, user_id: str, message_id: str, select: list[str]) -> dict[str, Any]:
        """``GET /users/{id}/messages/{message-id}``."""
        builder = self.client.users.by_user_id(user_id).messages.by_message_id(message_id)
        query = builder.MessageItemRequestBuilderGetQueryParameters(select=select)
        return await self.call(MAIL, native_get(builder, query), mailbox=user_id)
