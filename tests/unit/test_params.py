"""URL parameters of the users/mail API: everything odd is a 400 (InvalidInputError), never a crash."""

from __future__ import annotations

import base64
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.api.params import (
    PageRequest,
    encode_cursor,
    is_continuation,
    parse_message_id,
    parse_page_request,
    parse_top,
    parse_user_id,
)
from shared.errors import InvalidInputError


@pytest.mark.parametrize(
    "raw", [None, "", "a/b", "..", "a b", "m%2F1", "m\x00", "ﾑ", "m?x=1", "m#f", "x" * 513, "m.1", "m'1"]
)
def test_message_ids_outside_graphs_alphabet_are_400(raw: str | None) -> None:
    with pytest.raises(InvalidInputError):
        parse_message_id(raw)


def test_a_graph_message_id_is_kept_exactly() -> None:
    raw = "AAMkAGI2TG93AAA-T_x=" + "A" * 120
    assert parse_message_id(raw) == raw


@given(st.text(max_size=50))
def test_top_is_a_number_from_1_to_100_or_a_400(raw: str) -> None:
    """Any text: either a page size in range or InvalidInputError (Unicode digits like '²' included)."""
    try:
        value = parse_top(raw)
    except InvalidInputError:
        return
    assert 1 <= value <= 100


@given(st.text(max_size=300))
def test_user_ids_are_guids_or_upns_or_a_400(raw: str) -> None:
    """Any text: a normalized GUID/UPN without path or control characters, or InvalidInputError."""
    try:
        user = parse_user_id(raw)
    except InvalidInputError:
        return
    assert not set(user.value) & set("/\\%?\x00\r\n")


@given(st.dictionaries(st.sampled_from(["top", "cursor", "fields"]), st.text(max_size=600)))
def test_page_requests_never_fail_otherwise(params: dict[str, str]) -> None:
    """Arbitrary top/cursor/fields combinations parse or raise InvalidInputError, nothing else."""
    try:
        page = parse_page_request(params)
    except InvalidInputError:
        return
    assert 1 <= page.top <= 100


MAILBOX = "6f1c2d3e-4a5b-4c6d-8e9f-0a1b2c3d4e5f"
SKIPTOKEN_QUERY = "%24top=7&%24skiptoken=eyJvIjo1fn5%2B%2Fz8%3D&%24orderby=receivedDateTime+desc"


def _raw_cursor(data: dict[str, object]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")


def test_a_cursor_round_trips() -> None:
    """A cursor we issued gives back the same page request, nextLink query untouched."""
    page = PageRequest(top=7, fields=("id", "subject"), continuation=SKIPTOKEN_QUERY, mailbox=MAILBOX)
    assert parse_page_request({"cursor": encode_cursor(page)}) == page


def test_a_version_1_cursor_still_works() -> None:
    """Cursors issued before v2 ($skip only) keep paging."""
    cursor = _raw_cursor({"v": 1, "s": 14, "t": 7, "f": ["id", "subject"]})
    assert parse_page_request({"cursor": cursor}) == PageRequest(top=7, fields=("id", "subject"), skip=14)


@pytest.mark.parametrize(
    "query",
    [
        "%24skiptoken=abc&%24expand=attachments",  # an option we never follow
        "%24skiptoken=abc&%24skip=5",  # two positions
        "%24top=7",  # no position
        "%24skiptoken=a#frag",
        "%24skiptoken=a b",
        "https://evil.example/v1.0/users/x/messages?%24skiptoken=a",  # not a query
        "%24skiptoken=a&%24skiptoken=b",
        "%24skiptoken=" + "a" * 3000,
    ],
)
def test_a_cursor_cannot_carry_anything_but_a_paging_query(query: str) -> None:
    """Forged continuations (other options, fragments, spaces, URLs, duplicates, huge ones) are 400s."""
    assert not is_continuation(query)
    cursor = _raw_cursor({"v": 2, "q": query, "u": MAILBOX, "t": 7, "f": ["id"]})
    with pytest.raises(InvalidInputError):
        parse_page_request({"cursor": cursor})


@pytest.mark.parametrize("mailbox", [None, "alice@contoso.com", MAILBOX.upper(), "../" + MAILBOX])
def test_a_version_2_cursor_names_its_mailbox_by_guid(mailbox: str | None) -> None:
    """The mailbox a cursor belongs to is a lower-case guid (compared with the request's later)."""
    cursor = _raw_cursor({"v": 2, "q": SKIPTOKEN_QUERY, "u": mailbox, "t": 7, "f": ["id"]})
    with pytest.raises(InvalidInputError):
        parse_page_request({"cursor": cursor})


def test_cursors_of_unknown_versions_are_400() -> None:
    """A cursor from the future (or a forged version) is rejected rather than guessed at."""
    with pytest.raises(InvalidInputError):
        parse_page_request({"cursor": _raw_cursor({"v": 3, "q": SKIPTOKEN_QUERY, "u": MAILBOX, "t": 7, "f": []})})


@pytest.mark.parametrize("raw", ["\u00b2", "\u0661\u0660", "\uff11\uff10", "1e2", " 5", "5 ", "0", "101", "-1"])
def test_odd_page_sizes_are_rejected(raw: str) -> None:
    """Unicode digits, exponents, spaces and out-of-range values are 400s."""
    with pytest.raises(InvalidInputError):
        parse_top(raw)
