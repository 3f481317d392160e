"""What a catalog mistake probably was, and what to do about it.

`isrinject.engine.catalog.validate` decides which rows are bad; this module
turns the common mistakes into messages that say how to fix them:

- a misspelt or differently named column (``magnitude`` for ``mag``,
  ``RA`` for ``ra``): `column_suggestion` and `missing_column_hint` name the
  column that is probably meant and the rename (``--column mag=magnitude`` on
  ``isrinject ingest-catalog``, ``config.col_mag`` or a renamed column for the
  task);
- a misspelt or mis-cased ``source_type``: `match_source_type` accepts any
  case (``star`` is ``Star``), `source_type_hint` proposes close names
  (`difflib`);
- magnitudes that are valid numbers but implausible for an injection (a
  mag −3 star): `implausible_magnitude_message`;
- rows centred off the image, with a hint when ra/dec look like radians:
  `off_image_message`;
- a call that injected nothing: `nothing_injected_message` names the most
  common cause.

Every function returns text (or `None`): the callers decide the log level.
"""

from __future__ import annotations

__all__ = [
    "COLUMN_ALIASES",
    "DEFAULT_PLAUSIBLE_MAG_RANGE",
    "HintStyle",
    "close_matches",
    "column_suggestion",
    "implausible_magnitude_message",
    "match_source_type",
    "missing_column_hint",
    "nothing_injected_message",
    "off_image_message",
    "source_type_hint",
]

import difflib
from collections.abc import Iterable, Mapping, Sequence
from typing import Literal

import numpy as np
from astropy.table import Table
from lsst.images import XY, VisitImage

from ..draw.profiles import SOURCE_TYPES

#: Where a rename hint is read: ``"cli"`` (``isrinject ingest-catalog``'s
#: ``--column``) or ``"task"`` (``VisitInjectTask.run`` / pipetask: the
#: ``col_*`` config fields or a renamed column).
type HintStyle = Literal["cli", "task"]

#: Magnitudes outside this range [AB mag] are injected but warned about: a
#: mag 10 star already saturates a Rubin visit widely, and nothing fainter
#: than 35 is measurable.
DEFAULT_PLAUSIBLE_MAG_RANGE: tuple[float, float] = (10.0, 35.0)

#: Other names under which catalogs commonly hold a standard column (compared
#: case-insensitively, besides the standard name itself and close spellings).
COLUMN_ALIASES: dict[str, tuple[str, ...]] = {
    "ra": ("ra_deg", "raj2000", "alpha", "coord_ra", "ra_icrs", "right_ascension"),
    "dec": ("dec_deg", "decl", "dej2000", "decj2000", "delta", "coord_dec", "dec_icrs", "declination"),
    "mag": ("magnitude", "mags", "ab_mag", "mag_ab", "magab", "abmag", "m"),
    "source_type": ("type", "sourcetype", "source", "profile", "kind", "model", "galsim_type"),
    "x": ("x_pix", "xpix", "col", "column"),
    "y": ("y_pix", "ypix", "row"),
    "half_light_radius": ("hlr", "r_half", "rhalf", "re", "r_e", "half_light_radius_arcsec"),
    "trail_length": ("length", "trail"),
    "draw_size": ("stamp_size", "size"),
}

#: The standard columns the task configuration can rename (``col_<name>``).
_CONFIG_COLUMNS = ("ra", "dec", "source_type", "mag", "stamp", "draw_size", "trail_length")


def close_matches(value: str, choices: Iterable[str], n: int = 3, cutoff: float = 0.6) -> list[str]:
    """The ``choices`` that ``value`` probably meant, best first.

    A case-insensitive equal name comes first, then `difflib` close matches
    of the lower-cased names (ratio ≥ ``cutoff``).
    """
    by_lower: dict[str, str] = {}
    for choice in choices:
        by_lower.setdefault(choice.lower(), choice)
    key = str(value).strip().lower()
    found = [by_lower[key]] if key in by_lower else []
    found += [by_lower[m] for m in difflib.get_close_matches(key, list(by_lower), n=n, cutoff=cutoff)]
    return list(dict.fromkeys(found))[:n]


def match_source_type(value: str) -> str | None:
    """The accepted ``source_type`` spelled like ``value`` up to case
    (``star`` → ``Star``), or `None`."""
    key = str(value).strip().lower()
    matches = [name for name in SOURCE_TYPES if name.lower() == key]
    return matches[0] if len(matches) == 1 else None


