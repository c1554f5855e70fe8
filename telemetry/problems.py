"""Raise a settings problem at the key it is about, from a pydantic model validator.

A check that spans several keys (two collectors with one name, a SASL mechanism without a
user) runs after the fields are validated, where pydantic would blame the whole section; this
blames the key, so ``watchloop config check`` prints the line a user has to change.
"""

from __future__ import annotations

from collections.abc import Sequence
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
