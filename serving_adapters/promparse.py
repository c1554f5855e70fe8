"""Read samples from a Prometheus text exposition (TorchServe's and Triton's /metrics)."""

from __future__ import annotations

from collections.abc import Iterator

from telemetry.extras import require

__all__ = ["samples"]


def samples(text: str) -> Iterator[tuple[str, dict[str, str], float]]:
    """Each sample as ``(name, labels, value)``; a counter's samples are named as the server
    wrote the counter (the parser appends ``_total`` to names that lack it)."""
    parser = require("prometheus_client.parser", "reading server metrics")
    for family in parser.text_string_to_metric_families(text):
        for sample in family.samples:
            name = sample.name
            if family.type == "counter" and name == f"{family.name}_total":
                name = family.name
            yield name, dict(sample.labels), float(sample.value)
