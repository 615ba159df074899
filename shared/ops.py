"""The operator's command line: ``python -m shared.ops <command>`` (see docs/operations.md).

It calls the app's shared services directly, with the app's own settings (the environment, else the
``Values`` of ``local.settings.json``), so it needs Storage (and Graph, for ``renew``) access but no
running app and no function key. Everything it changes lives in Table rows and queues, so every app
instance sees the change (breakers within ~1 s, cache entries within ``CACHE_L1_TTL_SECONDS``).
Output is JSON on stdout; the exit status is 0 on success, 1 when the target was not found, 2 on errors
(bad settings, Storage or Graph unreachable, a ``status`` section that could not be read), which are also
summarised in one line on stderr (never a traceback or a secret).

Commands::

    status                                    breakers, subscriptions, queue depths (shared state only)
    subscriptions                             the subscription registry (never a clientState)
    fleet [FLEET]                             mailbox fleets' summaries; with FLEET its members and
                                              each one's state (reads the members from Graph)
    fleet reconcile MEMBER_RESOURCE           converge one fleet member now, its backoff cleared
    renew [SUBSCRIPTION_ID]                   renew one subscription now, or everything that is due
    breaker isolate|reset KEY                 force a breaker open for every instance / close it again
    cache invalidate --key NAMESPACE KEY      drop one cached value (e.g. --key users user:<guid>)
    cache invalidate --group GROUP            drop a group (e.g. --group user:<guid>, messages:<guid>)
    poison list QUEUE [--limit N]             peek at QUEUE's poison queue
    poison replay QUEUE [--limit N]           move QUEUE-poison's messages back to QUEUE
    grant-graph-roles IDENTITY [--role R ...] give a managed identity Graph application permissions
                                              (idempotent; needs no Storage; docs/deploy.md)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from azure.core.exceptions import AzureError

from shared.container import Registry
from shared.errors import AppError
from shared.names import GRAPH_BREAKERS, WORK_QUEUES
from shared.status import build_status, fleets_section, subscriptions_section
from shared.wiring import BREAKERS, CACHE, QUEUES, SUBSCRIPTIONS, registry, status_sources

OK, NOT_FOUND, FAILED = 0, 1, 2


def load_settings_file(path: Path, environ: dict[str, str] | Mapping[str, str]) -> dict[str, str]:
    """The environment completed with ``local.settings.json``'s ``Values`` (the environment wins)."""
    merged = dict(environ)
    if path.is_file():
        values = json.loads(path.read_text(encoding="utf-8")).get("Values", {})
        for name, value in values.items():
            merged.setdefault(name, str(value))
    return merged


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="python -m shared.ops", description="Operate the Graph backend.")
    root.add_argument("--settings", type=Path, default=Path("local.settings.json"), help="fallback settings file")
    commands = root.add_subparsers(dest="command", required=True)
    commands.add_parser("status", help="breakers, subscriptions and queue depths")
    commands.add_parser("subscriptions", help="list the subscription registry")
    fleet = commands.add_parser("fleet", help="mailbox fleets, a fleet's members, or reconcile one member")
    fleet.add_argument("target", nargs="?", help="a fleet (its entry's resource), or 'reconcile'")
    fleet.add_argument("member", nargs="?", help="with 'reconcile': the member's resource")
    renew = commands.add_parser("renew", help="renew one subscription now, or all that are due")
    renew.add_argument("subscription_id", nargs="?")
    breaker = commands.add_parser("breaker", help="isolate or reset a circuit breaker")
    breaker.add_argument("action", choices=["isolate", "reset"])
    breaker.add_argument("key", help=f"a breaker key, e.g. {', '.join(GRAPH_BREAKERS)}")
    cache = commands.add_parser("cache", help="invalidate cache entries")
    cache.add_argument("action", choices=["invalidate"])
    target = cache.add_mutually_exclusive_group(required=True)
    target.add_argument("--key", nargs=2, metavar=("NAMESPACE", "KEY"))
    target.add_argument("--group")
    poison = commands.add_parser("poison", help="list or replay a poison queue")
    poison.add_argument("action", choices=["list", "replay"])
    poison.add_argument("queue", help=f"the work queue, e.g. {', '.join(WORK_QUEUES)}")
    poison.add_argument("--limit", type=int, default=32)
    grant = commands.add_parser("grant-graph-roles", help="grant Graph app roles to a managed identity")
    grant.add_argument("identity", help="the identity's client id (appId) or service principal object id")
    grant.add_argument("--role", action="append", dest="roles", help="a Graph application permission (repeatable)")
    grant.add_argument("--graph-url", help="Graph endpoint incl. version (default: GRAPH_BASE_URL, else public Graph)")
    return root


