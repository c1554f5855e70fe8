"""``watchloop demo``: the whole loop on real parts (``run.run_demo``), or, with
``--no-services``, synthetic traffic straight into an embedded store (``synthetic``)."""

from .run import run_demo
from .synthetic import DemoProfiles, DemoTraffic, demo_monitor_settings

__all__ = ["DemoProfiles", "DemoTraffic", "demo_monitor_settings", "run_demo"]
