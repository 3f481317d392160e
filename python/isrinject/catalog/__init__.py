"""Injection catalogs: schema, source types, validation, generation and butler ingestion.

Compatible with ``lsst.source.injection``: the same column vocabulary, the
same ``generate_injection_catalog`` / ``ingest_injection_catalog`` functions
and the same ``injection_catalog`` dataset type (``ArrowAstropy``, dimensions
``htm7, band``).

The submodules are imported lazily (on first use of one of their names) so
that ``isrinject --help`` does not pay for SciPy, GalSim or lsst.sphgeom.
"""

from __future__ import annotations

import importlib
from typing import Any

#: Public name → the submodule that defines it (the submodules' order).
_LAZY = {
    "BOOKKEEPING_COLUMNS": "isrinject.catalog.schema",
    "CONFIGURABLE_COLUMNS": "isrinject.catalog.schema",
    "STANDARD_COLUMNS": "isrinject.catalog.schema",
    "STANDARD_UNITS": "isrinject.catalog.schema",
    "compose_catalog": "isrinject.catalog.schema",
    "normalize_source_types": "isrinject.catalog.schema",
    "standardize_columns": "isrinject.catalog.schema",
    "catalog_format": "isrinject.catalog.schema",
    "read_catalog": "isrinject.catalog.schema",
    "write_catalog": "isrinject.catalog.schema",
    "CatalogProblem": "isrinject.catalog.validate",
    "CatalogReport": "isrinject.catalog.validate",
    "CatalogValidationError": "isrinject.catalog.validate",
    "check_catalog": "isrinject.catalog.validate",
    "source_spec": "isrinject.catalog.validate",
    "validate_catalog": "isrinject.catalog.validate",
    "generate_injection_catalog": "isrinject.catalog.generate",
    "seed_to_int": "isrinject.catalog.generate",
    "visit_regions": "isrinject.catalog.generate",
    "HTM_LEVEL": "isrinject.catalog.ingest",
    "htm_indices": "isrinject.catalog.ingest",
    "ingest_injection_catalog": "isrinject.catalog.ingest",
    "known_bands": "isrinject.catalog.ingest",
    "COMMON_COLUMNS": "isrinject.catalog.source_types",
    "PARAMETER_UNITS": "isrinject.catalog.source_types",
    "SOURCE_TYPE_PARAMETERS": "isrinject.catalog.source_types",
    "SourceTypeParameters": "isrinject.catalog.source_types",
    "describe_common_columns": "isrinject.catalog.source_types",
    "source_type_parameters": "isrinject.catalog.source_types",
}

__all__ = list(_LAZY)

#: Submodules that the former eager imports made available as attributes.
_SUBMODULES = ("schema", "validate", "generate", "ingest", "source_types")


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    if name in _SUBMODULES:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module 'isrinject.catalog' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__, *_SUBMODULES})
