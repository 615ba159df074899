"""In-memory stand-ins for queues and the subscription registry (unit tests do no I/O)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping

from azure.core.exceptions import ServiceRequestError

from shared.secret import Secret
from shared.storage import guard


class FakeQueue:
    def __init__(self, name: str, sent: list[str], fail: bool) -> None:
        self.name = name
        self.sent = sent
        self.fail = fail

    async def send_message(self, content: str, **options: object) -> None:
        if self.fail:
            raise ServiceRequestError("connection refused")
        self.sent.append(content)


class FakeQueues:
    """``Queues``-shaped: ``get(name)`` gives a queue whose sends are recorded (or fail)."""

    def __init__(self, failing: set[str] | None = None) -> None:
        self.sent: dict[str, list[str]] = defaultdict(list)
        self.failing = failing or set()

    async def get(self, name: str) -> FakeQueue:
        # Behind the storage-error layer, as every queue the app uses is (shared/storage.py).
        return guard(FakeQueue(name, self.sent[name], name in self.failing), name)


class FakeRegistry:
    """``client_states`` from a dict; counts lookups."""

    def __init__(self, secrets: Mapping[str, str]) -> None:
        self.secrets = {k: Secret(v) for k, v in secrets.items()}
        self.lookups = 0

    async def client_states(self, subscription_ids: set[str]) -> dict[str, Secret | None]:
        self.lookups += 1
        return {i: self.secrets.get(i) for i in subscription_ids}
