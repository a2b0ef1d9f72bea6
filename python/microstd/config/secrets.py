"""Secret values: strings that never print their content.

A `Secret` is a `str` subclass, so a secret password can be handed to any
client library that wants a string, while `repr()`, `str()`, `format()` and
`%s` show `'**********'`. Values from `secrets_dir()`, `vault()` and keys
listed in `load(secret_keys=...)` are wrapped in it.
"""

from __future__ import annotations

from typing import Any

__all__ = ["MASK", "Secret", "mask", "reveal"]

MASK = "**********"


class Secret(str):
    """A string whose content never appears in reprs, logs or messages.

    Compare it, encode it or pass it on as a normal string; call
    `reveal()` (or `get_secret_value()`, pydantic's spelling) for a plain
    `str` when you need to print-debug it deliberately.
    """

    __slots__ = ()

    def __repr__(self) -> str:
        return repr(MASK)

    def __str__(self) -> str:
        return MASK

    def __format__(self, spec: str) -> str:
        return format(MASK, spec)

    def reveal(self) -> str:
        """The plain string content."""
        return str.__str__(self)

    def get_secret_value(self) -> str:
        """The plain string content (the name pydantic's `SecretStr` uses)."""
        return self.reveal()


def reveal(value: Any) -> Any:
    """`value` with a `Secret` turned back into a plain `str` (other values unchanged)."""
    return value.reveal() if isinstance(value, Secret) else value


def mask(value: Any, secret: bool) -> str:
    """The repr of `value` for a message, or the mask when it is secret."""
    if secret or isinstance(value, Secret):
        return repr(MASK)
    return repr(value)
