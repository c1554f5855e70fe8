"""Raise a settings problem at the key it is about, from a pydantic model validator.

A check that spans several keys (two collectors with one name, a SASL mechanism without a
user) runs after the fields are validated, where pydantic would blame the whole section; this
blames the key, so ``watchloop config check`` prints the line a user has to change.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from pydantic import ValidationError
from pydantic_core import InitErrorDetails, PydanticCustomError


def raise_at(title: str, problems: Sequence[tuple[tuple[str | int, ...], str, Any]]) -> None:
    """Raise a ``ValidationError`` with one ``(location, message, value)`` per problem."""
    if not problems:
        return
    raise ValidationError.from_exception_data(title, [
        InitErrorDetails(type=PydanticCustomError("settings_problem", message), loc=loc,
                         input=value)
        for loc, message, value in problems
    ])


def repeated_names(entries: Iterable[tuple[tuple[str | int, ...], str]], *, within: str = "",
                   hint: str = "") -> list[tuple[tuple[str | int, ...], str, Any]]:
    """A problem (for ``raise_at``) for each ``(location, name)`` whose name an earlier entry
    already has: "'x' is already the name of slos[0]" (``within`` prefixes where)."""
    first: dict[str, tuple[str | int, ...]] = {}
    problems = []
    for location, name in entries:
        if name in first:
            section, index = first[name][:2]
            problems.append((location, f"{name!r} is already the name of "
                             f"{within}{section}[{index}]{hint}", name))
        first.setdefault(name, location)
    return problems
