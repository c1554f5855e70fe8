"""Split one transport message into records.

A Kafka message or Redis stream entry may carry one JSON record, a JSON array of records, or
JSON Lines: several records per message amortise the per-message cost of the Python clients
(kafka-python decodes only a few thousand messages a second). A message that is not valid as
a whole array is kept whole, so it is dead-lettered with its reason rather than lost.
"""

from __future__ import annotations

import json
from typing import Any


def split_message(value: bytes | str | None) -> list[Any]:
    """The records in one message: raw JSON text per record, or parsed objects of an array."""
    if value is None:
        return [b""]
    stripped = value.strip()
    if stripped[:1] in (b"[", "["):
        try:
            parsed = json.loads(stripped)
        except ValueError:
            return [value]
        return parsed if isinstance(parsed, list) and parsed else [value]
    newline = b"\n" if isinstance(stripped, bytes) else "\n"
    if newline in stripped:
        return [line for line in stripped.split(newline) if line.strip()]
    return [value]
