"""``Secret``: a string that must not leak, kept apart so storage rows and webhooks need not import settings."""

from __future__ import annotations


class Secret:
    """A setting value that must not leak: ``repr``/``str`` hide it; ``reveal()`` is the only way in."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('**********')"

    __str__ = __repr__
