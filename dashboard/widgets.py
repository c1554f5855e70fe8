"""What every page shares: the time range and the model picker (kept in the URL's query
parameters, so a link opens the same view), self-refresh, units and status badges."""

from __future__ import annotations

import functools
import logging
import math
from collections.abc import Callable
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

import pandas as pd
import streamlit as st

from telemetry.clock import utc, utc_now

from . import data
from .actions import ActionError, Actions
from .status import HEX, Status

log = logging.getLogger("watchloop.console")

RANGES: dict[str, int] = {"15m": 15, "1h": 60, "6h": 360, "24h": 1440, "7d": 10080}
RANGE_LABELS = {"15m": "Last 15 minutes", "1h": "Last hour", "6h": "Last 6 hours",
                "24h": "Last 24 hours", "7d": "Last 7 days"}
DEFAULT_RANGE = "1h"
REFRESH_CHOICES = {"off": None, "10s": 10, "30s": 30, "1m": 60, "5m": 300}


# --- the shared pickers (drawn once, by the app, for every page) ----------------------------

def _from_url(name: str, choices: list[str], default: str) -> str:
    value = st.query_params.get(name, default)
    return value if value in choices else default


def _remember(name: str) -> None:
    st.session_state[f"_{name}"] = st.session_state[f"picker-{name}"]


def _picker(name: str, label: str, choices: list[str], default: str, **kwargs: Any) -> str:
    """A sidebar selectbox whose choice lives in Session State (``_<name>``) and in the URL
    (``?<name>=``): the URL seeds it, and every page draws it at the same value (a widget
    drawn by another page is another widget to Streamlit, so its state is set anew)."""
    current = st.session_state.get(f"_{name}") or _from_url(name, choices, default)
    key = f"picker-{name}"
    st.session_state[key] = current if current in choices else default
    picked = st.sidebar.selectbox(label, choices, key=key, on_change=_remember, args=(name,),
                                  **kwargs)
    st.session_state[f"_{name}"] = picked
    st.query_params[name] = picked
    return picked


def shared_pickers() -> None:
    """Draw the time range, model and refresh pickers in the sidebar and keep them in the
    URL (``?range=1h&model=fraud&refresh=30s``)."""
    picked = _picker("range", "Time range", list(RANGES), DEFAULT_RANGE,
                     format_func=RANGE_LABELS.__getitem__)
    names = sorted(set(data.models(data.Span.last(RANGES[picked]))["model"]))
    if names:
        _picker("model", "Model", names, names[0])
    choices = list(REFRESH_CHOICES)
    configured = data.settings().refresh
    _picker("refresh", "Refresh every", choices, configured if configured in choices else "30s")


_DRAWN = "_shared_pickers_drawn"


def draw_shared() -> None:
    """Draw the sidebar shared by every page (the app does this before running a page)."""
    shared_pickers()
    identity()
    st.session_state[_DRAWN] = True


def page_setup(title: str) -> None:
    """A page's first call: its title, and the shared sidebar if the app did not draw it
    in this run (a page run on its own, as Streamlit's AppTest runs a switched-to page)."""
    if not st.session_state.pop(_DRAWN, False):
        guarded(draw_shared)()
        st.session_state.pop(_DRAWN, None)
    st.title(title)
    done = st.session_state.pop(_DONE, None)
    if done:
        st.success(done)


_DONE = "_console_done"


def act(call: Callable[[Actions], Any], done: str, stale: tuple[Any, ...] = ()) -> None:
    """Send a change as the person at the console (who must have given a name); on success
    drop the ``stale`` cached reads and redraw the page with ``done`` at its top."""
    client = actions()
    if client is None:
        return
    try:
        call(client)
    except ActionError as exc:
        st.error(str(exc))
        return
    for cached in stale:
        cached.clear()
    report_done(f"{done} as {client.actor}")


def report_done(message: str) -> None:
    """After a change: redraw the whole page (every panel then shows it), with ``message``
    at its top."""
    st.session_state[_DONE] = message
    st.rerun()


def minutes() -> int:
    """The shared time range, in minutes."""
    return RANGES[st.session_state.get("_range", DEFAULT_RANGE)]


def span() -> data.Span:
    """The shared time range, ending now."""
    return data.Span.last(minutes())


def model() -> str | None:
    """The model picked in the sidebar (None when the store knows of none)."""
    return st.session_state.get("_model")


