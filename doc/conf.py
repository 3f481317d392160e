"""Sphinx configuration of the isrinject documentation (``make docs``).

Plain Sphinx with the pydata theme, numpydoc, sphinx-automodapi, myst-nb and
sphinx-argparse rather than documenteer: see ``doc/README.md`` for why.  The
build must work offline and with ``-W -n`` (``tests/test_docs.py``).
"""

from __future__ import annotations

import sys
from pathlib import Path

DOC_DIR = Path(__file__).resolve().parent
PACKAGE_ROOT = DOC_DIR.parent
# The package is imported from the checkout being documented, and the local
# extension from doc/_ext.
sys.path[:0] = [str(PACKAGE_ROOT / "python"), str(DOC_DIR / "_ext")]

project = "isrinject"
author = "isrinject developers"
copyright = "2026, isrinject developers"
release = version = "0.1.0"

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.mathjax",
    "numpydoc",
    "sphinx_automodapi.automodapi",
    "sphinx_automodapi.smart_resolver",
    "sphinxarg.ext",
    "myst_nb",
    "isrinject_docs",
]

root_doc = "index"
# The tutorial notebook as kept in git is rendered from its copy in
# isrinject/_generated/ (doc/_ext/isrinject_docs.py), not from here.
exclude_patterns = ["_build", "README.md", "**/.ipynb_checkpoints", "isrinject/tutorial.ipynb"]
templates_path: list[str] = []
# `text` in reST and in docstrings is a Python cross-reference, as in the
# LSST Science Pipelines (and lsst.images) docstrings.
default_role = "py:obj"
# "--option" must stay two hyphens, not become an en dash.
smartquotes = False
# Literal blocks without a language (sphinx-argparse's usage lines) are not Python.
highlight_language = "none"

# --- cross-reference checking --------------------------------------------------
# Every reference must resolve (-n).  Other projects' inventories are not
# fetched (the build runs offline): a reference to an object that exists
# outside isrinject is accepted as plain code by doc/_ext/isrinject_docs.py,
# one to a name that exists nowhere fails.
nitpicky = True

# tests/README.md and bps/README.md are included from their middle (their first
# heading is H2 or H3); MyST's check that a document starts at H1 does not apply.
suppress_warnings = ["myst.header"]

# --- API reference ---------------------------------------------------------------
automodapi_toctreedirnm = "isrinject/api"
automodsumm_inherited_members = False
numpydoc_show_class_members = False
numpydoc_xref_param_type = False
autodoc_typehints = "signature"
# Docstrings inherited from pipe_base (runQuantum, the connection classes) refer
# to pipe_base's own documentation; show only what isrinject writes.
autodoc_inherit_docstrings = False
# Inheritance diagrams need Graphviz's ``dot``, which is not a Python package.
automodapi_inheritance_diagram = False
autodoc_member_order = "bysource"
# Signatures show defaults as written (``log=_LOG``), not as their repr
# (``<Logger isrinject (WARNING)>``, which is not Python and breaks the signature).
autodoc_preserve_defaults = True

# --- notebooks (myst-nb) ---------------------------------------------------------
# Notebooks without outputs (the tutorial as kept in git) are executed; an
# already executed copy is rendered as it is.  A failing cell is a warning
# with the cell's traceback (so -W fails the build and says why).
nb_execution_mode = "auto"
nb_execution_raise_on_error = False
nb_execution_timeout = 600
nb_execution_show_tb = True
# Files the notebook writes (diagnose's PNGs) go to a temporary directory, not doc/.
nb_execution_in_temp = True

# --- equations: MathJax from a local copy ---------------------------------------
# The equations are typeset by MathJax 3 in the reader's browser from the copy
# of MathJax that django-static-mathjax ships (requirements-docs.txt: static
# files only, no dependencies), copied into _static/, so the site reads the
# same offline as online.  tex-svg-full.js is one self-contained file: the TeX
# input with every extension and the SVG output, whose glyphs are in the
# script (no font files to fetch).
try:
    import mathjax as _mathjax_copy
except ImportError as error:  # pragma: no cover - a virtualenv without requirements-docs.txt
    raise ImportError(
        "The documentation needs the local MathJax copy of django-static-mathjax: "
        "pip install -r requirements-docs.txt (make venv does)."
    ) from error
MATHJAX_SCRIPT = Path(_mathjax_copy.__file__).parent / "static" / "mathjax" / "es5" / "tex-svg-full.js"
mathjax_path = MATHJAX_SCRIPT.name
# (myst-parser adds the classes to process; "global" shares repeated glyphs between equations.)
mathjax3_config = {"svg": {"fontCache": "global"}}

# --- HTML --------------------------------------------------------------------------
html_theme = "pydata_sphinx_theme"
html_title = "isrinject"
html_theme_options = {
    "navigation_with_keys": False,
    "show_toc_level": 2,
    # The top bar holds the root toctree's sections (user guide, tutorial,
    # reference, design); show them all rather than folding some into "More".
    "header_links_before_dropdown": 6,
    # No icon links or search-engine hosts: nothing on the page is fetched
    # from outside the site.
    "icon_links": [],
    # The task pages' connection and config tables need the article's full
    # width: their "On this page" column goes (the sections are few).
    "secondary_sidebar_items": {
        "**": ["page-toc", "sourcelink"],
        **{f"isrinject/tasks/{page.stem}": [] for page in (DOC_DIR / "isrinject" / "tasks").glob("*.rst")},
    },
}
# The tutorial is a section of its own, one page: no section navigation to
# show, so its code cells get the width.
html_sidebars = {"isrinject/_generated/tutorial": []}
html_static_path: list[str] = [str(MATHJAX_SCRIPT), "_static"]
html_css_files = ["isrinject.css"]
