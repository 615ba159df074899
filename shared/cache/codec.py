"""Values ↔ Table properties: canonical JSON, zlib when it pays, split into ≤ 64 KiB binary properties.

Table Storage caps a binary property at 64 KiB and an entity at 1 MiB (the size counts binary bytes,
plus 8 bytes and twice the name per property). ``MAX_CHUNKS`` chunks of 64 KiB leave well over 60 KiB of
that budget for keys and metadata, so anything this module accepts is a valid entity; anything larger
raises ``ValueTooLargeError`` and the manager simply does not cache it.

JSON is canonical (sorted keys, no spaces) so equal values give equal bytes on every instance, and the
content hash of those bytes can serve as an HTTP ETag.
"""

from __future__ import annotations

import hashlib
import json
import zlib
from typing import Any

CHUNK_BYTES = 64 * 1024
MAX_CHUNKS = 15
MAX_STORED_BYTES = CHUNK_BYTES * MAX_CHUNKS
CHUNK_PREFIX = "D"
CODEC_PROPERTY = "Codec"
SIZE_PROPERTY = "Size"
CHUNKS_PROPERTY = "Chunks"
ZLIB_LEVEL = 6


class ValueTooLargeError(ValueError):
    """The value does not fit one entity even after compression."""

    def __init__(self, size: int) -> None:
        super().__init__(f"{size} bytes after compression exceed the {MAX_STORED_BYTES} bytes an entity can hold")
        self.size = size


class CorruptEntryError(ValueError):
    """A stored row does not decode (written by a different version, or damaged)."""


def encode_json(value: Any) -> bytes:
    """Canonical UTF-8 JSON; raises ``TypeError``/``ValueError`` for values JSON cannot carry (NaN too)."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    return text.encode("utf-8", "surrogatepass")


def decode_json(payload: bytes) -> Any:
    return json.loads(payload.decode("utf-8", "surrogatepass"))


def content_hash(payload: bytes) -> str:
    """128 bits of SHA-256 as hex: stable across instances, short enough for an ETag header."""
    return hashlib.sha256(payload).hexdigest()[:32]


def pack(payload: bytes, *, compress_min_bytes: int) -> dict[str, Any]:
    """The Table properties holding ``payload``; zlib is used only when it makes the data smaller."""
    codec, data = "json", payload
    if len(payload) >= compress_min_bytes:
        compressed = zlib.compress(payload, ZLIB_LEVEL)
        if len(compressed) < len(payload):
            codec, data = "zlib", compressed
    if len(data) > MAX_STORED_BYTES:
        raise ValueTooLargeError(len(data))
    chunks = [data[i : i + CHUNK_BYTES] for i in range(0, len(data), CHUNK_BYTES)] or [b""]
    properties: dict[str, Any] = {CODEC_PROPERTY: codec, SIZE_PROPERTY: len(payload), CHUNKS_PROPERTY: len(chunks)}
    properties.update({f"{CHUNK_PREFIX}{i}": chunk for i, chunk in enumerate(chunks)})
    return properties


def unpack(properties: Any) -> bytes:
    """The payload ``pack`` stored; ``CorruptEntryError`` if anything does not add up."""
    try:
        codec = properties[CODEC_PROPERTY]
        size = int(properties[SIZE_PROPERTY])
        count = int(properties[CHUNKS_PROPERTY])
        data = b"".join(bytes(properties[f"{CHUNK_PREFIX}{i}"]) for i in range(count))
    except (KeyError, TypeError, ValueError) as exc:
        raise CorruptEntryError(f"missing or malformed property: {exc}") from exc
    if codec == "zlib":
        try:
            # Bounded: a damaged row must not inflate beyond the size it claims.
            inflater = zlib.decompressobj()
            payload = inflater.decompress(data, size + 1)
        except zlib.error as exc:
            raise CorruptEntryError(f"zlib: {exc}") from exc
    elif codec == "json":
        payload = data
    else:
        raise CorruptEntryError(f"unknown codec {codec!r}")
    if len(payload) != size:
        raise CorruptEntryError(f"payload is {len(payload)} bytes, expected {size}")
    return payload