def guarded(body: Callable[[], None]) -> Callable[[], None]:
    """``body``, showing any error it raises as a message (and logging its traceback for
    whoever runs the console) instead of a traceback on the page."""

    @functools.wraps(body)
    def run() -> None:
        try:
            body()
        except Exception as exc:  # noqa: BLE001 - Streamlit's own control flow is BaseException
            log.exception("console: %s failed", body.__name__)
            show_error(exc)

    return run


def refreshing(body: Callable[[], None]) -> Callable[[], None]:
    """``body`` as a fragment that reruns itself every refresh interval, guarded."""
    every = REFRESH_CHOICES.get(st.session_state.get("_refresh", "30s"))
    return st.fragment(run_every=every)(guarded(body))


def link(page: str, **params: str) -> str:
    """A URL path to ``page`` with the shared pickers' state and ``params``."""
    query = {"range": st.session_state.get("_range", DEFAULT_RANGE)}
    if model():
        query["model"] = model() or ""
    query.update(params)
    return f"/{page}?{urlencode(query)}"


# --- units ----------------------------------------------------------------------------------

def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA


def ms(value: Any) -> str:
    """A latency: ``37 ms``, ``1.24 s``."""
    if _missing(value):
        return "—"
    return f"{value / 1000:.2f} s" if value >= 1000 else f"{value:.0f} ms" if value >= 10 \
        else f"{value:.1f} ms"


def pct(value: Any, digits: int = 2) -> str:
    """A share: ``0.27%``."""
    return "—" if _missing(value) else f"{value * 100:.{digits}f}%"


def count(value: Any) -> str:
    """A count with thousands separators."""
    return "—" if _missing(value) else f"{int(value):,}"


def number(value: Any, digits: int = 3) -> str:
    """A score, to ``digits`` significant digits."""
    return "—" if _missing(value) else f"{value:.{digits}g}"


def seconds(value: Any) -> str:
    """A duration in seconds: ``4.2 s``, ``3m 10s``."""
    if _missing(value):
        return "—"
    if value < 60:
        return f"{value:.1f} s"
    whole = int(value)
    return f"{whole // 60}m {whole % 60:02d}s" if value < 3600 else \
        f"{whole // 3600}h {(whole % 3600) // 60:02d}m"


def age(moment: Any) -> str:
    """How long ago: ``4s ago``, ``3m ago``, ``never``."""
    if not isinstance(moment, datetime | pd.Timestamp) or pd.isna(moment):
        return "never"
    elapsed = (utc_now() - utc(moment.to_pydatetime() if isinstance(moment, pd.Timestamp)
                               else moment)).total_seconds()
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if elapsed >= size:
            return f"{elapsed / size:.0f}{unit} ago"
    return f"{max(elapsed, 0):.0f}s ago"


# --- status ---------------------------------------------------------------------------------

def badge(status: Status, text: str) -> str:
    """``text`` prefixed by the status's icon, for tables and captions."""
    return f"{status.icon} {text}"


def colour_cells(frame: pd.DataFrame) -> Any:
    """A Styler colouring each cell by the status icon it starts with."""
    by_icon = {"🔴": HEX["red"], "🟠": HEX["amber"], "🟢": HEX["green"], "⚪": HEX["grey"]}

    def style(value: Any) -> str:
        text = str(value)
        for icon, colour in by_icon.items():
            if text.startswith(icon):
                return f"background-color: {colour}33"
        return ""

    return frame.style.map(style)


def show_error(exc: Exception) -> None:
    """An error as a message an on-call engineer can act on, never a traceback."""
    st.error(f"**{type(exc).__name__}**: {exc}")


# --- who acts -------------------------------------------------------------------------------

def identity() -> None:
    """Draw the sidebar's "who is acting" fields: a name, and the token when one is needed."""
    with st.sidebar.expander("Acting as", expanded=True):
        st.text_input("Your name", key="who", placeholder="e.g. alice",
                      help="Recorded with every acknowledgement, silence and rollback")
        if data.settings().token_required:
            st.text_input("API token", key="token", type="password",
                          help="The API's bearer token: changes are refused without it")


def actions(*, reading: bool = False) -> Actions | None:
    """The action client for the person at the console, or None (with a message saying
    what is missing). ``reading``: only to read from the API, which needs no name."""
    api_url = data.settings().api_url
    who = (st.session_state.get("who") or "").strip()
    if not api_url:
        st.info("Actions need the Watchloop API: run the console with `watchloop up`, or "
                "set WATCHLOOP_API_URL.")
        return None
    if not who and not reading:
        st.info("Enter your name under **Acting as** in the sidebar: every change is "
                "recorded with who made it.")
        return None
    return Actions(api_url, f"console:{who or 'viewer'}",
                   st.session_state.get("token") or None)
