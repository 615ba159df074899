"""The control API under ``/_sim/`` (no auth, plain JSON) that tests use to seed data,
inject faults, move the clock, trigger lifecycle events and observe traffic."""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from devtools.graphsim import seed
from devtools.graphsim.config import RUNTIME_KEYS, ConfigError
from devtools.graphsim.faults import FaultRuleError
from devtools.graphsim.simulator import Simulator
from devtools.graphsim.wire import GraphError

ControlHandler = Callable[[web.Request], Awaitable[web.StreamResponse]]
MAX_CREATE = 10_000


def _ok(data: Any, status: int = 200) -> web.Response:
    return web.json_response(data, status=status)


def _problem(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"error": {"code": code, "message": message}}, status=status)


async def _body(request: web.Request) -> dict[str, Any]:
    raw = await request.read()
    if not raw.strip():
        return {}
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"body is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError("body must be a JSON object")
    return data


@web.middleware
async def control_errors(request: web.Request, handler: ControlHandler) -> web.StreamResponse:
    """Turn domain errors of control calls into JSON 4xx answers (never a 500 page)."""
    if not request.path.startswith("/_sim/"):
        return await handler(request)
    try:
        return await handler(request)
    except GraphError as exc:
        return _problem(exc.status, exc.code, exc.message)
    except (ConfigError, FaultRuleError, ValueError, TypeError, KeyError, re.error) as exc:
        return _problem(400, "BadRequest", str(exc))


