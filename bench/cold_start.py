"""Cold paths of a fresh process: the first uncached Graph read and the first 202, each against a naive app.

Every run spawns the harness (``python -m devtools.funchost``) on one app and times, from the spawn, the
first answer to one request (retried every 10 ms until the port takes it):

- first uncached read: ``GET /api/users/{id}`` for a user no run has read before (Table cache row absent,
  so Graph is called and the row written). The naive app does what Microsoft's samples suggest: a
  ``GraphServiceClient`` and a ``TableClient`` built at module load, the typed ``User`` model parsed, a
  Table cache without a memory tier;
- first 202: ``POST /api/notifications`` with one notification of a registered subscription. Ours reads the
  subscription registry (clientState) and persists to the queue; the naive app (``bench._fresh``) imports
  msgraph and the Azure SDKs and builds its Graph client at module load, but does neither;
- the floor: a trivial app (``azure.functions`` only) answering both routes, i.e. the harness itself.

Ratios are taken above the floor, ``(app - floor) / (naive - floor)``, as ``bench.webhook`` reports its first
202. Runs are interleaved (ours, naive, floor per path) so disk caches and background load favour nobody.
The CPU seconds the harness process used until its answer are reported beside the wall times, with the
same ratios: on a shared machine they move far less than wall time does.
It also times ``import function_app`` as a whole process against the SDKs a naive app imports.

    .venv/bin/python -m bench.cold_start [--runs 7] [--write]

Figures last as one JSON line (``first_read_ratio``, ``first_202_ratio``, medians in ms).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from bench._fresh import (
    FLOOR_APP,
    NAIVE_WEBHOOK_APP,
    ColdRequest,
    FirstAnswer,
    first_answer,
    production_python,
    throwaway_app_dir,
)
from bench._stack import (
    ROOT,
    SHARED_CORES_NOTE,
    Stack,
    background_note,
    median,
    running_harness,
    running_stack,
    verdict,
)
from bench.report import machine, write_section
from bench.webhook import JSON_HEADERS, Notifications, Subscription
from devtools.azurite import free_port
from shared.directory import USER_FIELDS
from shared.storage import Tables
from shared.subscriptions.records import SubscriptionRecord, SubscriptionRegistry

READ_TARGET = 0.30
ACK_TARGET = 0.70
FUNCTION_KEY = "bench-cold-function-key"
NAIVE_CACHE_TABLE = "naivecache"

NAIVE_READ_APP = f'''"""A naive cached user read, as Microsoft's samples suggest: the Graph client and the Table client
built at module load, the typed User model parsed, a Table cache without a memory tier."""

import json
import os
import time
from urllib.parse import urlsplit

import azure.functions as func
from azure.core.credentials import AccessToken
from azure.core.exceptions import ResourceNotFoundError
from azure.data.tables.aio import TableClient
from kiota_abstractions.base_request_configuration import RequestConfiguration
from kiota_authentication_azure.azure_identity_authentication_provider import AzureIdentityAuthenticationProvider
from msgraph import GraphRequestAdapter, GraphServiceClient
from msgraph.generated.users.item.user_item_request_builder import UserItemRequestBuilder

FIELDS = {list(USER_FIELDS)!r}
TTL_SECONDS = 300


class StaticTokenCredential:
    """The simulator's token (an azure.identity credential in production)."""

    async def get_token(self, *scopes, **kwargs):
        return AccessToken(os.environ["GRAPH_STATIC_TOKEN"], int(time.time()) + 3600)

    async def close(self):
        pass


base_url = os.environ["GRAPH_BASE_URL"]
scopes = ["https://graph.microsoft.com/.default"]
auth = AzureIdentityAuthenticationProvider(
    StaticTokenCredential(), scopes=scopes, allowed_hosts=[urlsplit(base_url).hostname]
)
adapter = GraphRequestAdapter(auth)
adapter.base_url = base_url
graph = GraphServiceClient(request_adapter=adapter)
cache = TableClient.from_connection_string(
    os.environ["AzureWebJobsStorage"], os.environ["STORAGE_TABLE_PREFIX"] + "{NAIVE_CACHE_TABLE}"
)
app = func.FunctionApp()


