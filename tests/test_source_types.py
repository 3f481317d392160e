"""Issue 18 (2): the source-type table that validation uses and ``isrinject show-source-types`` prints."""

from __future__ import annotations

import numpy as np
import pytest
from astropy.table import Table

from isrinject.cli import main
from isrinject.engine.catalog import SOURCE_TYPE_PARAMETERS, STANDARD_UNITS, check_catalog, source_type_parameters
from isrinject.engine.draw.profiles import SOURCE_TYPES
from isrinject.engine.flags import InjectionFlag


def test_table_lists_every_accepted_source_type() -> None:
    assert set(SOURCE_TYPE_PARAMETERS) == set(SOURCE_TYPES)
    sersic = source_type_parameters("Sersic")
    assert sersic.required == ("n",)
    assert sersic.one_of == (("scale_radius", "half_light_radius"),)
    assert {"trunc", "flux_untruncated", "q", "beta", "g1", "g2"} <= set(sersic.optional)
    assert "flux" not in sersic.columns  # the catalog's mag sets the flux
    assert source_type_parameters(" Star ").drawn_as == "DeltaFunction"
    assert source_type_parameters("Star").columns == frozenset()
    assert source_type_parameters("Trail").columns == {"trail_length", "beta"}
    assert source_type_parameters("Stamp").required == ("stamp",)
    with pytest.raises(ValueError, match="Unknown source_type 'Blob'"):
        source_type_parameters("Blob")


def _minimal_row(parameters) -> dict:
    """mag, position and the first choice of every required column of a type."""
    row = {"source_type": parameters.source_type, "mag": 20.0, "ra": 150.0, "dec": 2.0}
    row.update(dict.fromkeys(parameters.required, 1.0))
    row.update({group[0]: 1.0 for group in parameters.one_of})
    return row


@pytest.mark.parametrize("source_type", sorted(set(SOURCE_TYPES) - {"Stamp"}))
def test_validation_accepts_the_required_columns_and_flags_a_missing_one(source_type: str) -> None:
    parameters = SOURCE_TYPE_PARAMETERS[source_type]
    row = _minimal_row(parameters)
    assert check_catalog(Table(rows=[row])).flags.tolist() == [0]
    for name in parameters.required:
        incomplete = {k: v for k, v in row.items() if k != name}
        report = check_catalog(Table(rows=[incomplete]))
        assert report.flags.tolist() == [int(InjectionFlag.PARAM_BAD)], name
        assert any(name in str(problem) for problem in report.problems), name
    for group in parameters.one_of:
        both = {**row, **dict.fromkeys(group[:2], 1.0)}
        if len(group) > 1:
            assert check_catalog(Table(rows=[both])).flags.tolist() == [int(InjectionFlag.PARAM_BAD)], group


def test_shear_columns_are_checked_only_where_the_table_says_they_apply() -> None:
    """q = 5 is bad for a Sersic row, ignored for a Star row (Star takes no shear)."""
    table = Table(rows=[
        {"source_type": "Sersic", "mag": 20.0, "ra": 150.0, "dec": 2.0, "n": 1.0, "half_light_radius": 1.0,
         "q": 5.0, "beta": 0.0},
        {"source_type": "Star", "mag": 20.0, "ra": 150.0, "dec": 2.0, "n": np.nan, "half_light_radius": 0.0,
         "q": 5.0, "beta": 0.0},
    ])
    assert check_catalog(table).flags.tolist() == [int(InjectionFlag.PARAM_BAD), 0]


def test_show_source_types_prints_columns_and_units(capsys: pytest.CaptureFixture[str]) -> None:
    assert STANDARD_UNITS["half_light_radius"].to_string() == "arcsec"
    assert main(["show-source-types", "-w", "120", "Sersic", "Star", "Moffat"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[:4] == [
        "Sersic:",
        "  required: n",
        "  one of:   scale_radius [arcsec] | half_light_radius [arcsec]",
        "  optional: trunc [arcsec], flux_untruncated",
    ]
    assert lines[4] == "  shear:    g1, g2, g, e1, e2, e, eta1, eta2, eta, q, beta [deg]"
    assert lines[5:7] == ["Star (drawn as DeltaFunction):", "  no shape columns"]
    # Moffat's beta is its index (no unit) and is also read as the shear angle.
    assert lines[7:9] == ["Moffat:", "  required: beta"]
    assert any(line.startswith("  note:     column 'beta' is passed to galsim.Moffat") for line in lines)
    assert main(["show-source-types"]) == 0
    everything = capsys.readouterr().out
    assert everything.startswith("Every source type:\n  mag:")
    assert all(f"\n{name}:" in everything or f"\n{name} (" in everything for name in SOURCE_TYPES)
    assert main(["show-source-types", "Blob"]) == 1
    assert "Unknown source_type 'Blob'" in capsys.readouterr().err