def source_type_hint(value: str) -> str:
    """`` (did you mean 'Sersic'?)`` for a near miss, else ``""``."""
    matches = close_matches(value, SOURCE_TYPES) if str(value).strip() else []
    if not matches:
        return ""
    return " (did you mean " + " or ".join(repr(m) for m in matches) + "?)"


def column_suggestion(standard: str, colnames: Iterable[str]) -> str | None:
    """The column of ``colnames`` that probably holds the standard column
    ``standard`` (absent from them), or `None`.

    Tried in order: the same name in another case (``RA``), a known alias
    (`COLUMN_ALIASES`, any case), a name starting with the standard name and
    a separator or a longer word (``magnitude``, ``ra_2000``), a close
    spelling (`difflib`).
    """
    names = [name for name in colnames if name != standard]
    lower = {name.lower(): name for name in reversed(names)}
    if standard.lower() in lower:
        return lower[standard.lower()]
    for alias in COLUMN_ALIASES.get(standard, ()):
        if alias in lower:
            return lower[alias]
    if len(standard) >= 3:  # "ra" + anything would match too much
        for name in names:
            if name.lower().startswith(standard.lower()):
                return name
    for name in names:
        if name.lower().startswith(standard.lower() + "_"):
            return name
    matches = difflib.get_close_matches(standard, names, n=1, cutoff=0.75)
    return matches[0] if matches else None


def missing_column_hint(standard: str, colnames: Iterable[str], style: HintStyle = "task") -> str:
    """``"; did you mean 'magnitude'? …how to rename it…"`` for a missing
    standard column, or ``""`` when no column looks like it."""
    found = column_suggestion(standard, colnames)
    if found is None:
        return ""
    if style == "cli":
        fix = f"use --column {standard}={found}"
    elif standard in _CONFIG_COLUMNS:
        fix = f"set config.col_{standard} = {found!r} or rename the column to {standard!r}"
    else:
        fix = f"rename the column: catalog.rename_column({found!r}, {standard!r})"
    return f"; did you mean {found!r}? {fix}"


def implausible_magnitude_message(catalog: Table, mag_range: Sequence[float]) -> str | None:
    """A warning for finite magnitudes outside ``mag_range`` (inclusive), or `None`.

    These rows are still injected (values outside the hard limits of
    `~isrinject.engine.catalog.check_catalog` are MAG_BAD): a mag −3 star is a
    legal number that is almost certainly a mistake (flux in the wrong
    column, an absolute magnitude, a sign error).
    """
    if "mag" not in catalog.colnames or len(catalog) == 0:
        return None
    raw = np.ma.filled(np.ma.asarray(catalog["mag"], dtype=object), np.nan)
    try:
        values = raw.astype(float)
    except (TypeError, ValueError):  # some values are not numbers (MAG_BAD): only the others count
        values = np.full(len(catalog), np.nan)
        for i, value in enumerate(raw):
            try:
                values[i] = float(value)
            except (TypeError, ValueError):
                pass
    low, high = float(mag_range[0]), float(mag_range[1])
    with np.errstate(invalid="ignore"):
        outside = np.isfinite(values) & ((values < low) | (values > high))
    if not outside.any():
        return None
    rows = np.flatnonzero(outside)
    ids = catalog["injection_id"][rows].tolist() if "injection_id" in catalog.colnames else rows.tolist()
    quoted = ", ".join(f"{v:g}" for v in values[rows][:8]) + (", ..." if len(rows) > 8 else "")
    return (
        f"{len(rows)} of {len(catalog)} sources have magnitudes outside the plausible range "
        f"{low:g} ≤ mag ≤ {high:g} (values: [{quoted}]; injection_id {ids[:8]}{' ...' if len(ids) > 8 else ''}); "
        "they are injected as given. Is 'mag' an AB apparent magnitude (not a flux, nor an absolute "
        "magnitude)? Change config.plausible_mag_range to silence this."
    )


def _image_footprint(visit_image: VisitImage) -> tuple[float, float, float]:
    """(ra, dec, radius) in degrees: the image centre and its half-diagonal."""
    bbox = visit_image.bbox
    xs = np.array([bbox.x.center, bbox.x.min, bbox.x.max, bbox.x.min, bbox.x.max], dtype=float)
    ys = np.array([bbox.y.center, bbox.y.min, bbox.y.min, bbox.y.max, bbox.y.max], dtype=float)
    sky = visit_image.sky_projection.pixel_to_sky(XY(x=xs, y=ys))
    radius = float(np.max(sky[0].separation(sky[1:]).deg))
    return float(sky[0].ra.deg), float(sky[0].dec.deg), radius


