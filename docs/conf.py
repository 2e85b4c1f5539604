"""Sphinx configuration of trio_ftp's documentation site (``python3 -m sphinx -W -b html
docs docs/_build/html``; the test suite builds it too, warnings as errors)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

project = "trio_ftp"
author = "the trio_ftp developers"
copyright = "2026, the trio_ftp developers"

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.intersphinx",
    "sphinx.ext.viewcode",
]
source_suffix = {".md": "markdown", ".rst": "restructuredtext"}
exclude_patterns = ["_build"]
html_theme = "furo"
html_title = "trio_ftp"

# Cross-references to Python's and trio's documentation need their inventories from the
# network; TRIO_FTP_DOCS_OFFLINE=1 (the test suite's build) leaves them plain text.
intersphinx_mapping = (
    {}
    if os.environ.get("TRIO_FTP_DOCS_OFFLINE")
    else {
        "python": ("https://docs.python.org/3", None),
        "trio": ("https://trio.readthedocs.io/en/stable", None),
    }
)
intersphinx_timeout = 10

autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_default_options = {"members": True, "show-inheritance": True}
napoleon_google_docstring = True
napoleon_numpy_docstring = False
myst_enable_extensions = ["colon_fence"]
myst_heading_anchors = 3
nitpicky = False


def _skip_aliases(
    app: object, what: str, name: str, obj: object, skip: bool, options: object
) -> bool | None:
    """``AbstractUserManager.GetUserResponse`` is aioftp's spelling of the module-level
    class: documented once, there."""
    if what == "class" and name == "GetUserResponse":
        return True
    return None


def setup(app: object) -> None:
    app.connect("autodoc-skip-member", _skip_aliases)  # type: ignore[attr-defined]
