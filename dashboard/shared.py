"""The store a console in this process reads, handed over by the shell.

Kept apart from ``dashboard.data`` so that setting it imports nothing of Streamlit before
Streamlit's runtime exists.
"""

from __future__ import annotations

from telemetry import Store

STORE_URL_ENV = "WATCHLOOP_STORE_URL"
_store: Store | None = None


def use_store(store: Store | None) -> None:
    """Make consoles in this process read ``store`` (an embedded store has one owner)."""
    global _store
    _store = store


def shared_store() -> Store | None:
    """The store handed over by the shell, if any."""
    return _store
