"""SLO burn-rate alerting: the multiwindow, multi-burn-rate conditions (SRE workbook, ch. 5).

The monitors (``drift.slo``) compute and store an SLO's burn rates over the windows of its
``burn_windows``; whether those burn fast enough to page is alerting's call, made here:
``burn_alerts`` judges an ``SLOStatus`` at once, and ``slo_rules`` turns each burn window of
each SLO into a ``burn_rate`` rule the evaluator runs over the stored rates (so backtests,
silences and routing apply to them like to any rule).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta

from drift.settings import SLOSettings, window_label
from drift.slo import SLOStatus

from .rules import Rule


@dataclass(frozen=True)
class BurnAlert:
    """A multiwindow burn-rate condition and whether it holds."""

    severity: str
    long: timedelta
    short: timedelta
    factor: float
    long_burn: float | None
    short_burn: float | None

    @property
    def firing(self) -> bool:
        """Both windows burn faster than the factor (never without traffic in both)."""
        return (self.long_burn is not None and self.short_burn is not None
                and self.long_burn > self.factor and self.short_burn > self.factor)


def burn_alerts(status: SLOStatus) -> tuple[BurnAlert, ...]:
    """Each burn window's condition of an SLO, judged on its status."""
    return tuple(
        BurnAlert(b.severity, b.long, b.short, b.factor, status.burn(b.long).burn_rate,
                  status.burn(b.short).burn_rate)
        for b in status.slo.burn_windows
    )


def slo_rules(slos: Iterable[SLOSettings]) -> list[Rule]:
    """One ``burn_rate`` rule per burn window of each SLO, named
    ``<slo>:burn:<long>/<short>``, with the window's severity."""
    rules = []
    for slo in slos:
        for b in slo.burn_windows:
            rules.append(Rule.model_validate({
                "name": f"{slo.name}:burn:{window_label(b.long)}-{window_label(b.short)}",
                "severity": b.severity if b.severity in ("page", "ticket", "info") else "page",
                "labels": {"slo": slo.name},
                # a quiet window has no burn rate: not a page, as the workbook's alerts
                "no_data": "ok",
                "annotations": {"summary": f"SLO {slo.name} burns its error budget faster "
                                           f"than {b.factor:g}x over {window_label(b.long)} "
                                           f"and {window_label(b.short)}"},
                "burn_rate": {"slo": slo.name, "long": b.long, "short": b.short,
                              "factor": b.factor, "model": slo.model, "version": slo.version},
            }))
    return rules
