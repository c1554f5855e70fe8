"""What a console in this process reads and acts through, handed over by the shell.

Kept apart from ``dashboard.data`` so that setting it imports nothing of Streamlit before
Streamlit's runtime exists. Under ``watchloop up`` the shell hands over its store (an embedded
store has one owner), its alert rules and SLOs, and its API's address; a console run on its
own (``streamlit run dashboard/app.py``) reads ``$WATCHLOOP_STORE_URL``, ``$WATCHLOOP_CONFIG``
and ``$WATCHLOOP_API_URL`` instead.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from telemetry import Store

STORE_URL_ENV = "WATCHLOOP_STORE_URL"
API_URL_ENV = "WATCHLOOP_API_URL"


@dataclass(frozen=True)
class ConsoleSettings:
    """What the console knows of the deployment beyond the store."""

    rules: tuple[Any, ...] = ()  # alerts.rules.Rule: status colours and "why it fired"
    slos: tuple[Any, ...] = ()  # drift.settings.SLOSettings: latency thresholds, objectives
    api_url: str | None = None  # where actions (acknowledge, silence, roll back) are sent
    token_required: bool = False  # the API asks for a bearer token on changes
    refresh: str = "30s"  # how often pages refresh themselves: off, 10s, 30s, 1m, 5m
    models: tuple[str, ...] = field(default=())  # configured models, shown even without data
    mlflow_uri: str | None = None  # the feedback loop's tracking server: versions' runs


_store: Store | None = None
_settings: ConsoleSettings | None = None


def use_store(store: Store | None) -> None:
    """Make consoles in this process read ``store`` (an embedded store has one owner)."""
    global _store
    _store = store


def shared_store() -> Store | None:
    """The store handed over by the shell, if any."""
    return _store


def use_settings(settings: ConsoleSettings | None) -> None:
    """Make consoles in this process use ``settings`` (rules, SLOs, the API's address)."""
    global _settings
    _settings = settings


def shared_settings() -> ConsoleSettings | None:
    """The settings handed over by the shell, if any."""
    return _settings
