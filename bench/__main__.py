"""``python -m bench``: run every benchmark and print a table of their headline figures.

The runner lives in ``bench._runner`` (a private module, so it is not taken for a benchmark);
``python -m bench --help`` says what it does.
"""

from __future__ import annotations

import sys

from bench._runner import main

if __name__ == "__main__":
    sys.exit(main())
