"""``SimControl``: a small synchronous, typed client for the ``/_sim/`` control API, so
tests read as ``sim.add_fault(...)`` rather than raw HTTP."""

from __future__ import annotations

from typing import Any, Self
from urllib.parse import quote

import httpx

JsonDict = dict[str, Any]


class SimControlError(RuntimeError):
    """The control API refused a call (bad input, unknown id...)."""

    def __init__(self, status: int, body: str) -> None:
        super().__init__(f"graphsim control call failed with {status}: {body}")
        self.status = status
        self.body = body


def _seg(value: str) -> str:
    """Quote an id for a URL path segment (message ids contain '=', '-' and '_')."""
    return quote(value, safe="")


class SimControl:
    """Drives one simulator. ``root_url`` is ``http://HOST:PORT`` (no ``/v1.0``)."""

    def __init__(self, root_url: str, timeout_s: float = 60.0) -> None:
        self.root_url = root_url.rstrip("/")
        self._http = httpx.Client(base_url=self.root_url + "/_sim", timeout=timeout_s)

    def close(self) -> None:
        """Release the HTTP connection pool."""
        self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def _call(
        self, verb: str, endpoint: str, json: JsonDict | None = None, params: dict[str, Any] | None = None
    ) -> Any:
        query = {k: v for k, v in (params or {}).items() if v is not None}
        response = self._http.request(verb, endpoint, json=json, params=query)
        if response.status_code >= 400:
            raise SimControlError(response.status_code, response.text)
        return None if response.status_code == 204 or not response.content else response.json()

    # State -------------------------------------------------------------------------------
    def health(self) -> JsonDict:
        """Liveness, tenant id and current settings."""
        result: JsonDict = self._call("GET", "/health")
        return result

    def reset(self, **overrides: Any) -> None:
        """Back to the seeded state (optionally ``seed=``, ``users=``, ``messages_per_user=``,
        ``latency_ms=``): clears subscriptions, faults, logs, deliveries and the clock offset."""
        self._call("POST", "/reset", json=overrides)

    def config(self) -> JsonDict:
        """The current settings."""
        result: JsonDict = self._call("GET", "/config")
        return result

    def configure(self, **settings: float | str) -> JsonDict:
        """Change runtime settings: ``latency_ms``, ``delivery_timeout_s``, ``delivery_max_attempts``,
        ``delivery_backoff_s``, ``delivery_backoff_max_s``, ``max_items_per_post``, ``handshake_timeout_s``,
        ``message_paging`` (``"skip"`` or ``"skiptoken"``)."""
        result: JsonDict = self._call("PUT", "/config", json=dict(settings))
        return result

    def clock(self) -> JsonDict:
        """``{"now", "epoch", "offset_s"}`` of the simulator clock."""
        result: JsonDict = self._call("GET", "/clock")
        return result

    def advance_clock(self, seconds: float) -> JsonDict:
        """Move simulated time forward."""
        result: JsonDict = self._call("POST", "/clock/advance", json={"seconds": seconds})
        return result

    # Tenant ---------------------------------------------------------------------------------
    def users(self) -> list[JsonDict]:
        """Every user with every property."""
        result: list[JsonDict] = self._call("GET", "/users")["value"]
        return result

    def user(self, user_id: str) -> JsonDict:
        """One user (by id or UPN)."""
        result: JsonDict = self._call("GET", f"/users/{_seg(user_id)}")
        return result

    def create_user(self, **fields: Any) -> JsonDict:
        """Create a user; unspecified properties are generated."""
        result: JsonDict = self._call("POST", "/users", json=fields)
        return result

    def update_user(self, user_id: str, **fields: Any) -> JsonDict:
        """Change a user's properties."""
        result: JsonDict = self._call("PATCH", f"/users/{_seg(user_id)}", json=fields)
        return result

    def delete_user(self, user_id: str) -> None:
        """Delete a user and their mailbox."""
        self._call("DELETE", f"/users/{_seg(user_id)}")

    def set_mailbox(self, user_id: str, enabled: bool) -> None:
        """Licence a user's mailbox or take it away (Outlook answers ``MailboxNotEnabledForRESTAPI``)."""
        self._call("PUT", f"/users/{_seg(user_id)}/mailbox", json={"enabled": enabled})

    def groups(self) -> list[JsonDict]:
        """Every group with its direct members' ids (``members``)."""
        result: list[JsonDict] = self._call("GET", "/groups")
        return result

    def create_group(self, members: list[str] | None = None, **fields: Any) -> JsonDict:
        """A security group with ``members`` (user or group ids); ``id``/``displayName`` may be given."""
        result: JsonDict = self._call("POST", "/groups", json={**fields, "members": members or []})
        return result

    def add_member(self, group_id: str, member_id: str) -> None:
        self._call("POST", f"/groups/{_seg(group_id)}/members", json={"id": member_id})

    def remove_member(self, group_id: str, member_id: str) -> None:
        self._call("DELETE", f"/groups/{_seg(group_id)}/members/{_seg(member_id)}")

    def messages(self, user_id: str, folder: str | None = None) -> list[JsonDict]:
        """A mailbox's messages (storage order), optionally of one folder."""
        result: list[JsonDict] = self._call("GET", f"/users/{_seg(user_id)}/messages", params={"folder": folder})[
            "value"
        ]
        return result

    def create_message(self, user_id: str, count: int = 1, **fields: Any) -> list[JsonDict]:
        """Deliver ``count`` messages (fields: subject, isRead, importance, folder, from, ...)."""
        body = {"count": count, **fields}
        result: list[JsonDict] = self._call("POST", f"/users/{_seg(user_id)}/messages", json=body)["value"]
        return result

    def update_message(self, user_id: str, message_id: str, **fields: Any) -> JsonDict:
        """Change a message (``folder=`` moves it)."""
        path = f"/users/{_seg(user_id)}/messages/{_seg(message_id)}"
        result: JsonDict = self._call("PATCH", path, json=fields)
        return result

    def delete_message(self, user_id: str, message_id: str) -> None:
        """Delete a message."""
        self._call("DELETE", f"/users/{_seg(user_id)}/messages/{_seg(message_id)}")

    def invalidate_delta(self, kind: str | None = None) -> None:
        """Make delta tokens answer 410: ``"users"``, ``"mail"`` or both (None)."""
        self._call("POST", "/delta/invalidate", json={"kind": kind} if kind else {})

    # Subscriptions -------------------------------------------------------------------------
    def subscriptions(self) -> list[JsonDict]:
        """Live subscriptions in Graph's shape."""
        result: list[JsonDict] = self._call("GET", "/subscriptions")["value"]
        return result

    def lifecycle(self, subscription_id: str, event: str) -> None:
        """Send ``reauthorizationRequired``, ``subscriptionRemoved`` or ``missed``."""
        self._call("POST", f"/subscriptions/{_seg(subscription_id)}/lifecycle", json={"event": event})

    def expire_subscription(self, subscription_id: str) -> None:
        """Make a subscription expire now."""
        self._call("POST", f"/subscriptions/{_seg(subscription_id)}/expire")

    # Deliveries ---------------------------------------------------------------------------------
    def deliveries(self, kind: str | None = None, url: str | None = None, wait_idle: bool = False) -> list[JsonDict]:
        """Delivery attempts (kind: notification / lifecycle / validation)."""
        body = self._call(
            "GET", "/deliveries", params={"kind": kind, "url": url, "wait_idle": "1" if wait_idle else None}
        )
        result: list[JsonDict] = body["value"]
        return result

    def wait_deliveries_idle(self, timeout_s: float = 30.0) -> None:
        """Block until no delivery is pending or in flight (raises if ``timeout_s`` passes)."""
        self._call("POST", "/deliveries/flush", json={"timeout": timeout_s})

    def clear_deliveries(self) -> None:
        """Forget the delivery log."""
        self._call("DELETE", "/deliveries")

    # Faults ----------------------------------------------------------------------------------------
    def add_fault(
        self,
        path: str,
        status: int | None = None,
        *,
        method: str | None = None,
        retry_after: float | str | None = None,
        latency_ms: float = 0,
        action: str = "respond",
        probability: float = 1.0,
        count: int | None = None,
        error_code: str | None = None,
        after: int = 0,
        query_param: str | None = None,
    ) -> str:
        """Activate a fault rule (``path`` is a regex on the path after /v1.0); returns its id. ``after``
        matching requests pass before it fires (to fail a paged read in its middle); with ``query_param``
        only requests carrying that parameter match (``"$skiptoken"``: every page but the first)."""
        spec: JsonDict = {
            "path": path,
            "action": action,
            "probability": probability,
            "latency_ms": latency_ms,
            "after": after,
        }
        optional = {
            "status": status,
            "method": method,
            "retry_after": retry_after,
            "count": count,
            "error_code": error_code,
            "query_param": query_param,
        }
        spec.update({k: v for k, v in optional.items() if v is not None})
        rule_id: str = self._call("POST", "/faults", json=spec)["id"]
        return rule_id

    def faults(self) -> list[JsonDict]:
        """Active rules with hit counts."""
        result: list[JsonDict] = self._call("GET", "/faults")["value"]
        return result

    def remove_fault(self, rule_id: str) -> None:
        """Deactivate one rule."""
        self._call("DELETE", f"/faults/{_seg(rule_id)}")

    def clear_faults(self) -> None:
        """Deactivate every rule."""
        self._call("DELETE", "/faults")

    # Observability ---------------------------------------------------------------------------------
    def requests(
        self,
        path_regex: str | None = None,
        method: str | None = None,
        status: int | None = None,
        route: str | None = None,
        limit: int | None = None,
    ) -> list[JsonDict]:
        """Logged Graph requests (oldest first) matching every given filter."""
        body = self._call(
            "GET",
            "/requests",
            params={"path": path_regex, "method": method, "status": status, "route": route, "limit": limit},
        )
        result: list[JsonDict] = body["value"]
        return result

    def clear_requests(self) -> None:
        """Forget the request log and counters."""
        self._call("DELETE", "/requests")

    def stats(self) -> JsonDict:
        """Counters per route template (``"GET /users/{id}"``) and per status."""
        result: JsonDict = self._call("GET", "/stats")
        return result

    def count(self, route: str, status: int | None = None) -> int:
        """How many requests hit ``route`` (e.g. ``"GET /users/{id}"``), optionally with ``status``."""
        entry = self.stats()["routes"].get(route)
        if entry is None:
            return 0
        if status is None:
            return int(entry["count"])
        return int(entry["statuses"].get(str(status), 0))

    # Rich notifications ----------------------------------------------------------------------------
    @property
    def openid_configuration_url(self) -> str:
        """Where the simulated token service publishes its OpenID configuration (the verifier's setting)."""
        return f"{self.root_url}/common/.well-known/openid-configuration"

    def richdata(self) -> JsonDict:
        """Pending rich-notification faults, signing key ids and the verifier's document fetches."""
        result: JsonDict = self._call("GET", "/richdata")
        return result

    def add_rich_fault(self, fault: str, count: int = 1) -> JsonDict:
        """Spoil the next ``count`` items (tampered_data, bad_data_signature, unknown_certificate_id) or POSTs
        (wrong_signature, wrong_audience, expired_token, wrong_issuer, wrong_publisher, no_tokens)."""
        result: JsonDict = self._call("POST", "/richdata/faults", json={"fault": fault, "count": count})
        return result

    def rotate_signing_key(self, keep_previous: bool = False) -> JsonDict:
        """Sign validation tokens with a new key (new kid) from now on."""
        result: JsonDict = self._call("POST", "/richdata/rotate-signing-key", json={"keep_previous": keep_previous})
        return result
