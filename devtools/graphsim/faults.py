"""Fault injection: rules that make matching Graph requests slow, fail or vanish.

A rule matches a method and a regular expression on the path after ``/v1.0``; it can
add latency, answer with an error status (Graph's error shape, optional Retry-After) or
drop the connection, with a probability, for the next N matches only, and after letting the first M pass
(``after``: fail a paged read in its middle, not at its start).
"""

from __future__ import annotations

import random
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

ACTIONS = ("respond", "drop")


class FaultRuleError(ValueError):
    """A fault rule that cannot be applied (bad regex, status, probability...)."""


@dataclass
class FaultRule:
    """One rule; ``remaining`` None means it never wears out."""

    id: str
    path: re.Pattern[str]
    method: str | None
    status: int | None
    retry_after: str | None
    latency_ms: float
    action: str
    probability: float
    remaining: int | None
    error_code: str | None
    after: int = 0  # matching requests still to let through before the rule fires
    query_param: str | None = None  # fire only for requests carrying this query parameter ("$skiptoken")
    hits: int = 0

    def describe(self) -> dict[str, Any]:
        """The rule as JSON, with its hit counter."""
        return {
            "id": self.id,
            "path": self.path.pattern,
            "method": self.method,
            "status": self.status,
            "retry_after": self.retry_after,
            "latency_ms": self.latency_ms,
            "action": self.action,
            "probability": self.probability,
            "count": self.remaining,
            "error_code": self.error_code,
            "after": self.after,
            "query_param": self.query_param,
            "hits": self.hits,
        }


@dataclass
class FaultRegistry:
    """The active rules, checked in creation order; the first that fires wins."""

    rules: list[FaultRule] = field(default_factory=list)
    _next_id: int = 1
    _rng: random.Random = field(default_factory=lambda: random.Random(0))

    def add(self, spec: dict[str, Any]) -> FaultRule:
        """Validate a rule spec from the control API and activate it."""
        unknown = set(spec) - {
            "path",
            "method",
            "status",
            "retry_after",
            "latency_ms",
            "action",
            "probability",
            "count",
            "error_code",
            "after",
            "query_param",
        }
        if unknown:
            raise FaultRuleError(f"unknown field(s): {', '.join(sorted(unknown))}")
        try:
            path = re.compile(str(spec.get("path", ".*")))
        except re.error as exc:
            raise FaultRuleError(f"bad path regex: {exc}") from None
        action = str(spec.get("action", "respond"))
        status = spec.get("status")
        probability = float(spec.get("probability", 1.0))
        count = spec.get("count")
        latency = float(spec.get("latency_ms", 0))
        if action not in ACTIONS:
            raise FaultRuleError(f"action must be one of {ACTIONS}")
        if status is not None and not (isinstance(status, int) and 100 <= status <= 599):
            raise FaultRuleError("status must be an HTTP status code")
        if action == "respond" and status is None and latency <= 0:
            raise FaultRuleError("a 'respond' rule needs a status or some latency_ms")
        if not 0 <= probability <= 1:
            raise FaultRuleError("probability must be within 0..1")
        if count is not None and not (isinstance(count, int) and count >= 1):
            raise FaultRuleError("count must be a positive integer")
        after = spec.get("after", 0)
        if not (isinstance(after, int) and after >= 0):
            raise FaultRuleError("after must be a non-negative integer")
        if not 0 <= latency <= 120_000:
            raise FaultRuleError("latency_ms must be within 0..120000")
        retry_after = spec.get("retry_after")
        rule = FaultRule(
            id=f"fault-{self._next_id}",
            path=path,
            method=str(spec["method"]).upper() if spec.get("method") else None,
            status=status,
            retry_after=None if retry_after is None else str(retry_after),
            latency_ms=latency,
            action=action,
            probability=probability,
            remaining=count,
            error_code=spec.get("error_code"),
            after=after,
            query_param=str(spec["query_param"]) if spec.get("query_param") else None,
        )
        self._next_id += 1
        self.rules.append(rule)
        return rule

    def remove(self, rule_id: str) -> bool:
        """Deactivate one rule; False when there was no such rule."""
        before = len(self.rules)
        self.rules = [r for r in self.rules if r.id != rule_id]
        return len(self.rules) != before

    def clear(self) -> None:
        """Deactivate every rule (the ids keep counting up, so old ids never come back)."""
        self.rules.clear()

    def match(self, method: str, path: str, query: Mapping[str, str] | None = None) -> FaultRule | None:
        """The rule that fires for this request, if any (counting it as used)."""
        for rule in self.rules:
            if rule.method and rule.method != method:
                continue
            if rule.query_param and rule.query_param not in (query or {}):
                continue
            if not rule.path.search(path):
                continue
            if rule.after:
                rule.after -= 1
                continue
            if rule.probability < 1 and self._rng.random() >= rule.probability:
                continue
            rule.hits += 1
            if rule.remaining is not None:
                rule.remaining -= 1
                if rule.remaining == 0:
                    self.rules.remove(rule)
            return rule
        return None
