"""What tests look at: a bounded log of Graph requests and counters per route and status."""

from __future__ import annotations

import re
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any

MAX_LOGGED_REQUESTS = 20_000


@dataclass
class RequestRecord:
    """One Graph request as it was answered (inner ``$batch`` requests included)."""

    time: float  # simulator clock, epoch seconds
    method: str
    path: str
    query: dict[str, str]
    route: str
    status: int
    fault: str | None
    client_request_id: str
    request_id: str
    batch_id: str | None
    duration_ms: float

    def as_json(self) -> dict[str, Any]:
        """The record as the control API returns it."""
        return {
            "time": self.time,
            "method": self.method,
            "path": self.path,
            "query": self.query,
            "route": self.route,
            "status": self.status,
            "fault": self.fault,
            "client_request_id": self.client_request_id,
            "request_id": self.request_id,
            "batch_id": self.batch_id,
            "duration_ms": round(self.duration_ms, 3),
        }


@dataclass
class RequestLog:
    """The request log and the counters derived from it."""

    records: deque[RequestRecord] = field(default_factory=lambda: deque(maxlen=MAX_LOGGED_REQUESTS))
    by_route: Counter[str] = field(default_factory=Counter)
    by_route_status: Counter[tuple[str, int]] = field(default_factory=Counter)
    by_status: Counter[int] = field(default_factory=Counter)
    faults: Counter[str] = field(default_factory=Counter)

    def add(self, record: RequestRecord) -> None:
        """Log a request and count it."""
        self.records.append(record)
        self.by_route[record.route] += 1
        self.by_route_status[(record.route, record.status)] += 1
        self.by_status[record.status] += 1
        if record.fault:
            self.faults[record.fault] += 1

    def clear(self) -> None:
        """Forget everything (a reset or ``DELETE /_sim/requests``)."""
        self.records.clear()
        self.by_route.clear()
        self.by_route_status.clear()
        self.by_status.clear()
        self.faults.clear()

    def query(
        self,
        path_regex: str | None = None,
        method: str | None = None,
        status: int | None = None,
        route: str | None = None,
        limit: int | None = None,
    ) -> list[dict[str, Any]]:
        """Matching records, oldest first (the last ``limit`` of them when given)."""
        pattern = re.compile(path_regex) if path_regex else None
        found = [
            r.as_json()
            for r in self.records
            if (pattern is None or pattern.search(r.path))
            and (method is None or r.method == method.upper())
            and (status is None or r.status == status)
            and (route is None or r.route == route)
        ]
        return found[-limit:] if limit else found

    def stats(self) -> dict[str, Any]:
        """Counters: total, per status, per route (with its statuses), per fault rule."""
        routes: dict[str, Any] = {
            name: {"count": count, "statuses": {}} for name, count in sorted(self.by_route.items())
        }
        for (name, status), count in self.by_route_status.items():
            routes[name]["statuses"][str(status)] = count
        return {
            "total": sum(self.by_route.values()),
            "statuses": {str(k): v for k, v in sorted(self.by_status.items())},
            "routes": routes,
            "faults": dict(self.faults),
        }
