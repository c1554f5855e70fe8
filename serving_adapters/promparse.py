"""Read samples from a Prometheus text exposition (TorchServe's and Triton's /metrics)."""

from __future__ import annotations

from collections.abc import Iterator

from telemetry.extras import require

__all__ = ["samples"]


def samples(text: str) -> Iterator[tuple[str, dict[str, str], float]]:
    """Each sample as ``(name, labels, value)``."""
    parser = require("prometheus_client.parser", "reading server metrics")
    for family in parser.text_string_to_metric_families(text):
        for sample in family.samples:
            yield sample.name, dict(sample.labels), float(sample.value)
