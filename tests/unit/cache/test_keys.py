"""Any text, however hostile, yields valid Table keys; distinct inputs never share a row."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.cache.keys import CacheKey, group_address
from tests.unit.cache.fakes import assert_valid_key

HOSTILE = st.one_of(
    st.text(),
    st.text(alphabet=st.sampled_from(["/", "\\", "#", "?", "\x00", "\x1f", "\x7f", "\x9f", "'", "%", "a"])),
    st.text(min_size=1, max_size=40).map(lambda s: (s * 10_000)[:10_000]),  # 10 KB of hostile text
    st.text(alphabet=st.characters(blacklist_categories=())),  # includes lone surrogates
)


@settings(max_examples=200)
@given(key=HOSTILE, group=HOSTILE)
def test_keys_from_any_text_are_valid_table_keys(key: str, group: str) -> None:
    """Slashes, ``#``/``?``, control characters, surrogates and 10 KB strings all map to short valid keys."""
    cache_key = CacheKey("users", key, group)
    for table_key in (cache_key.partition_key, cache_key.value_row_key, cache_key.lease_row_key):
        assert_valid_key(table_key)
        assert len(table_key) <= 80
    address = group_address(group)
    assert_valid_key(address.partition_key)
    assert_valid_key(address.row_key)


def test_distinct_namespaces_and_keys_get_distinct_rows() -> None:
    """Concatenation cannot collide two keys, and a namespace is part of the identity."""
    rows = {
        CacheKey("ab", "c").value_row_key,
        CacheKey("a", "bc").value_row_key,
        CacheKey("users", "x").value_row_key,
        CacheKey("mail", "x").value_row_key,
    }
    assert len(rows) == 4


def test_group_does_not_change_where_a_value_lives() -> None:
    """The group is what a value is validated against, not part of its address."""
    assert CacheKey("users", "x", "g1").value_row_key == CacheKey("users", "x", None).value_row_key


def test_keys_of_a_namespace_spread_over_hash_prefixed_partitions() -> None:
    """A thousand keys of one namespace use most of its 256 partitions (Table throughput is per partition)."""
    partitions = {CacheKey("users", str(i)).partition_key for i in range(1000)}
    assert all(p.startswith("users.") for p in partitions)
    assert len(partitions) > 200


@pytest.mark.parametrize("namespace", ["", "Users", "a/b", "~gen", "x" * 41, "1abc"])
def test_namespaces_are_validated_not_escaped(namespace: str) -> None:
    """Namespaces are code constants: a bad one is a programming error, reported at once."""
    with pytest.raises(ValueError, match="namespace"):
        CacheKey(namespace, "k")