class Control:
    """Handlers bound to one simulator."""

    def __init__(self, sim: Simulator) -> None:
        self.sim = sim

    def register(self, app: web.Application) -> None:
        """Add every ``/_sim/`` route."""
        r = app.router
        r.add_get("/_sim/health", self.health)
        r.add_post("/_sim/reset", self.reset)
        r.add_get("/_sim/config", self.get_config)
        r.add_put("/_sim/config", self.put_config)
        r.add_get("/_sim/clock", self.get_clock)
        r.add_post("/_sim/clock/advance", self.advance_clock)
        r.add_get("/_sim/users", self.list_users)
        r.add_post("/_sim/users", self.create_user)
        r.add_get("/_sim/users/{id}", self.get_user)
        r.add_patch("/_sim/users/{id}", self.update_user)
        r.add_delete("/_sim/users/{id}", self.delete_user)
        r.add_put("/_sim/users/{id}/mailbox", self.set_mailbox)
        r.add_get("/_sim/groups", self.list_groups)
        r.add_post("/_sim/groups", self.create_group)
        r.add_post("/_sim/groups/{id}/members", self.add_member)
        r.add_delete("/_sim/groups/{id}/members/{member}", self.remove_member)
        r.add_get("/_sim/users/{id}/messages", self.list_messages)
        r.add_post("/_sim/users/{id}/messages", self.create_messages)
        r.add_patch("/_sim/users/{id}/messages/{mid}", self.update_message)
        r.add_delete("/_sim/users/{id}/messages/{mid}", self.delete_message)
        r.add_post("/_sim/delta/invalidate", self.invalidate_delta)
        r.add_get("/_sim/subscriptions", self.list_subscriptions)
        r.add_post("/_sim/subscriptions/{id}/lifecycle", self.lifecycle)
        r.add_post("/_sim/subscriptions/{id}/expire", self.expire)
        r.add_get("/_sim/deliveries", self.deliveries)
        r.add_delete("/_sim/deliveries", self.clear_deliveries)
        r.add_post("/_sim/deliveries/flush", self.flush)
        r.add_get("/_sim/faults", self.list_faults)
        r.add_post("/_sim/faults", self.add_fault)
        r.add_delete("/_sim/faults", self.clear_faults)
        r.add_delete("/_sim/faults/{id}", self.delete_fault)
        r.add_get("/_sim/requests", self.requests)
        r.add_delete("/_sim/requests", self.clear_requests)
        r.add_get("/_sim/stats", self.stats)

    # State -----------------------------------------------------------------------------
    async def health(self, _: web.Request) -> web.Response:
        """Liveness and the fixed tenant id."""
        return _ok({"status": "ok", "tenantId": seed.TENANT_ID, "config": self.sim.config.public()})

    async def reset(self, request: web.Request) -> web.Response:
        """Back to the seeded state; the body may change seed, users, messages_per_user, latency_ms."""
        await self.sim.reset(await _body(request))
        return _ok({"status": "reset", "config": self.sim.config.public()})

    async def get_config(self, _: web.Request) -> web.Response:
        """The current settings."""
        return _ok(self.sim.config.public())

    async def put_config(self, request: web.Request) -> web.Response:
        """Change runtime settings (latency, delivery timeout/attempts/backoff, batch size)."""
        self.sim.config = self.sim.config.updated(await _body(request), RUNTIME_KEYS)
        return _ok(self.sim.config.public())

    async def get_clock(self, _: web.Request) -> web.Response:
        """Simulated now and its offset from real time."""
        return _ok(self._clock())

    async def advance_clock(self, request: web.Request) -> web.Response:
        """Move simulated time forward by ``seconds``."""
        self.sim.clock.advance(float((await _body(request))["seconds"]))
        self.sim.subscriptions.purge(self.sim.clock.now())
        return _ok(self._clock())

    def _clock(self) -> dict[str, Any]:
        now = self.sim.clock.now()
        return {
            "now": now.isoformat().replace("+00:00", "Z"),
            "epoch": now.timestamp(),
            "offset_s": self.sim.clock.offset_s,
        }

    # Tenant ---------------------------------------------------------------------------------
    async def list_users(self, _: web.Request) -> web.Response:
        """Every user with every property (not Graph's shape: a test helper)."""
        return _ok({"value": list(self.sim.tenant.users.values())})

    async def create_user(self, request: web.Request) -> web.Response:
        """Create a user (publishes ``created``)."""
        return _ok(self.sim.create_user(await _body(request)), status=201)

    async def get_user(self, request: web.Request) -> web.Response:
        """One user with every property."""
        return _ok(self.sim.tenant.find_user(request.match_info["id"]))

    async def update_user(self, request: web.Request) -> web.Response:
        """Change a user (publishes ``updated``)."""
        return _ok(self.sim.update_user(request.match_info["id"], await _body(request)))

    async def delete_user(self, request: web.Request) -> web.Response:
        """Delete a user and mailbox (publishes ``deleted``)."""
        self.sim.delete_user(request.match_info["id"])
        return web.Response(status=204)

    async def set_mailbox(self, request: web.Request) -> web.Response:
        """``{"enabled": bool}``: licence the user's mailbox or take it away (Outlook then answers 404)."""
        enabled = (await _body(request)).get("enabled")
        if not isinstance(enabled, bool):
            raise GraphError(400, "BadRequest", "'enabled' must be true or false")
        self.sim.set_mailbox(request.match_info["id"], enabled)
        return _ok({"enabled": enabled})

    async def list_groups(self, _: web.Request) -> web.Response:
        """Every group with its direct members' ids."""
        tenant = self.sim.tenant
        return _ok([{**g, "members": list(tenant.members[g["id"]])} for g in tenant.groups.values()])

    async def create_group(self, request: web.Request) -> web.Response:
        """``{id?, displayName?, members?: [user or group ids]}``."""
        group = self.sim.create_group(await _body(request))
        return _ok({**group, "members": list(self.sim.tenant.members[group["id"]])}, status=201)

    async def add_member(self, request: web.Request) -> web.Response:
        """``{"id": user id/UPN or group id}`` (recorded for the members delta)."""
        member = (await _body(request)).get("id")
        if not isinstance(member, str):
            raise GraphError(400, "BadRequest", "'id' must name a user or a group")
        return _ok({"id": self.sim.add_member(request.match_info["id"], member)}, status=201)

    async def remove_member(self, request: web.Request) -> web.Response:
        self.sim.remove_member(request.match_info["id"], request.match_info["member"])
        return web.Response(status=204)

    async def list_messages(self, request: web.Request) -> web.Response:
        """All messages of a mailbox, storage order (optionally ``?folder=inbox``)."""
        user = self.sim.tenant.find_user(request.match_info["id"])
        folder = request.query.get("folder")
        folder_id = None if folder is None else self.sim.tenant.folder(user["id"], folder)[1]
        return _ok({"value": self.sim.tenant.user_messages(user["id"], folder_id)})

    async def create_messages(self, request: web.Request) -> web.Response:
        """Deliver ``count`` (default 1) messages; each publishes ``created``."""
        body = await _body(request)
        count = int(body.pop("count", 1))
        if not 1 <= count <= MAX_CREATE:
            raise ConfigError(f"count must be within 1..{MAX_CREATE}")
        messages = self.sim.create_messages(request.match_info["id"], body, count)
        return _ok({"value": messages}, status=201)

    async def update_message(self, request: web.Request) -> web.Response:
        """Change or move (``folder``) a message (publishes ``updated``)."""
        info = request.match_info
        return _ok(self.sim.update_message(info["id"], info["mid"], await _body(request)))

    async def delete_message(self, request: web.Request) -> web.Response:
        """Delete a message (publishes ``deleted``)."""
        self.sim.delete_message(request.match_info["id"], request.match_info["mid"])
        return web.Response(status=204)

    async def invalidate_delta(self, request: web.Request) -> web.Response:
        """Make existing delta/skip tokens answer 410 (``{"kind": "users"|"mail"}``, default both)."""
        kind = (await _body(request)).get("kind")
        if kind not in (None, "users", "mail"):
            raise ConfigError("kind must be 'users', 'mail' or absent")
        self.sim.changes.invalidate(kind)
        return _ok({"invalidated": kind or "all"})

    # Subscriptions ----------------------------------------------------------------------------
    async def list_subscriptions(self, _: web.Request) -> web.Response:
        """Live subscriptions in Graph's shape."""
        return _ok({"value": [s.as_json() for s in self.sim.subscriptions.live(self.sim.clock.now())]})

    async def lifecycle(self, request: web.Request) -> web.Response:
        """Post a lifecycle event to the subscription's lifecycle URL."""
        event = str((await _body(request)).get("event", ""))
        sub = self.sim.lifecycle(request.match_info["id"], event)
        return _ok({"queued": event, "subscriptionId": sub.id}, status=202)

    async def expire(self, request: web.Request) -> web.Response:
        """Make a subscription expire now (silently, as Graph does)."""
        sub = self.sim.subscriptions.get(request.match_info["id"], self.sim.clock.now())
        self.sim.subscriptions.remove(sub.id)
        return _ok({"expired": sub.id})

    # Deliveries --------------------------------------------------------------------------------
    async def deliveries(self, request: web.Request) -> web.Response:
        """The delivery log; ``?wait_idle=1[&timeout=30]`` first waits until nothing is pending."""
        idle = True
        if request.query.get("wait_idle") in ("1", "true"):
            idle = await self.sim.deliveries.wait_idle(float(request.query.get("timeout", "30")))
        kind = request.query.get("kind")
        url = request.query.get("url")
        records = [
            r.as_json()
            for r in self.sim.deliveries.records
            if (kind is None or r.kind == kind) and (url is None or r.url == url)
        ]
        return _ok({"idle": idle, "pending": self.sim.deliveries.pending, "value": records})

    async def flush(self, request: web.Request) -> web.Response:
        """Wait until every queued delivery is delivered or given up (``timeout`` s, default 30)."""
        timeout = float((await _body(request)).get("timeout", 30))
        idle = await self.sim.deliveries.wait_idle(timeout)
        return _ok({"idle": idle, "pending": self.sim.deliveries.pending}, status=200 if idle else 504)

    async def clear_deliveries(self, _: web.Request) -> web.Response:
        """Forget the delivery log (pending deliveries continue)."""
        self.sim.deliveries.records.clear()
        return web.Response(status=204)

    # Faults --------------------------------------------------------------------------------------
    async def list_faults(self, _: web.Request) -> web.Response:
        """Active fault rules with their hit counts."""
        return _ok({"value": [rule.describe() for rule in self.sim.faults.rules]})

    async def add_fault(self, request: web.Request) -> web.Response:
        """Activate a rule; answers its id."""
        rule = self.sim.faults.add(await _body(request))
        return _ok(rule.describe(), status=201)

    async def clear_faults(self, _: web.Request) -> web.Response:
        """Deactivate every rule."""
        self.sim.faults.clear()
        return web.Response(status=204)

    async def delete_fault(self, request: web.Request) -> web.Response:
        """Deactivate one rule."""
        if not self.sim.faults.remove(request.match_info["id"]):
            return _problem(404, "NotFound", "no such fault rule")
        return web.Response(status=204)

    # Observability ----------------------------------------------------------------------------------
    async def requests(self, request: web.Request) -> web.Response:
        """The Graph request log, filtered by ``path`` (regex), ``method``, ``status``, ``route``, ``limit``."""
        q = request.query
        records = self.sim.requests.query(
            path_regex=q.get("path"),
            method=q.get("method"),
            status=int(q["status"]) if "status" in q else None,
            route=q.get("route"),
            limit=int(q["limit"]) if "limit" in q else None,
        )
        return _ok({"value": records})

    async def clear_requests(self, _: web.Request) -> web.Response:
        """Forget the request log and counters."""
        self.sim.requests.clear()
        return web.Response(status=204)

    async def stats(self, _: web.Request) -> web.Response:
        """Counters per route template and status."""
        return _ok(self.sim.requests.stats())
