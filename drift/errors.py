"""Errors raised by the drift and model-quality monitors.

    WatchloopError                  (telemetry.errors)
    └── DriftError                  anything a monitor could not do
        ├── ProfileError            a reference profile cannot be built or is malformed
        ├── ProfileNotFoundError    no reference profile for a model version (as of a time)
        └── ReportError             an on-demand Evidently report cannot be produced

Store failures surface as ``telemetry.StoreError`` unchanged.
"""

from __future__ import annotations

from telemetry.errors import WatchloopError


class DriftError(WatchloopError):
    """A drift, quality or SLO monitor could not carry out a request."""


class ProfileError(DriftError):
    """A reference profile cannot be built from the given data, or is malformed."""


class ProfileNotFoundError(DriftError):
    """No reference profile is stored for a model version (as of the time asked)."""


class ReportError(DriftError):
    """An on-demand Evidently report cannot be produced."""
