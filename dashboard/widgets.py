"""Widgets shared by the console's pages."""

from __future__ import annotations

import streamlit as st

WINDOWS = {"15 minutes": 15, "1 hour": 60, "6 hours": 360, "24 hours": 1440, "7 days": 10080}


def time_window(key: str = "window", default: str = "1 hour") -> int:
    """A time-range picker; returns the window in minutes."""
    label = st.selectbox("Time range", list(WINDOWS), index=list(WINDOWS).index(default), key=key)
    return WINDOWS[label]
