"""Which notification data may replace a cached message: only a complete, strictly newer version."""

from __future__ import annotations

from typing import Any

from shared.api.params import MESSAGE_RESOURCE_FIELDS
from shared.directory import newer_message, shape_message


def message(modified: Any, subject: str = "s") -> dict[str, Any]:
    data: dict[str, Any] = dict.fromkeys(MESSAGE_RESOURCE_FIELDS)
    data.update(id="m1", subject=subject, lastModifiedDateTime=modified, **{"@odata.etag": 'W/"x"'})
    return data


def test_a_newer_version_replaces_an_older_or_missing_one() -> None:
    replaces = newer_message(message("2026-12-02T10:00:01Z"))
    assert replaces(None)
    assert replaces(shape_message(message("2026-12-02T10:00:00Z")))
    assert replaces(shape_message(message("2026-12-02T09:00:00.5+00:00")))  # other formats compare as times


def test_an_older_or_ambiguous_version_does_not() -> None:
    assert not newer_message(message("2026-12-02T10:00:00Z"))(shape_message(message("2026-12-02T10:00:01Z")))
    same_second = newer_message(message("2026-12-02T10:00:01Z", subject="other"))
    assert not same_second(shape_message(message("2026-12-02T10:00:01Z")))
    assert newer_message(message("2026-12-02T10:00:01Z"))(shape_message(message("2026-12-02T10:00:01Z")))


def test_data_without_a_usable_version_or_a_served_field_never_replaces() -> None:
    for bad in (None, "", "yesterday", "2026-12-02T10:00:00", 12, "9" * 100):
        assert not newer_message(message(bad))(None)
    incomplete = message("2026-12-02T10:00:00Z")
    del incomplete["bodyPreview"]
    assert not newer_message(incomplete)(None)


def test_the_cached_shape_keeps_only_the_served_fields() -> None:
    assert list(shape_message(message("2026-12-02T10:00:00Z"))) == list(MESSAGE_RESOURCE_FIELDS)
