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
    "BOOKKEEPING_COLUMNS": "isrinject.engine.catalog.schema",
    "CONFIGURABLE_COLUMNS": "isrinject.engine.catalog.schema",
    "STANDARD_COLUMNS": "isrinject.engine.catalog.schema",
    "STANDARD_UNITS": "isrinject.engine.catalog.schema",
    "compose_catalog": "isrinject.engine.catalog.schema",
    "normalize_source_types": "isrinject.engine.catalog.schema",
    "standardize_columns": "isrinject.engine.catalog.schema",
    "catalog_format": "isrinject.engine.catalog.schema",
    "read_catalog": "isrinject.engine.catalog.schema",
    "write_catalog": "isrinject.engine.catalog.schema",
    "CatalogProblem": "isrinject.engine.catalog.validate",
    "CatalogReport": "isrinject.engine.catalog.validate",
    "CatalogValidationError": "isrinject.engine.catalog.validate",
    "check_catalog": "isrinject.engine.catalog.validate",
    "source_spec": "isrinject.engine.catalog.validate",
    "validate_catalog": "isrinject.engine.catalog.validate",
    "generate_injection_catalog": "isrinject.engine.catalog.generate",
    "seed_to_int": "isrinject.engine.catalog.generate",
    "visit_regions": "isrinject.engine.catalog.generate",
    "HTM_LEVEL": "isrinject.engine.catalog.ingest",
    "htm_indices": "isrinject.engine.catalog.ingest",
    "ingest_injection_catalog": "isrinject.engine.catalog.ingest",
    "known_bands": "isrinject.engine.catalog.ingest",
    "COMMON_COLUMNS": "isrinject.engine.catalog.source_types",
    "PARAMETER_UNITS": "isrinject.engine.catalog.source_types",
    "SOURCE_TYPE_PARAMETERS": "isrinject.engine.catalog.source_types",
    "SourceTypeParameters": "isrinject.engine.catalog.source_types",
    "describe_common_columns": "isrinject.engine.catalog.source_types",
    "source_type_parameters": "isrinject.engine.catalog.source_types",
}

__all__ = list(_LAZY)

#: Submodules that the former eager imports made available as attributes.
_SUBMODULES = ("schema", "validate", "generate", "ingest", "source_types")


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    if name in _SUBMODULES:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module 'isrinject.engine.catalog' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__, *_SUBMODULES})