async def execute(args: argparse.Namespace, services: Registry) -> tuple[int, Any]:
    """Run one parsed command against ``services``; (exit status, JSON-ready result)."""
    if args.command == "status":
        document = await build_status(status_sources(services), include_process=False)
        return (FAILED if document["errors"] else OK), document
    if args.command == "subscriptions":
        return OK, await subscriptions_section(status_sources(services))
    if args.command == "fleet":
        return await _fleet(services, args.target, args.member)
    if args.command == "renew":
        return await _renew(services, args.subscription_id)
    if args.command == "breaker":
        breakers = await services.get(BREAKERS)
        await (breakers.isolate if args.action == "isolate" else breakers.reset)(args.key)
        snapshot = await breakers.get(args.key).snapshot()
        return OK, {"key": snapshot.key, "state": snapshot.state.value}
    if args.command == "cache":
        return OK, await _invalidate(services, args.key, args.group)
    if args.command == "grant-graph-roles":
        from shared.graph_admin import grant_graph_roles

        return OK, await grant_graph_roles(args.identity, args.roles, args.graph_url, os.environ)
    return await _poison(services, args.action, args.queue, args.limit)


async def _fleet(services: Registry, target: str | None, member: str | None) -> tuple[int, Any]:
    if target is None:
        return OK, await fleets_section(status_sources(services))
    subscriptions = await services.get(SUBSCRIPTIONS)
    if target == "reconcile":
        if member is None:
            return FAILED, {"error": "fleet reconcile needs the member's resource (users/{id}/messages...)"}
        outcome = await subscriptions.reconcile_member(member)
        return (FAILED if outcome == "failed" else OK), {"resource": member, "outcome": outcome}
    return OK, await subscriptions.fleet_members(target)


async def _renew(services: Registry, subscription_id: str | None) -> tuple[int, Any]:
    subscriptions = await services.get(SUBSCRIPTIONS)
    if subscription_id is None:
        result = await subscriptions.renew_due()
        counts = {"renewed": result.renewed, "recreated": result.recreated, "failed": result.failed}
        document = {**counts, "skipped": result.skipped, "catchups": len(result.catchups)}
        return (FAILED if result.failed else OK), document
    view = await subscriptions.renew_now(subscription_id)
    if view is None:
        return NOT_FOUND, {"error": f"no subscription {subscription_id!r} in the registry"}
    return OK, view.to_dict()


async def _invalidate(services: Registry, key: Sequence[str] | None, group: str | None) -> dict[str, Any]:
    # The adapter applies the same normalisation as the notification handlers, so both hit the same rows.
    from shared.directory import CacheInvalidationAdapter

    cache = CacheInvalidationAdapter(await services.get(CACHE))
    if key is not None:
        await cache.invalidate_key(key[0], key[1])
        return {"invalidated": {"namespace": key[0], "key": key[1]}}
    assert group is not None  # argparse requires one of the two
    await cache.invalidate_group(group)
    return {"invalidated": {"group": group}}


async def _poison(services: Registry, action: str, queue: str, limit: int) -> tuple[int, Any]:
    from shared.events.poison import peek_poison, replay_poison

    queues = await services.get(QUEUES)
    if action == "replay":
        result = await replay_poison(queues, queue, limit=limit)
        return (OK if not result.failed else FAILED), {"replayed": result.replayed, "failed": result.failed}
    return OK, [
        {
            "id": m.id,
            "inserted_on": m.inserted_on.isoformat() if m.inserted_on else None,
            "reason": m.reason,
            "message": m.original,
        }
        for m in await peek_poison(queues, queue, limit)
    ]


# Connection strings and SAS URLs can appear in SDK messages: drop key values and query strings.
_SECRETS = re.compile(r"(AccountKey|SharedAccessSignature|sig|password|secret)=[^;&\s]*|\?\S*", re.IGNORECASE)


def unreachable(error: Exception) -> dict[str, str]:
    """The JSON error for a dependency that could not be reached: its type and first line, secrets removed."""
    service = "Storage" if isinstance(error, AzureError) else "a dependency"
    detail = _SECRETS.sub("", str(error).splitlines()[0] if str(error) else "")[:200].strip()
    message = f"{service} unreachable: {type(error).__name__}" + (f": {detail}" if detail else "")
    return {"code": "dependency_unreachable", "message": message}


def _error_line(status: int, result: Any) -> str | None:
    """The one stderr line for a failed command (None when it succeeded or only found nothing)."""
    if status != FAILED or not isinstance(result, dict):
        return None
    if isinstance(result.get("error"), dict):
        return f"shared.ops: {result['error']['code']}: {result['error']['message']}"
    if result.get("errors"):  # status: the sections that could not be read
        return "shared.ops: status incomplete: " + ", ".join(f"{k} {v}" for k, v in result["errors"].items())
    return "shared.ops: the command failed (see the JSON output)"


async def run(argv: Sequence[str], services: Registry = registry) -> int:
    """Parse, run, print; the services built for the command are closed before returning."""
    args = parser().parse_args(argv)
    os.environ.update(load_settings_file(args.settings, os.environ))
    try:
        status, result = await execute(args, services)
    except AppError as error:
        status, result = FAILED, {"error": {"code": error.code, "message": error.message}}
    except (AzureError, OSError, TimeoutError) as error:  # Storage (or another dependency) unreachable
        status, result = FAILED, {"error": unreachable(error)}
    finally:
        await services.aclose()
    print(json.dumps(result, indent=2, default=str, ensure_ascii=False))
    line = _error_line(status, result)
    if line:
        print(line, file=sys.stderr)
    return status


def main() -> None:
    sys.exit(asyncio.run(run(sys.argv[1:])))


if __name__ == "__main__":
    main()
