"""isrinject's version, however it was installed.

- an eups build (``scons``) writes ``isrinject/version.py`` (sconsUtils'
  ``version`` target, from git);
- a pip install records the distribution's version (pyproject.toml);
- a bare source tree on ``PYTHONPATH`` (``setup -k -r .`` without ``scons``)
  has neither, so the version is read from the tree's pyproject.toml.
"""

from __future__ import annotations

__all__ = ["package_version"]

import functools
import importlib
import importlib.metadata
import tomllib
from pathlib import Path


@functools.cache
def package_version() -> str:
    """The version of this isrinject: sconsUtils' ``version.py``, else the
    source tree's pyproject.toml, else the installed distribution's, else
    ``"unknown"``."""
    try:
        generated = importlib.import_module("isrinject.version")
        return str(generated.__version__)
    except ImportError:
        pass
    # A source tree (python/isrinject/ beside pyproject.toml: eups, editable
    # installs, tests) says its own version; an installed copy has metadata.
    root = Path(__file__).resolve().parents[2]
    pyproject = root / "pyproject.toml"
    if Path(__file__).resolve().parents[1].name == "python" and pyproject.exists():
        with pyproject.open("rb") as stream:
            return str(tomllib.load(stream).get("project", {}).get("version", "unknown"))
    try:
        return importlib.metadata.version("isrinject")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"