def _separation_deg(ra0: float, dec0: float, ra: np.ndarray, dec: np.ndarray) -> np.ndarray:
    """Great-circle distance [deg] of (ra, dec) [deg] from (ra0, dec0) [deg] (haversine)."""
    ra0r, dec0r, rar, decr = np.radians(ra0), np.radians(dec0), np.radians(ra), np.radians(dec)
    h = np.sin((decr - dec0r) / 2) ** 2 + np.cos(dec0r) * np.cos(decr) * np.sin((rar - ra0r) / 2) ** 2
    return np.degrees(2 * np.arcsin(np.sqrt(np.clip(h, 0.0, 1.0))))


def off_image_message(
    catalog: Table, dropped: np.ndarray, visit_image: VisitImage, padding: int, *, kept: bool, where: str
) -> str:
    """Why ``dropped`` rows (a boolean mask over ``catalog``, which has
    ``ra``/``dec`` in degrees) are not on ``visit_image``: counts, the image
    footprint, the nearest row and, when the values look like radians, the
    conversion."""
    n_dropped, n_rows = int(np.sum(dropped)), len(catalog)
    centre_ra, centre_dec, radius = _image_footprint(visit_image)
    ra = np.asarray(catalog["ra"], dtype=float)[dropped]
    dec = np.asarray(catalog["dec"], dtype=float)[dropped]
    text = (
        f"{n_dropped} of {n_rows} sources for {where} are centred outside the image padded by "
        f"{padding} px (trim_padding) and are not injected"
        + (" (kept in the output catalog, flagged NO_OVERLAP)" if kept else "")
        + f". The image covers ra, dec = {centre_ra:.5f}, {centre_dec:+.5f} deg ± {radius:.3f} deg"
    )
    finite = np.isfinite(ra) & np.isfinite(dec)
    if finite.any():
        distance = _separation_deg(centre_ra, centre_dec, ra[finite], dec[finite])
        text += f"; the nearest of these rows is {float(np.min(distance)):.3f} deg from its centre"
        as_radians = _separation_deg(centre_ra, centre_dec, np.degrees(ra[finite]), np.degrees(dec[finite]))
        looks_radian = np.all(np.abs(ra[finite]) <= 2 * np.pi + 1e-9) and np.all(np.abs(dec[finite]) <= np.pi / 2)
        image_radian = abs(centre_ra) <= 2 * np.pi and abs(centre_dec) <= np.pi / 2
        if looks_radian and np.any(as_radians <= radius):
            text += (
                ". These ra/dec look like radians: converted to degrees "
                f"{int(np.sum(as_radians <= radius))} of them fall on this image; give ra/dec in degrees "
                "(numpy.degrees) or with an astropy unit (column.unit = 'rad')"
            )
        elif looks_radian and not image_radian:
            text += (
                ". Every value is within [0, 2π] × [−π/2, π/2]: if ra/dec are in radians, give them in "
                "degrees (numpy.degrees) or with an astropy unit (column.unit = 'rad')"
            )
    return text + "."


#: The likely cause of a call injecting nothing, by the flag most rows carry.
_CAUSES: dict[str, str] = {
    "NO_OVERLAP": "every source is centred off the image: check that ra/dec are in degrees and that the "
    "catalog covers this visit/detector",
    "POSITION_BAD": "no usable position: the catalog needs finite 'ra' and 'dec' [deg] (or 'x' and 'y')",
    "MAG_BAD": "no usable magnitude: the catalog needs a numeric AB 'mag' column (config.col_mag names "
    "another)",
    "TYPE_UNKNOWN": "unknown source_type: use a GalSim profile name, Star, Stamp or Trail "
    "(isrinject show-source-types)",
    "PSF_COMPUTE_ERROR": "the image's PSF could not be evaluated",
    "PARAM_BAD": "shape parameters missing or invalid for the source types (isrinject show-source-types)",
    "DUPLICATE_ID": "injection_id values are repeated",
    "STAMP_MISSING": "the Stamp FITS files were not found (config.stamp_prefix?)",
}


def nothing_injected_message(flag_counts: Mapping[str, int], n_rows: int, where: str) -> str:
    """``"0 of N sources injected into …; flags: …; likely cause: …"``."""
    counts = {name: count for name, count in flag_counts.items() if count}
    causes = sorted((name for name in counts if name in _CAUSES), key=lambda name: -counts[name])
    cause = _CAUSES[causes[0]] if causes else "see the flags and the warnings above"
    flags = ", ".join(f"{name}({count})" for name, count in counts.items()) or "none"
    return (
        f"0 of {n_rows} sources were injected into {where} (flags: {flags}); likely cause: {cause}. "
        "The output image is a copy of the input; the flagged rows are in the output catalog."
    )
