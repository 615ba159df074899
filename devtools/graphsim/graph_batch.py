"""``POST /$batch``: up to 20 inner requests, each run through the same pipeline (auth,
faults, routing) as a top-level request, honouring ``dependsOn``."""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from multidict import CIMultiDict

from devtools.graphsim.routing import Router
from devtools.graphsim.wire import GraphError, GraphRequest, GraphResponse, JsonObj, json_response

MAX_REQUESTS = 20
Dispatch = Callable[[GraphRequest], Awaitable[GraphResponse]]
_HOP_HEADERS = ("request-id", "client-request-id", "x-ms-ags-diagnostic", "OData-Version")


def bad(message: str) -> GraphError:
    """The 400 Graph answers for a batch envelope it cannot run."""
    return GraphError(400, "BadRequest", message)


class BatchRoute:
    """The ``$batch`` handler; ``dispatch`` is the pipeline every inner request goes through."""

    def __init__(self, dispatch: Dispatch) -> None:
        self._dispatch = dispatch

    def register(self, router: Router) -> None:
        """Add ``POST /$batch``."""
        router.add("POST", "/$batch", self.batch)

    async def batch(self, request: GraphRequest, _: dict[str, str]) -> GraphResponse:
        """Run the inner requests in dependency order; a failed dependency answers 424."""
        steps = _parse(request.json_body())
        batch_id = str(uuid.uuid4())
        results: dict[str, int] = {}
        responses: list[JsonObj] = []
        for step in _ordered(steps):
            step_id = str(step["id"])
            failed = [d for d in step.get("dependsOn", []) if not 200 <= results[str(d)] < 300]
            if failed:
                results[step_id] = 424
                responses.append(
                    {
                        "id": step_id,
                        "status": 424,
                        "headers": {"Content-Type": "application/json"},
                        "body": {"error": {"code": "FailedDependency", "message": "A dependent request failed."}},
                    }
                )
                continue
            inner = _inner_request(step, request, batch_id)
            answer = await self._dispatch(inner)
            results[step_id] = answer.status
            item: JsonObj = {
                "id": step_id,
                "status": answer.status,
                "headers": {k: v for k, v in answer.headers.items() if k not in _HOP_HEADERS},
            }
            if answer.body is not None:
                item["headers"]["Content-Type"] = "application/json; odata.metadata=minimal; odata.streaming=true"
                item["body"] = answer.body
            responses.append(item)
        order = {str(step["id"]): n for n, step in enumerate(steps)}
        responses.sort(key=lambda r: order[r["id"]])
        return json_response({"responses": responses})


def _parse(envelope: JsonObj) -> list[JsonObj]:
    steps = envelope.get("requests")
    if not isinstance(steps, list) or not steps:
        raise bad("Invalid batch payload format: 'requests' must be a non-empty array.")
    if len(steps) > MAX_REQUESTS:
        raise bad(f"Number of batch request steps exceeds the maximum of {MAX_REQUESTS}.")
    seen: set[str] = set()
    for step in steps:
        if not isinstance(step, dict) or not all(step.get(k) for k in ("id", "method", "url")):
            raise bad("Each batch request needs 'id', 'method' and 'url'.")
        if str(step["id"]) in seen:
            raise bad(f"Batch request id '{step['id']}' is not unique.")
        seen.add(str(step["id"]))
        depends = step.get("dependsOn", [])
        if not isinstance(depends, list) or any(str(d) not in {str(s.get("id")) for s in steps} for d in depends):
            raise bad(f"Batch request '{step['id']}' depends on an unknown request.")
    return steps


def _ordered(steps: list[JsonObj]) -> list[JsonObj]:
    """Steps in an order where each comes after what it depends on (a cycle is a 400)."""
    by_id = {str(s["id"]): s for s in steps}
    done: list[JsonObj] = []
    state: dict[str, str] = {}

    def visit(step_id: str) -> None:
        if state.get(step_id) == "done":
            return
        if state.get(step_id) == "visiting":
            raise bad("Batch requests have a circular dependsOn.")
        state[step_id] = "visiting"
        for dep in by_id[step_id].get("dependsOn", []):
            visit(str(dep))
        state[step_id] = "done"
        done.append(by_id[step_id])

    for step in steps:
        visit(str(step["id"]))
    return done


def _inner_request(step: JsonObj, outer: GraphRequest, batch_id: str) -> GraphRequest:
    url = str(step["url"])
    parts = urlsplit(url)
    path = parts.path
    for prefix in ("/v1.0", "v1.0"):
        if path.lower().startswith(prefix.lower() + "/"):
            path = path[len(prefix) :]
    path = "/" + unquote(path).lstrip("/")
    headers: dict[str, str] = {k: str(v) for k, v in (step.get("headers") or {}).items()}
    if "Authorization" in outer.headers:
        headers.setdefault("Authorization", outer.headers["Authorization"])
    return GraphRequest(
        method=str(step["method"]).upper(),
        path=path,
        query=dict(parse_qsl(parts.query, keep_blank_values=True)),
        headers=CIMultiDict(headers),
        body=_body(step.get("body"), headers),
        base_url=outer.base_url,
        batch_id=batch_id,
    )


def _body(body: Any, headers: dict[str, str]) -> bytes:
    if body is None:
        return b""
    if isinstance(body, dict | list):
        return json.dumps(body).encode()
    if isinstance(body, str):
        content_type = next((v for k, v in headers.items() if k.lower() == "content-type"), "")
        if "json" in content_type.lower():
            return body.encode()
        try:
            return base64.b64decode(body, validate=True)
        except binascii.Error:
            return body.encode()
    raise bad("A batch request body must be a JSON object or a base64 string.")
