"""The Watchloop console: ``streamlit run dashboard/app.py`` or ``watchloop up``.

The pages share the sidebar drawn here (time range, model, refresh, who is acting), kept in
the URL's query parameters so that a link opens the same view.
"""

from __future__ import annotations

import streamlit as st

from dashboard import widgets


def main() -> None:
    st.set_page_config(page_title="Watchloop", page_icon="🔭", layout="wide")
    pages = [
        st.Page("views/oncall.py", title="On call", icon="🚨", url_path="oncall",
                default=True),
        st.Page("views/model.py", title="Model", icon="🧠", url_path="model"),
        st.Page("views/pipelines.py", title="Pipelines", icon="🚰", url_path="pipelines"),
        st.Page("views/alerts.py", title="Alerts", icon="🔔", url_path="alerts"),
        st.Page("views/loop.py", title="Feedback loop", icon="🔁", url_path="loop"),
        st.Page("views/compare.py", title="Compare versions", icon="⚖️", url_path="compare"),
    ]
    page = st.navigation(pages)
    try:
        widgets.draw_shared()
    except Exception as exc:  # noqa: BLE001 - a store that is away is shown, not raised
        widgets.show_error(exc)
        return
    page.run()


main()
