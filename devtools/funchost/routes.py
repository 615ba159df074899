"""HTTP route templates in the host's (ASP.NET Core) syntax, compiled to regular expressions.

Supported: literals (matched case-insensitively), ``{name}``, optional ``{name?}``, defaults
``{name=value}``, catch-all ``{*rest}``, and constraints ``{id:int}``, ``{id:guid}``, ``bool``,
``alpha``, ``long``, ``double``/``float``/``decimal``, ``datetime``, ``min(n)``, ``max(n)``,
``range(a,b)``, ``minlength(n)``, ``maxlength(n)``, ``length(n[,m])``, ``regex(expr)`` (no braces in expr), chained with
``:``. An unknown constraint is parsed and logged, then matches anything.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field

logger = logging.getLogger("funchost")

_TYPE_PATTERNS = {
    "int": r"-?\d+",
    "long": r"-?\d+",
    "double": r"-?\d+(?:\.\d+)?",
    "float": r"-?\d+(?:\.\d+)?",
    "decimal": r"-?\d+(?:\.\d+)?",
    "bool": r"(?:true|false)",
    "alpha": r"[A-Za-z]+",
    "guid": r"\{?[0-9A-Fa-f]{8}-?[0-9A-Fa-f]{4}-?[0-9A-Fa-f]{4}-?[0-9A-Fa-f]{4}-?[0-9A-Fa-f]{12}\}?",
    "datetime": r"[^/]+",
}
_PARAM = re.compile(r"\{([^{}]+)\}")
_CONSTRAINT = re.compile(r"^(?P<name>[a-zA-Z]+)(?:\((?P<args>.*)\))?$")

Check = Callable[[str], bool]


class RouteTemplateError(ValueError):
    """A route template the host would reject too (unbalanced braces, a bad name)."""


@dataclass(frozen=True)
class Parameter:
    name: str
    optional: bool = False
    default: str | None = None
    catch_all: bool = False
    pattern: str = r"[^/]+"
    checks: tuple[Check, ...] = field(default=())


def _split_constraints(spec: str) -> list[str]:
    """Split ``int:min(1):regex(a:b)`` on colons outside parentheses."""
    parts: list[str] = []
    current: list[str] = []
    depth = 0
    for char in spec:
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        if char == ":" and depth == 0:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return parts


def _constraint(spec: str, template: str) -> tuple[str | None, Check | None]:
    """The regex and/or value check one constraint adds."""
    match = _CONSTRAINT.match(spec)
    if match is None:
        logger.warning("route %r: unknown constraint %r ignored", template, spec)
        return None, None
    kind, args = match["name"].lower(), match["args"]
    if kind in _TYPE_PATTERNS and args is None:
        return _TYPE_PATTERNS[kind], None
    if kind == "regex" and args is not None:
        return args.strip("^$"), None
    numbers = [a.strip() for a in (args or "").split(",") if a.strip()]
    try:
        values = [int(n) for n in numbers]
    except ValueError:
        values = []
    if kind == "min" and len(values) == 1:
        return r"-?\d+", lambda v, lo=values[0]: int(v) >= lo
    if kind == "max" and len(values) == 1:
        return r"-?\d+", lambda v, hi=values[0]: int(v) <= hi
    if kind == "range" and len(values) == 2:
        return r"-?\d+", lambda v, lo=values[0], hi=values[1]: lo <= int(v) <= hi
    if kind == "minlength" and len(values) == 1:
        return None, lambda v, lo=values[0]: len(v) >= lo
    if kind == "maxlength" and len(values) == 1:
        return None, lambda v, hi=values[0]: len(v) <= hi
    if kind == "length" and len(values) in (1, 2):
        lo, hi = values[0], values[-1]
        return None, lambda v: lo <= len(v) <= hi
    logger.warning("route %r: unknown constraint %r ignored", template, spec)
    return None, None


def _parameter(body: str, template: str) -> Parameter:
    catch_all = body.startswith("*")
    body = body.lstrip("*")
    default = None
    if "=" in body:
        body, default = body.split("=", 1)
    head, *constraints = _split_constraints(body)
    optional = head.endswith("?")
    name = head.rstrip("?")
    if constraints and constraints[-1].endswith("?"):
        optional = True
        constraints[-1] = constraints[-1][:-1]
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
        raise RouteTemplateError(f"route {template!r}: bad parameter name {name!r}")
    pattern = r".*" if catch_all else r"[^/]+"
    checks: list[Check] = []
    for spec in constraints:
        regex, check = _constraint(spec, template)
        if regex is not None:
            pattern = regex
        if check is not None:
            checks.append(check)
    return Parameter(
        name=name,
        optional=optional or default is not None or catch_all,
        default=default,
        catch_all=catch_all,
        pattern=pattern,
        checks=tuple(checks),
    )


@dataclass(frozen=True)
class RouteTemplate:
    """A compiled template; ``match`` returns the route parameters or None."""

    template: str
    regex: re.Pattern[str]
    parameters: tuple[Parameter, ...]
    literal_segments: int

    @classmethod
    def compile(cls, template: str, prefix: str = "") -> RouteTemplate:
        full = "/".join(part.strip("/") for part in (prefix, template) if part.strip("/"))
        if full.count("{") != full.count("}"):
            raise RouteTemplateError(f"route {template!r}: unbalanced braces")
        parts = ["^"]
        params: list[Parameter] = []
        literal = 0
        for segment in full.split("/") if full else []:
            whole = _PARAM.fullmatch(segment)
            if whole is not None:
                param = _parameter(whole.group(1), template)
                params.append(param)
                group = f"(?P<{param.name}>{param.pattern})"
                parts.append(f"(?:/{group})?" if param.optional else f"/{group}")
                continue
            literal += 1 if _PARAM.search(segment) is None else 0
            pieces, pos = ["/"], 0
            for found in _PARAM.finditer(segment):
                pieces.append(re.escape(segment[pos : found.start()]))
                param = _parameter(found.group(1), template)
                params.append(param)
                pieces.append(f"(?P<{param.name}>{param.pattern})")
                pos = found.end()
            pieces.append(re.escape(segment[pos:]))
            parts.append("".join(pieces))
        parts.append("/?$")
        return cls(
            template=template,
            regex=re.compile("".join(parts), re.IGNORECASE),
            parameters=tuple(params),
            literal_segments=literal,
        )

    def match(self, path: str) -> dict[str, str] | None:
        found = self.regex.match(path)
        if found is None:
            return None
        values: dict[str, str] = {}
        for param in self.parameters:
            value = found.group(param.name)
            if value is None or value == "":
                if param.default is not None:
                    values[param.name] = param.default
                continue
            if not all(check(value) for check in param.checks):
                return None
            values[param.name] = value
        return values

    @property
    def precedence(self) -> tuple[int, int, int]:
        """Sort key: more literal segments first, catch-alls last (the host prefers specific routes)."""
        catch_all = any(p.catch_all for p in self.parameters)
        return (-self.literal_segments, int(catch_all), len(self.parameters))
