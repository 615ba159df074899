"""Table keys derived from untrusted text are always valid and never collide across the two forms."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from shared.storage import safe_key

FORBIDDEN = set("/\\#?") | {chr(c) for c in range(0x20)} | {chr(c) for c in range(0x7F, 0xA0)}


@given(st.text(max_size=3000))
def test_safe_key_is_always_a_valid_table_key(text: str) -> None:
    """Whatever the input (slashes, control characters, 3,000 characters), the key is valid and ≤ 1 KiB."""
    key = safe_key(text)
    assert not FORBIDDEN & set(key)
    assert 0 < len(key.encode()) <= 1024


def test_readable_and_hashed_keys_do_not_collide() -> None:
    """A harmless id stays readable; a text that looks like a hashed key is itself hashed."""
    assert safe_key("alice@contoso.com") == "alice@contoso.com"
    hashed = safe_key("a/b")
    assert hashed.startswith("h-")
    assert safe_key(hashed) != hashed
