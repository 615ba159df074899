"""How a setting is declared and read: one ``SettingSpec`` (name, default, meaning, parser) per setting.

``shared.settings`` declares each setting once, as a ``Settings`` field whose metadata carries its spec;
this module reads such a dataclass from an environment mapping, collecting every problem instead of
raising at the first, and never showing a secret's value. It knows nothing about the app's settings.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit

from shared.secret import Secret

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

Parser = Callable[[str], Any]
"""Turns a present, stripped value into its typed form; raises ``ValueError("<what was expected>")``."""

D = TypeVar("D", bound="DataclassInstance")

MAX_SETTING_LENGTH = 64 * 1024
_SPEC = "setting"  # the dataclass field metadata key that holds a SettingSpec


@dataclass(frozen=True)
class SettingSpec:
    """One setting: its environment name, default as written there, one-line meaning and parser."""

    name: str
    default: str | None
    description: str
    parse: Parser = str
    secret: bool = False
    required: bool = False

    def read(self, env: Mapping[str, str]) -> tuple[Any, str | None]:
        """The typed value and the problem, if any; a missing or rejected value falls back to the default."""
        raw = env.get(self.name)
        if raw is None or raw.strip() == "":
            problem = f"{self.name}: required ({self.description})" if self.required else None
            return self._fallback(), problem
        if len(raw) > MAX_SETTING_LENGTH:
            return self._fallback(), f"{self.name}: expected at most {MAX_SETTING_LENGTH} characters, got {len(raw)}"
        value = raw.strip()
        try:
            return self.parse(value), None
        except ValueError as expected:
            shown = f"a value of {len(value)} characters" if self.secret else repr(value[:80])
            return self._fallback(), f"{self.name}: expected {expected}, got {shown}"

    def _fallback(self) -> Any:
        if self.default is not None:
            return self.parse(self.default)
        return self.parse("") if self.required else None


def setting(name: str, default: str | float | bool | None, description: str, parse: Parser = str) -> dict[str, Any]:
    """Field metadata declaring a plain setting; ``default`` is given typed and shown as the app reads it."""
    shown = default if default is None or isinstance(default, str) else _written(default)
    return {_SPEC: SettingSpec(name, shown, description, parse)}


def secret(name: str, description: str, *, required: bool = False) -> dict[str, Any]:
    """Field metadata declaring a secret: no default, read into a ``Secret``, never shown in errors or docs."""
    return {_SPEC: SettingSpec(name, None, description, Secret, secret=True, required=required)}


def specs_of(cls: type[D]) -> list[SettingSpec]:
    """Every declared setting of a dataclass, in field order."""
    return [declared.metadata[_SPEC] for declared in fields(cls)]


def read_fields(cls: type[D], env: Mapping[str, str]) -> tuple[D, list[str]]:
    """Build the dataclass from ``env``; every problem is collected (bad values take their default)."""
    values: dict[str, Any] = {}
    problems: list[str] = []
    for declared in fields(cls):
        values[declared.name], problem = declared.metadata[_SPEC].read(env)
        if problem is not None:
            problems.append(problem)
    return cls(**values), problems


def _written(default: float | bool) -> str:
    if isinstance(default, bool):
        return "true" if default else "false"
    return str(default)


# --- Parsers ------------------------------------------------------------------------------------------


def text(pattern: str | None = None) -> Parser:
    """Any text, or text matching ``pattern`` in full."""

    def parse(value: str) -> str:
        if pattern is not None and not re.fullmatch(pattern, value):
            raise ValueError(f"a value matching {pattern}")
        return value

    return parse


def integer(low: int, high: int) -> Parser:
    """A decimal integer in ``[low, high]``."""
    return _bounded(int, "an integer", low, high)


def number(low: float, high: float) -> Parser:
    """A finite number in ``[low, high]`` (NaN and infinities are out of every range)."""
    return _bounded(float, "a number", low, high)


def _bounded(kind: Callable[[str], float], word: str, low: float, high: float) -> Parser:
    def parse(value: str) -> float:
        try:
            parsed = kind(value)
        except ValueError:
            parsed = None
        if parsed is None or not (low <= parsed <= high):  # NaN fails every comparison
            raise ValueError(f"{word} from {low} to {high}")
        return parsed

    return parse


def choice(*options: str) -> Parser:
    """One of ``options``, spelled exactly."""

    def parse(value: str) -> str:
        if value not in options:
            raise ValueError("one of " + ", ".join(options))
        return value

    return parse


def flag(value: str) -> bool:
    """true/false, yes/no, on/off or 1/0 (any case)."""
    lowered = value.lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off"}:
        return False
    raise ValueError("true or false")


def http_url(value: str) -> str:
    """An absolute https URL, or http on loopback; without a trailing slash."""
    try:
        parts = urlsplit(value)
        absolute = parts.scheme in {"http", "https"} and bool(parts.hostname)
    except ValueError:  # e.g. an unclosed [IPv6 bracket
        absolute = False
    if not absolute:
        raise ValueError("an absolute http(s) URL")
    if parts.scheme == "http" and not is_loopback_url(value):
        raise ValueError("https (plain http is allowed only for localhost/127.0.0.1/[::1])")
    return value.rstrip("/")


def https_url(value: str) -> str:
    """An absolute https URL (bearer tokens are sent only over TLS), without a trailing slash."""
    checked = http_url(value)
    if urlsplit(checked).scheme != "https":
        raise ValueError("an https URL")
    return checked


def is_loopback_url(url: str) -> bool:
    """True for http(s) URLs on localhost or a loopback address (where plain http is acceptable)."""
    try:
        host = urlsplit(url).hostname or ""
        return host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class RequestRate:
    """``GRAPH_RATE_LIMIT``: ``requests`` per ``seconds``."""

    requests: int
    seconds: float


def request_rate(value: str) -> RequestRate:
    """``600/10`` → 600 requests per 10.0 seconds."""
    count, sep, period = value.partition("/")
    try:
        requests, seconds = int(count), float(period)
    except ValueError:
        requests, seconds = 0, 0.0
    if not sep or not (1 <= requests <= 1_000_000 and 0.1 <= seconds <= 86_400):
        raise ValueError("'<requests>/<seconds>', e.g. 600/10 (1..1000000 requests, 0.1..86400 s)")
    return RequestRate(requests, seconds)
