"""URL parameters of the users/mail API: everything odd is a 400 (InvalidInputError), never a crash."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.api.params import PageRequest, encode_cursor, parse_page_request, parse_top, parse_user_id
from shared.errors import InvalidInputError


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


def test_a_cursor_round_trips() -> None:
    """A cursor we issued gives back the same page request."""
    page = PageRequest(top=7, fields=("id", "subject"), skip=14)
    assert parse_page_request({"cursor": encode_cursor(page)}) == page


@pytest.mark.parametrize("raw", ["\u00b2", "\u0661\u0660", "\uff11\uff10", "1e2", " 5", "5 ", "0", "101", "-1"])
def test_odd_page_sizes_are_rejected(raw: str) -> None:
    """Unicode digits, exponents, spaces and out-of-range values are 400s."""
    with pytest.raises(InvalidInputError):
        parse_top(raw)
