"""Values survive the trip to Table properties at every size up to one entity; beyond that, a clean refusal."""

from __future__ import annotations

import base64
import os
import zlib

import pytest

from shared.cache.codec import (
    CHUNK_BYTES,
    MAX_STORED_BYTES,
    CorruptEntryError,
    ValueTooLargeError,
    content_hash,
    decode_json,
    encode_json,
    pack,
    unpack,
)

ENTITY_LIMIT = 1024 * 1024


def entity_size(properties: dict[str, object], key_chars: int = 200) -> int:
    """Table Storage's documented size formula (4 + keys*2 + per property 8 + name*2 + value)."""
    size = 4 + key_chars * 2
    for name, value in properties.items():
        if isinstance(value, bytes):
            value_size = len(value) + 4
        elif isinstance(value, str):
            value_size = len(value) * 2 + 4
        else:
            value_size = 8
        size += 8 + len(name) * 2 + value_size
    return size


def test_small_value_round_trips_uncompressed_in_one_property() -> None:
    """Small JSON is stored as is: compressing a few bytes costs more than it saves."""
    payload = encode_json({"id": "alice", "mail": "alice@contoso.com", "n": 1})
    properties = pack(payload, compress_min_bytes=1024)
    assert properties["Codec"] == "json"
    assert properties["Chunks"] == 1
    assert unpack(properties) == payload


def test_large_compressible_value_is_compressed_and_round_trips() -> None:
    """A 900 KB page of repetitive JSON shrinks to far below one chunk and decodes to the same value."""
    value = {"value": [{"id": str(i), "subject": "Quarterly report", "isRead": False} for i in range(16_000)]}
    payload = encode_json(value)
    assert len(payload) > 900_000
    properties = pack(payload, compress_min_bytes=1024)
    assert properties["Codec"] == "zlib"
    assert properties["Chunks"] <= 2
    assert decode_json(unpack(properties)) == value


def test_incompressible_900_kb_is_split_into_64_kib_binary_properties_within_one_entity() -> None:
    """Random bytes do not compress, so they are stored raw, split into ≤ 64 KiB chunks, under 1 MiB."""
    payload = os.urandom(900 * 1024)
    properties = pack(payload, compress_min_bytes=1024)
    assert properties["Codec"] == "json"  # zlib did not make it smaller
    chunks = [v for k, v in properties.items() if k.startswith("D")]
    assert len(chunks) == properties["Chunks"] == 15
    assert all(isinstance(c, bytes) and len(c) <= CHUNK_BYTES for c in chunks)
    assert entity_size({**properties, "Kind": "value", "Hash": "h" * 32, "Generation": "g" * 16}) < ENTITY_LIMIT
    assert unpack(properties) == payload


def test_random_text_of_900_kb_round_trips_as_json() -> None:
    """JSON of random (base64) text, as a large attachment-like value would be, round-trips intact."""
    value = {"blob": base64.b64encode(os.urandom(675_000)).decode()}
    payload = encode_json(value)
    assert len(payload) > 900_000
    assert decode_json(unpack(pack(payload, compress_min_bytes=1024))) == value


def test_the_largest_accepted_payload_still_fits_an_entity() -> None:
    """The limit leaves room for metadata: the biggest value we accept is a valid entity."""
    properties = pack(os.urandom(MAX_STORED_BYTES), compress_min_bytes=1024)
    metadata = {"Kind": "negative", "Hash": "h" * 32, "Generation": "g" * 16, "FetchedAt": 0.0, "ExpiresAt": 0.0}
    assert entity_size({**properties, **metadata}, key_chars=100) < ENTITY_LIMIT


def test_value_beyond_one_entity_is_refused_with_its_size() -> None:
    """One byte more than fits (after compression) raises ``ValueTooLargeError``, nothing is truncated."""
    with pytest.raises(ValueTooLargeError) as refused:
        pack(os.urandom(MAX_STORED_BYTES + 1), compress_min_bytes=1024)
    assert refused.value.size == MAX_STORED_BYTES + 1


def test_equal_values_get_equal_bytes_and_hash_whatever_the_key_order() -> None:
    """Canonical JSON makes the content hash an ETag every instance agrees on."""
    a = encode_json({"b": 1, "a": [1, 2], "ü": "é"})
    b = encode_json({"ü": "é", "a": [1, 2], "b": 1})
    assert a == b
    assert content_hash(a) == content_hash(b)
    assert content_hash(a) != content_hash(encode_json({"b": 2, "a": [1, 2], "ü": "é"}))


def test_values_json_cannot_carry_are_rejected() -> None:
    """NaN and arbitrary objects raise instead of being stored as something else."""
    with pytest.raises(ValueError, match="JSON compliant"):
        encode_json({"x": float("nan")})
    with pytest.raises(TypeError):
        encode_json({"x": object()})


@pytest.mark.parametrize(
    "damage",
    [
        lambda p: p.pop("D0"),
        lambda p: p.update(Size=p["Size"] + 1),
        lambda p: p.update(Codec="brotli"),
        lambda p: p.update(D0=p["D0"][:-10]),
        lambda p: p.update(D0=zlib.compress(b"x" * 10_000_000)),
    ],
    ids=["missing-chunk", "wrong-size", "unknown-codec", "truncated", "inflates-beyond-size"],
)
def test_damaged_rows_raise_corrupt_entry(damage: object) -> None:
    """Any inconsistency is ``CorruptEntryError`` (read as a miss), never a wrong value or a zip bomb."""
    properties = pack(encode_json({"v": "x" * 5000}), compress_min_bytes=1024)
    damage(properties)  # type: ignore[operator]
    with pytest.raises(CorruptEntryError):
        unpack(properties)
