"""Diagnostics: flux–variance statistics and plots that check an injection.

`isrinject.diagnostics.stats` works on plain arrays; `isrinject.diagnostics.plots`
draws the flux–variance relation (matplotlib, Agg).  Import the submodules
directly (this package imports nothing heavy).
"""

__all__: list[str] = []
