"""Injection catalogs: schema, validation, generation and butler ingestion.

Compatible with ``lsst.source.injection``: the same column vocabulary, the
same ``generate_injection_catalog`` / ``ingest_injection_catalog`` functions
and the same ``injection_catalog`` dataset type (``ArrowAstropy``, dimensions
``htm7, band``).
"""

from .generate import *
from .generate import __all__ as _generate_all
from .ingest import *
from .ingest import __all__ as _ingest_all
from .schema import *
from .schema import __all__ as _schema_all
from .validate import *
from .validate import __all__ as _validate_all

__all__ = [*_schema_all, *_validate_all, *_generate_all, *_ingest_all]
