"""A rule's samples at given steps, whatever its kind, and the fingerprint of each alert."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import datetime

from telemetry import Store

from .rules import Rule
from .series import Labels, Samples, burn_samples, query_samples, threshold_samples


def rule_samples(store: Store, rule: Rule, steps: Sequence[datetime]) -> Samples:
    """The rule's value per label set at each of ``steps`` (evenly spaced by its interval
    for query rules), in one query."""
    if rule.threshold is not None:
        return threshold_samples(store, rule.threshold.series, steps)
    if rule.burn_rate is not None:
        return burn_samples(store, rule.burn_rate, steps)
    assert rule.query is not None
    return query_samples(store, rule.query, steps[0], rule.interval, len(steps))


def alert_labels(rule: Rule, labels: Labels) -> dict[str, str]:
    """The labels an alert of ``rule`` carries: its series' and the rule's own."""
    return {**dict(labels), **rule.labels, "alertname": rule.name, "severity": rule.severity}


def fingerprint(rule: Rule, labels: Labels) -> str:
    """One alert per rule and label set, named the same in every process."""
    text = "\x00".join(f"{k}={v}" for k, v in sorted(alert_labels(rule, labels).items()))
    return hashlib.blake2b(text.encode(), digest_size=8).hexdigest()
