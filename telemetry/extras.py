"""Import an optional dependency, or say which extra of Watchloop installs it.

Watchloop's core needs only the store; collectors, the console, drift reports, alert sinks,
serving and the feedback loop each come with an extra (``pip install 'watchloop[console]'``).
``require`` is the one way a module imports such a dependency: where it is missing, the
error names the package and the extra, and it is a ``MissingExtraError`` that a collector
runner does not retry (installing a package is not a transient fault).
"""

from __future__ import annotations

import importlib
from types import ModuleType

from .errors import WatchloopError

#: The top-level module of each optional dependency: (extra, package to install).
EXTRAS: dict[str, tuple[str, str]] = {
    "kafka": ("collectors", "kafka-python"),
    "redis": ("collectors", "redis"),
    "pynvml": ("collectors", "nvidia-ml-py"),
    "streamlit": ("console", "streamlit"),
    "plotly": ("console", "plotly"),
    "evidently": ("drift", "evidently"),
    "scipy": ("drift", "scipy"),
    "datadog": ("alerts", "datadog"),
    "datadog_api_client": ("alerts", "datadog-api-client"),
    "torch": ("serving", "torch"),
    "tritonclient": ("serving", "tritonclient[http]"),
    "mlflow": ("feedback", "mlflow"),
}


class MissingExtraError(WatchloopError, ImportError):
    """An optional dependency is not installed; the message says how to install it."""


def install_hint(module: str) -> str:
    """How to install the package that provides ``module``."""
    extra, package = EXTRAS[module.split(".")[0]]
    return f"pip install 'watchloop[{extra}]' (or pip install {package})"


def require(module: str, purpose: str) -> ModuleType:
    """Import ``module`` (an optional dependency) for ``purpose``, or raise
    ``MissingExtraError`` naming what to install."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        top = module.split(".")[0]
        if exc.name is None or exc.name.split(".")[0] != top or top not in EXTRAS:
            raise  # something else is missing: a broken install, not an absent extra
        _, package = EXTRAS[top]
        raise MissingExtraError(f"{purpose} needs {package}, which is not installed: "
                                f"{install_hint(module)}") from exc