@app.route(route="users/{{user_id}}", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
async def get_user(req: func.HttpRequest) -> func.HttpResponse:
    user_id = req.route_params["user_id"]
    try:
        entity = await cache.get_entity("users", user_id)
        if entity["expires"] > time.time():
            return func.HttpResponse(entity["body"], mimetype="application/json", headers={{"X-Cache": "hit"}})
    except ResourceNotFoundError:
        pass
    query = UserItemRequestBuilder.UserItemRequestBuilderGetQueryParameters(select=FIELDS)
    user = await graph.users.by_user_id(user_id).get(request_configuration=RequestConfiguration(query_parameters=query))
    body = json.dumps(
        {{
            "id": user.id,
            "displayName": user.display_name,
            "givenName": user.given_name,
            "surname": user.surname,
            "userPrincipalName": user.user_principal_name,
            "mail": user.mail,
            "jobTitle": user.job_title,
            "department": user.department,
            "officeLocation": user.office_location,
            "mobilePhone": user.mobile_phone,
            "businessPhones": user.business_phones or [],
            "preferredLanguage": user.preferred_language,
        }}
    )
    await cache.upsert_entity(
        {{"PartitionKey": "users", "RowKey": user_id, "body": body, "expires": time.time() + TTL_SECONDS}}
    )
    return func.HttpResponse(body, mimetype="application/json", headers={{"X-Cache": "miss"}})
'''

INTRO = (
    "Harness spawned, the request retried every 10 ms until the first answer; per path, ours, the naive app and "
    "the floor (azure.functions only) run interleaved. First uncached read: `GET /api/users/{id}` of a user no "
    "run read before (Graph called, Table cache row written); the naive app builds a `GraphServiceClient` and a "
    "`TableClient` at module load, parses the typed `User` and caches in Table Storage only. First 202: one "
    "notification of a registered subscription; ours reads the subscription registry and persists to the "
    "queue, the naive app does neither but imports msgraph and the Azure SDKs and builds its Graph client at "
    "module load. Above floor = median minus the floor's median; ratio = ours / naive above the floor."
)

IMPORT_CASES = {
    "python -c pass (interpreter only)": "pass",
    "ours: import function_app": "import function_app",
    "eager baseline": (
        "import azure.functions; from msgraph import GraphServiceClient; import azure.identity.aio; "
        "import azure.data.tables.aio; import azure.storage.queue.aio"
    ),
}


def import_once(code: str, python: str) -> float:
    started = time.perf_counter()
    subprocess.run([python, "-c", code], cwd=ROOT, check=True)
    return time.perf_counter() - started


def measure_imports(runs: int, python: str) -> tuple[list[str], float]:
    """``import function_app`` as a whole process vs the SDKs a naive app imports (interleaved)."""
    for code in IMPORT_CASES.values():  # warm the OS file cache and .pyc files once
        import_once(code, python)
    samples: dict[str, list[float]] = {name: [] for name in IMPORT_CASES}
    for _ in range(runs):
        for name, code in IMPORT_CASES.items():
            samples[name].append(import_once(code, python) * 1000)
    ratio = median(samples["ours: import function_app"]) / median(samples["eager baseline"])
    lines = ["| Process | median ms | min ms | max ms |", "| --- | ---: | ---: | ---: |"]
    lines += [f"| {name} | {median(v):.0f} | {min(v):.0f} | {max(v):.0f} |" for name, v in samples.items()]
    lines += ["", f"Ratio import function_app / eager baseline (medians, {runs} runs each): **{ratio:.2f}**."]
    return lines, ratio


async def create_table(connection: str, name: str) -> None:
    """The naive app's cache table, made once as a deployment would (the app itself never creates it)."""
    from azure.data.tables.aio import TableServiceClient

    async with TableServiceClient.from_connection_string(connection) as service:
        await service.create_table_if_not_exists(name)


def read_request(user_id: str) -> ColdRequest:
    return ColdRequest("GET", f"/api/users/{user_id}", 200, headers={"x-functions-key": FUNCTION_KEY})


class ColdPath:
    """One cold path: its request per run, and the first answers of ours, the naive app and the floor."""

    def __init__(self, name: str, request: Callable[[int], ColdRequest], apps: dict[str, Path], python: str) -> None:
        self.name = name
        self.request = request
        self.apps = apps  # "ours", "naive", "floor" → app folder
        self.python = python  # the environment every harness of this path runs in
        self.answers: dict[str, list[FirstAnswer]] = {role: [] for role in apps}

    def run(self, index: int, env: dict[str, str], record: bool = True) -> None:
        for role, app_dir in self.apps.items():
            answer = first_answer(app_dir, env, self.request(index), python=self.python)
            if record:
                self.answers[role].append(answer)

    def ms(self, role: str, cpu: bool = False) -> list[float]:
        return [(answer.cpu if cpu else answer.answered) * 1000 for answer in self.answers[role]]

    def above_floor(self, role: str, cpu: bool = False) -> float:
        return median(self.ms(role, cpu)) - median(self.ms("floor", cpu))

    def ratio(self, cpu: bool = False) -> float:
        return self.above_floor("ours", cpu) / self.above_floor("naive", cpu)

    def rows(self) -> list[str]:
        rows = []
        for role, answers in self.answers.items():
            answered = self.ms(role)
            opened = median([a.port_open * 1000 for a in answers])
            alone = median([(a.answered - a.port_open) * 1000 for a in answers])
            if role == "floor":
                above = cpu_above = "—"
            else:
                above, cpu_above = f"{self.above_floor(role):.0f}", f"{self.above_floor(role, True):.0f}"
            rows.append(
                f"| {self.name} | {role} | {opened:.0f} | {median(answered):.0f} | {min(answered):.0f} "
                f"| {max(answered):.0f} | {alone:.0f} | {above} | {median(self.ms(role, True)):.0f} | {cpu_above} |"
            )
        return rows

    def figures(self, key: str) -> dict[str, Any]:
        figures: dict[str, Any] = {
            f"{key}_ratio": round(self.ratio(), 3),
            f"{key}_cpu_ratio": round(self.ratio(True), 3),
        }
        for role in self.answers:
            values = self.ms(role)
            figures[f"{key}_ms_{role}"] = round(median(values), 1)
            figures[f"{key}_spread_ms_{role}"] = round(max(values) - min(values), 1)
            figures[f"{key}_cpu_ms_{role}"] = round(median(self.ms(role, True)), 1)
        return figures


def subscribed_state(stack: Stack, env: dict[str, str], mailbox: str, port: int) -> Subscription:
    """Put the app in the state of a deployed instance: one mailbox subscription, created by the app itself
    (its startup renewal, handshake answered by its webhook) and live in Graph, so the cold runs' startup
    timers find it as production's do (``port``: where ``WEBHOOK_BASE_URL`` points). Returns that
    subscription, read from the app's registry."""
    connection, prefix = stack.azurite.connection_string, env["STORAGE_TABLE_PREFIX"]
    with running_harness(ROOT, env, port=port):
        deadline = time.monotonic() + 60
        while not (records := asyncio.run(subscription_records(connection, prefix))):
            if time.monotonic() > deadline:
                raise RuntimeError("the app did not subscribe within 60 s")
            time.sleep(0.2)
    if len(stack.sim.subscriptions()) != 1 or len(records) != 1 or records[0].resource != f"users/{mailbox}/messages":
        raise RuntimeError(f"unexpected subscriptions in the registry: {[r.resource for r in records]}")
    return Subscription(records[0].id, records[0].client_state.reveal())


async def subscription_records(connection: str, prefix: str) -> list[SubscriptionRecord]:
    from azure.data.tables.aio import TableServiceClient

    async with TableServiceClient.from_connection_string(connection) as service:
        return await SubscriptionRegistry(Tables(service, prefix)).list_all()


def measure_paths(stack: Stack, runs: int, python: str) -> tuple[list[str], dict[str, Any]]:
    users = [user["id"] for user in stack.sim.users()]
    if len(users) < runs + 2:
        raise RuntimeError(f"the simulator has {len(users)} users; {runs + 2} are needed")
    mailbox = users[-1]  # the subscribed mailbox; users[0..runs] are read, one per run (warm-up: users[runs])
    setup_port = free_port()  # the setup harness's webhook; nothing listens there during the cold runs
    env = stack.app_env(
        FUNCHOST_FUNCTION_KEY=FUNCTION_KEY,
        GRAPH_SUBSCRIPTIONS=f"users/{mailbox}/messages=created,updated,deleted",
        WEBHOOK_BASE_URL=f"http://127.0.0.1:{setup_port}/api",
    )
    asyncio.run(create_table(stack.azurite.connection_string, env["STORAGE_TABLE_PREFIX"] + NAIVE_CACHE_TABLE))
    notifications = Notifications(subscribed_state(stack, env, mailbox, setup_port))

    def notification(_: int) -> ColdRequest:
        return ColdRequest("POST", "/api/notifications", 202, notifications.body(1), JSON_HEADERS)

    with (
        throwaway_app_dir(NAIVE_READ_APP) as naive_read,
        throwaway_app_dir(NAIVE_WEBHOOK_APP) as naive_webhook,
        throwaway_app_dir(FLOOR_APP) as floor,
    ):
        read_apps = {"ours": ROOT, "naive": naive_read, "floor": floor}
        read = ColdPath("first uncached read", lambda i: read_request(users[i]), read_apps, python)
        ack = ColdPath("first 202", notification, {"ours": ROOT, "naive": naive_webhook, "floor": floor}, python)
        read.run(runs, env, record=False)  # warm-up (tables made, .pyc written), on a user no timed run reads
        ack.run(runs, env, record=False)
        for index in range(runs):
            read.run(index, env)
            ack.run(index, env)

    lines = [
        "| path | app | port open ms | first answer ms | min ms | max ms | request alone ms | above floor ms "
        "| harness CPU ms | CPU above floor ms |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        *read.rows(),
        *ack.rows(),
        "",
        f"First uncached read, ours / naive above the floor: **{read.ratio():.2f}** (target ≤ {READ_TARGET:.2f}: "
        f"{verdict(read.ratio() <= READ_TARGET)}); first 202: **{ack.ratio():.2f}** (target ≤ {ACK_TARGET:.2f}: "
        f"{verdict(ack.ratio() <= ACK_TARGET)}). Medians of {runs} interleaved runs each. The same ratios in "
        f"CPU the harness process used until its answer (not inflated by other processes on the cores): "
        f"read {read.ratio(True):.2f}, 202 {ack.ratio(True):.2f}.",
    ]
    return lines, {**read.figures("first_read"), **ack.figures("first_202")}


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7, help="fresh processes per app and path")
    parser.add_argument(
        "--dev-venv", action="store_true", help="run the processes in this (development) environment instead"
    )
    parser.add_argument("--write", action="store_true", help="record the results in docs/benchmarks.md")
    args = parser.parse_args(argv)
    python = sys.executable if args.dev_venv else production_python()  # built before the idle probe
    background = background_note()

    import_lines, import_ratio = measure_imports(args.runs, python)
    with running_stack("--users", str(max(50, args.runs + 2))) as stack:
        path_lines, figures = measure_paths(stack, args.runs, python)
    environment = (
        "the development environment (dev tools installed)"
        if args.dev_venv
        else "an environment holding requirements.txt only, plus the harness's croniter and azure-storage-blob "
        "(`bench._fresh.production_python`), as a deployment has"
    )
    report = "\n".join(
        [
            INTRO,
            f"Every process runs in {environment}.",
            "",
            *path_lines,
            "",
            *import_lines,
            "",
            f"Machine: {machine()}. {SHARED_CORES_NOTE} {background}",
        ]
    )
    print(report)
    if args.write:
        flags = " --dev-venv" if args.dev_venv else ""
        write_section("cold_start", f"python -m bench.cold_start --runs {args.runs}{flags} --write", report)
    figures |= {"import_ratio": round(import_ratio, 3), "runs": args.runs}
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
