"""The telemetry store: ClickHouse (chDB embedded by default) behind one small interface."""

from .asof import PointInTime
from .errors import (
    MigrationError,
    StoreError,
    StoreLockedError,
    StoreUnavailableError,
    WatchloopError,
)
from .ingest import IngestResult, TelemetryWriter
from .migrations import Migrator, bundled_migrations
from .records import InferenceLogRecord, LabelRecord, Rejection
from .store import Store, StoreLocation, open_store

__all__ = [
    "InferenceLogRecord",
    "IngestResult",
    "LabelRecord",
    "MigrationError",
    "Migrator",
    "PointInTime",
    "Rejection",
    "Store",
    "StoreError",
    "StoreLocation",
    "StoreLockedError",
    "StoreUnavailableError",
    "TelemetryWriter",
    "WatchloopError",
    "bundled_migrations",
    "open_store",
]
