"""The Watchloop console: ``streamlit run dashboard/app.py`` or ``watchloop up``."""

from __future__ import annotations

import streamlit as st


def main() -> None:
    st.set_page_config(page_title="Watchloop", page_icon="🔭", layout="wide")
    pages = [
        st.Page("pages/store.py", title="Store", icon="🗄️", default=True),
        st.Page("pages/drift.py", title="Drift & quality", icon="📉"),
        st.Page("pages/pipelines.py", title="Pipelines", icon="🚰"),
    ]
    st.navigation(pages).run()


main()
