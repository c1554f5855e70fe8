"""Drift and model-quality monitors computed inside ClickHouse.

Reference profiles per model version (``ProfileBuilder``, ``ProfileRepository``), window
histograms over the reference edges in SQL (``WindowStatistics``), drift statistics in
agreement with Evidently 0.7 (``DriftMonitor``), quality from delayed labels
(``QualityMonitor``), latency, errors and SLO burn rates (``LatencyMonitor``, ``SLOMonitor``),
a scheduled runner that writes every result to the store (``MonitorRunner``), and an
on-demand Evidently HTML report (``EvidentlyReport``). ``drift.queries`` reads the results
back for the console; ``log_columns`` loads a DataFrame as inference logs (backfills).
"""

from .builder import ProfileBuilder
from .detector import ColumnDrift, DriftMonitor, DriftReport
from .errors import DriftError, ProfileError, ProfileNotFoundError, ReportError
from .frames import log_columns
from .histograms import ColumnRef, Histogram, ValueCounts, Window, WindowStatistics
from .profiles import (
    DATASET,
    LABEL,
    PREDICTION,
    CategoricalProfile,
    NumericProfile,
    ReferenceProfile,
)
from .quality import QualityMonitor, QualityReport
from .report import EvidentlyReport
from .repository import ProfileInfo, ProfileRepository
from .results import ResultWriter, latest_metrics
from .runner import MonitorRunner, RunSummary
from .settings import (
    DEFAULT_THRESHOLDS,
    SRE_BURN_WINDOWS,
    BurnWindow,
    ColumnDriftSettings,
    DriftSettings,
    LatencySettings,
    ModelMonitorSettings,
    MonitorSettings,
    ProfileSettings,
    QualitySettings,
    SLOSettings,
)
from .slo import BurnRate, LatencyMonitor, SLOMonitor, SLOStatus, TrafficStats

__all__ = [
    "DATASET",
    "DEFAULT_THRESHOLDS",
    "LABEL",
    "PREDICTION",
    "SRE_BURN_WINDOWS",
    "BurnRate",
    "BurnWindow",
    "CategoricalProfile",
    "ColumnDrift",
    "ColumnDriftSettings",
    "ColumnRef",
    "DriftError",
    "DriftMonitor",
    "DriftReport",
    "DriftSettings",
    "EvidentlyReport",
    "Histogram",
    "LatencyMonitor",
    "LatencySettings",
    "ModelMonitorSettings",
    "MonitorRunner",
    "MonitorSettings",
    "NumericProfile",
    "ProfileBuilder",
    "ProfileError",
    "ProfileInfo",
    "ProfileNotFoundError",
    "ProfileRepository",
    "ProfileSettings",
    "QualityMonitor",
    "QualityReport",
    "QualitySettings",
    "ReferenceProfile",
    "ReportError",
    "ResultWriter",
    "RunSummary",
    "SLOMonitor",
    "SLOSettings",
    "SLOStatus",
    "TrafficStats",
    "ValueCounts",
    "Window",
    "WindowStatistics",
    "latest_metrics",
    "log_columns",
]
