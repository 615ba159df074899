"""Route templates match the way the host's ASP.NET routing does for the syntax we use."""

from __future__ import annotations

import pytest

from devtools.funchost.routes import RouteTemplate, RouteTemplateError


def test_parameters_are_captured_under_the_prefix() -> None:
    """'users/{user_id}' under prefix 'api' captures the id; other paths do not match."""
    route = RouteTemplate.compile("users/{user_id}", "api")
    assert route.match("/api/users/42") == {"user_id": "42"}
    assert route.match("/api/users/42/") == {"user_id": "42"}
    assert route.match("/users/42") is None
    assert route.match("/api/users") is None
    assert route.match("/api/users/1/mail") is None


def test_literals_match_case_insensitively() -> None:
    """ASP.NET routing ignores case in literal segments."""
    assert RouteTemplate.compile("Users/{id}", "api").match("/API/users/x") == {"id": "x"}


def test_optional_and_default_parameters() -> None:
    """'{id?}' may be absent (not in the params); '{page=1}' takes its default when absent."""
    optional = RouteTemplate.compile("items/{id?}", "api")
    assert optional.match("/api/items") == {}
    assert optional.match("/api/items/9") == {"id": "9"}
    default = RouteTemplate.compile("list/{page=1}", "")
    assert default.match("/list") == {"page": "1"}
    assert default.match("/list/3") == {"page": "3"}


@pytest.mark.parametrize(
    ("template", "good", "bad"),
    [
        ("n/{id:int}", "/n/-12", "/n/1.5"),
        ("n/{id:guid}", "/n/3f2504e0-4f89-11d3-9a0c-0305e82c3301", "/n/not-a-guid"),
        ("n/{flag:bool}", "/n/True", "/n/yes"),
        ("n/{name:alpha}", "/n/abc", "/n/abc1"),
        ("n/{id:int:min(1)}", "/n/1", "/n/0"),
        ("n/{id:range(1,5)}", "/n/5", "/n/6"),
        ("n/{code:length(3)}", "/n/abc", "/n/abcd"),
        ("n/{code:regex(^[a-z]+$)}", "/n/ab", "/n/ab1"),
    ],
)
def test_constraints_filter_values(template: str, good: str, bad: str) -> None:
    """Type and value constraints decide whether a segment matches."""
    route = RouteTemplate.compile(template)
    assert route.match(good) is not None
    assert route.match(bad) is None


def test_catch_all_takes_the_rest_of_the_path() -> None:
    """'{*rest}' captures the remaining segments, slashes included, and may be empty."""
    route = RouteTemplate.compile("files/{*rest}", "api")
    assert route.match("/api/files/a/b/c.txt") == {"rest": "a/b/c.txt"}
    assert route.match("/api/files") == {}


def test_specific_routes_sort_before_parameterised_ones() -> None:
    """'users/me' is preferred to 'users/{id}', and catch-alls come last."""
    routes = [RouteTemplate.compile(t, "api") for t in ("{*any}", "users/{id}", "users/me")]
    ordered = sorted(routes, key=lambda r: r.precedence)
    assert [r.template for r in ordered] == ["users/me", "users/{id}", "{*any}"]


def test_mixed_segments_and_unknown_constraints() -> None:
    """A segment may mix literals and parameters; an unknown constraint is accepted and ignored."""
    assert RouteTemplate.compile("v{major}.{minor}").match("/v1.2") == {"major": "1", "minor": "2"}
    assert RouteTemplate.compile("x/{id:nonsense}").match("/x/anything") == {"id": "anything"}


def test_unbalanced_braces_are_rejected() -> None:
    with pytest.raises(RouteTemplateError):
        RouteTemplate.compile("users/{id")
