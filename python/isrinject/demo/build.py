"""Build the demo's butler repository from the ISR simulator.

One visit per band (at different times) and detector images from
`isrinject.sim.simulate_exposure`; per band × detector two flats (an older
and a newer one) certified with consecutive validity ranges so that the
visits fall into both, each visit image recording the flat it was divided
by in ``LSST CALIB UUID FLAT`` / ``LSST CALIB RUN FLAT`` as ISR does; the
illumination correction when enabled; an
injection catalog of stars and Sersic galaxies on the detectors'
footprints, ingested as ``injection_catalog`` (htm7 × band); and a CHAINED
input collection over all of it.
"""

from __future__ import annotations

__all__ = [
    "GRID_SPACING",
    "MAG_QUANTILE_POWER",
    "REAL_STAR_FAINT_SNR",
    "DemoRepo",
    "build_demo_repo",
    "load_demo_repo",
    "magnitude_range",
    "simulate_truth",
]

import dataclasses
import functools
import json
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
from astropy.table import Table, vstack
from astropy.time import Time, TimeDelta
from lsst.daf.butler import Butler
from lsst.images import XY, Box, Image, MaskedImage, VisitImage

from ..engine.catalog import ingest_injection_catalog
from ..sim import (
    BAND_PARAMETERS,
    SimulatedExposure,
    make_flat,
    photometric_scaling_njy_per_electron,
    simulate_exposure,
)
from ..sim.camera import COMCAM_FULL_WELL_ELECTRONS, amplifier_boxes
from ..sim.isr import AB_MAG_OF_ONE_NJY
from ..tasks.provenance import record_isr_flat
from .difference import put_difference_image, register_difference_image
from .galaxies import HALF_LIGHT_RADIUS_RANGE, SERSIC_N_RANGE, edge_margins
from .repo import (
    RepoLayout,
    certify_calibration,
    create_repo,
    detector_region,
    put_visit_image,
    register_dataset_types,
    register_instrument,
    register_visit,
    set_input_chain,
)

#: Start of the older flats' validity range.
EPOCH_START = Time("2026-03-01T00:00:00", scale="tai")
#: Pixel scale of the simulated detectors [arcsec].
PIXEL_SCALE_ARCSEC = 0.2
#: Pointing of the demo field (RA, Dec) [deg].
FIELD_CENTER = (150.0, 2.0)
#: Exposure time [s].
EXPOSURE_TIME_S = 30.0
#: Spacing of the grid the injected sources and the real stars sit on [pixels]: 4 FWHM of the widest PSF (u) + 4.
GRID_SPACING = 24.0
#: Injected magnitudes are bright + (faint − bright)·q^MAG_QUANTILE_POWER for q uniform in [0, 1].
MAG_QUANTILE_POWER = 1.5
#: Aperture S/N of the faintest real stars (`magnitude_range`): ≈ 3/4 of them have peak S/N ≥ 50.
REAL_STAR_FAINT_SNR = 100.0


@dataclasses.dataclass
class DemoRepo:
    """What `build_demo_repo` made (enough to run and evaluate the demo)."""

    root: Path
    """Repository root."""
    layout: RepoLayout
    """Collection names (``layout.inputs`` is the CHAINED input collection)."""
    bands: tuple[str, ...]
    detectors: tuple[int, ...]
    shape: tuple[int, int]
    units: str
    do_illumination_correction: bool
    visits: dict[str, int]
    """band → visit ID."""
    visit_begin: dict[str, Time]
    """band → visit start (TAI)."""
    physical_filters: dict[str, str]
    """band → physical_filter."""
    flat_switch: Time
    """End of the older flats' validity, start of the newer ones'."""
    flat_runs: dict[str, str]
    """``"old"``/``"new"`` → RUN holding those flats."""
    catalog: Table
    """The injection catalog of every band (column ``band``)."""
    seed: int = 0
    """Seed of the simulation (`simulate_truth` re-simulates the same pixels from it)."""
    real_stars: Table | None = None
    """Stars of the observed scene put on free grid slots (columns ``band``, ``detector``,
    ``x``, ``y``, ``source_type``, ``mag``): the real stars the classifier compares with."""

    def save(self) -> None:
        """Write ``demo.json`` and ``demo_catalog.ecsv`` into the repository root."""
        meta = {
            "layout": dataclasses.asdict(self.layout), "bands": list(self.bands),
            "detectors": list(self.detectors), "shape": list(self.shape), "units": self.units,
            "do_illumination_correction": self.do_illumination_correction, "visits": self.visits,
            "visit_begin": {b: t.isot for b, t in self.visit_begin.items()},
            "physical_filters": self.physical_filters, "flat_switch": self.flat_switch.isot,
            "flat_runs": self.flat_runs, "seed": self.seed,
        }
        (self.root / "demo.json").write_text(json.dumps(meta, indent=1))
        self.catalog.write(self.root / "demo_catalog.ecsv", overwrite=True)
        if self.real_stars is not None:
            self.real_stars.write(self.root / "demo_real_stars.ecsv", overwrite=True)

    def flat_epoch(self, band: str) -> str:
        """``"old"`` or ``"new"``: the flat certified at the band's visit time."""
        return "old" if self.visit_begin[band] < self.flat_switch else "new"


def load_demo_repo(root: str | os.PathLike[str]) -> DemoRepo:
    """Reload the `DemoRepo` description saved by `build_demo_repo`.

    Raises
    ------
    FileNotFoundError
        If ``root`` holds no demo repository.
    """
    root = Path(root)
    meta_path = root / "demo.json"
    if not meta_path.exists():
        raise FileNotFoundError(f"{root} is not a demo repository (no demo.json).")
    meta = json.loads(meta_path.read_text())
    return DemoRepo(
        root=root, layout=RepoLayout(**meta["layout"]), bands=tuple(meta["bands"]),
        detectors=tuple(meta["detectors"]), shape=tuple(meta["shape"]), units=meta["units"],
        do_illumination_correction=meta["do_illumination_correction"],
        visits={b: int(v) for b, v in meta["visits"].items()},
        visit_begin={b: Time(t, scale="tai") for b, t in meta["visit_begin"].items()},
        physical_filters=meta["physical_filters"], flat_switch=Time(meta["flat_switch"], scale="tai"),
        flat_runs=meta["flat_runs"], catalog=Table.read(root / "demo_catalog.ecsv"), seed=int(meta.get("seed", 0)),
        real_stars=Table.read(root / "demo_real_stars.ecsv") if (root / "demo_real_stars.ecsv").exists() else None,
    )


def magnitude_range(band: str, *, faint_snr: float = 10.0, bright_fill: float = 0.5) -> tuple[float, float]:
    """AB magnitudes of injected stars from sky-limited to bright-but-unsaturated.

    With ``c0`` [nJy/e⁻] the photometric scaling, ``s`` the sky [e⁻/pixel]
    and σ the PSF width [pixels], a star of ``F`` e⁻ has a peak pixel of
    ``F/(2πσ²)`` e⁻ and, in an optimal aperture of ``4πσ²`` pixels,
    S/N ≈ ``F/√(F + 4πσ²·s)``.  The faint end has S/N = ``faint_snr``; the
    bright end fills ``bright_fill`` of the full well at the peak (the flat
    is ≤ 1.1 so the peak stays unsaturated).

    Returns
    -------
    bright, faint
        Magnitude limits (bright < faint).
    """
    params = BAND_PARAMETERS[band]
    c0 = photometric_scaling_njy_per_electron(band, EXPOSURE_TIME_S)
    sigma = params.psf_fwhm_arcsec / (2 * math.sqrt(2 * math.log(2))) / PIXEL_SCALE_ARCSEC
    area = 4 * math.pi * sigma**2
    # F²/(F + A s) = k²  →  F = (k² + √(k⁴ + 4k²As))/2.
    k2 = faint_snr**2
    faint_e = (k2 + math.sqrt(k2**2 + 4 * k2 * area * params.sky_electrons)) / 2
    bright_e = (bright_fill * COMCAM_FULL_WELL_ELECTRONS - params.sky_electrons) * 2 * math.pi * sigma**2

    def mag(electrons: float) -> float:
        return AB_MAG_OF_ONE_NJY - 2.5 * math.log10(electrons * c0)

    return mag(bright_e), mag(faint_e)


def _visit_times(bands: Sequence[str]) -> tuple[dict[str, Time], Time]:
    """One visit every 2 days; the flat switch halfway through the visits."""
    begin = {band: EPOCH_START + TimeDelta(2 * 86400 * (i + 1), format="sec") for i, band in enumerate(bands)}
    n_old = max((len(bands) + 1) // 2, 1)
    switch = EPOCH_START + TimeDelta(2 * 86400 * n_old + 86400, format="sec")
    return begin, switch


def _detector_center(detector: int, shape: tuple[int, int], index: int) -> tuple[float, float]:
    """Detectors side by side in RA, 5 % apart."""
    width_deg = shape[1] * PIXEL_SCALE_ARCSEC / 3600.0 * 1.05
    ra = FIELD_CENTER[0] + index * width_deg / math.cos(math.radians(FIELD_CENTER[1]))
    return ra, FIELD_CENTER[1]


def _sources(
    rng: np.random.Generator, n: int, source_types: Sequence[str], shape: tuple[int, int], margin: float
) -> Table:
    """Pixel positions, types, shapes and a magnitude quantile per source;
    galaxies are sized to the detector and kept half a stamp from its edges
    (`isrinject.demo.galaxies`)."""
    ny, nx = shape
    kinds = [source_types[i % len(source_types)] for i in range(n)]
    table = Table(
        {
            "x": rng.uniform(0.0, 1.0, n),  # fractions of the allowed span, set below
            "y": rng.uniform(0.0, 1.0, n),
            "source_type": kinds,
            "quantile": rng.uniform(0, 1, n),
            "n": rng.uniform(*SERSIC_N_RANGE, n),
            "half_light_radius": rng.uniform(*HALF_LIGHT_RADIUS_RANGE, n),
            "q": rng.uniform(0.4, 1.0, n),
            "beta": rng.uniform(0.0, 180.0, n),
        }
    )
    worst_seeing = max(p.psf_fwhm_arcsec for p in BAND_PARAMETERS.values())
    margins = edge_margins(np.asarray(kinds), np.asarray(table["n"]), np.asarray(table["half_light_radius"]),
                           np.asarray(table["q"]), shape=shape, psf_fwhm=worst_seeing,
                           pixel_scale=PIXEL_SCALE_ARCSEC, point_margin=margin)
    table["x"] = margins + table["x"] * (nx - 1 - 2 * margins)
    table["y"] = margins + table["y"] * (ny - 1 - 2 * margins)
    return table


def _grid_slots(rng: np.random.Generator, shape: tuple[int, int], margin: float) -> npt.NDArray[np.float64]:
    """Shuffled ``(x, y)`` of a square grid of `GRID_SPACING` pixels, jittered by ±1 pixel.

    Sources on distinct slots are ≥ ``GRID_SPACING − 2`` pixels apart, more
    than `isrinject.diagnostics.photometry.ISOLATION_FWHM` PSF FWHMs in every band.
    """
    ny, nx = shape
    xs = np.arange(margin, nx - 1 - margin + 1e-9, GRID_SPACING)
    ys = np.arange(margin, ny - 1 - margin + 1e-9, GRID_SPACING)
    grid = np.stack(np.meshgrid(xs, ys), axis=-1).reshape(-1, 2)
    grid += rng.uniform(-1.0, 1.0, grid.shape)
    return grid[rng.permutation(len(grid))]


def _assign_slots(
    rng: np.random.Generator, slots: npt.NDArray[np.float64], kinds: npt.NDArray[np.str_], n_real: int,
    buffer: int,
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Per source, its slot if it is a star and its slot if it is not; then the real stars' slots.

    The other sources (galaxies) take the highest slots; stars (injected and
    real, mixed at random) any of the rest but the ``buffer`` slots just below
    the galaxies, as far as there is room: the wings of bright galaxies reach
    beyond the grid spacing.

    Returns
    -------
    star_slots, galaxy_slots
        ``(len(kinds) + n_real, 2)`` and ``(len(kinds), 2)``: row ``i`` of each is
        source ``i``'s slot in the two cases; rows ``len(kinds):`` of ``star_slots``
        are the real stars'.
    """
    by_y = slots[np.argsort(-slots[:, 1], kind="stable")]
    is_star = kinds == "Star"
    n_stars, n_galaxies = int(is_star.sum()), int((~is_star).sum())
    free = len(slots) - n_galaxies - n_stars - n_real
    rest = by_y[n_galaxies + max(0, min(buffer, free)) :]
    stars = rest[rng.permutation(len(rest))[: n_stars + n_real]]
    star_slots = np.zeros((len(kinds) + n_real, 2))
    galaxy_slots = np.zeros((len(kinds), 2))
    star_slots[np.flatnonzero(is_star)] = stars[:n_stars]
    star_slots[len(kinds) :] = stars[n_stars:]
    galaxy_slots[np.flatnonzero(~is_star)] = by_y[:n_galaxies]
    return star_slots, galaxy_slots


def _real_stars(
    rng: np.random.Generator, slots: npt.NDArray[np.float64], bands: Sequence[str], detector: int
) -> Table:
    """Real stars on ``slots``: uniform in magnitude from `magnitude_range`'s bright end to aperture S/N
    `REAL_STAR_FAINT_SNR` (the same magnitudes in every band)."""
    quantile = rng.uniform(0, 1, len(slots))
    tables = []
    for band in bands:
        bright, _ = magnitude_range(band)
        _, faint = magnitude_range(band, faint_snr=REAL_STAR_FAINT_SNR)
        tables.append(Table({
            "band": [band] * len(slots), "detector": np.full(len(slots), detector),
            "x": slots[:, 0], "y": slots[:, 1], "source_type": ["Star"] * len(slots),
            "mag": bright + (faint - bright) * quantile,
        }))
    return vstack(tables) if tables else Table()


def _flats_and_seed(
    seed: int, b_index: int, band: str, detector: int, shape: tuple[int, int], amp_boxes: Sequence[Box]
) -> tuple[dict[str, tuple[np.ndarray, np.ndarray]], int]:
    """The old and new flats ``(f, V_f)`` of a band × detector and the seed of its exposure."""
    child = np.random.SeedSequence([seed, b_index, detector])
    flat_seed, sim_seed = (int(s.generate_state(1)[0]) for s in child.spawn(2))
    rng_flat = np.random.default_rng(flat_seed)
    flats = {epoch: make_flat(shape, band=band, amp_boxes=amp_boxes, rng=rng_flat) for epoch in ("old", "new")}
    return flats, sim_seed


def _simulate(*, d_index: int, shape: tuple[int, int], **kwargs: Any) -> SimulatedExposure:
    """`simulate_exposure` with the demo's camera, sky and pointing."""
    return simulate_exposure(
        shape=shape, exposure_time_s=EXPOSURE_TIME_S, pixel_scale_arcsec=PIXEL_SCALE_ARCSEC,
        ra_dec_center=_detector_center(kwargs["detector"], shape, d_index), **kwargs,
    )


def simulate_truth(demo: DemoRepo, band: str, detector: int) -> SimulatedExposure:
    """The demo's exposure of ``band`` × ``detector`` with its injection catalog put in *physically*.

    The same seed, flat and scene as the ``visit_image`` in the repository,
    plus the catalog's sources drawn by the simulator into the pre-flat
    electrons (photons through the true flat, Poisson noise, saturation,
    then ISR): `isrinject.sim.simulate_exposure` with ``sources=``, which
    gives pixels identical to the visit image's except for the added
    photons.  This is what an ISR-consistent injection must reproduce in
    distribution.
    """
    b_index, d_index = demo.bands.index(band), demo.detectors.index(detector)
    flats, sim_seed = _flats_and_seed(demo.seed, b_index, band, detector, demo.shape, amplifier_boxes(demo.shape))
    sources = demo.catalog[demo.catalog["band"] == band]
    return _simulate(
        background_sources=_real_stars_of(demo.real_stars, band, detector),
        band=band, visit=demo.visits[band], detector=detector, d_index=d_index, shape=demo.shape, seed=sim_seed,
        units=demo.units, do_illumination_correction=demo.do_illumination_correction,
        instrument=demo.layout.instrument, flat=flats[demo.flat_epoch(band)], obs_time=demo.visit_begin[band],
        sources=sources,
    )


def _real_stars_of(real_stars: Table | None, band: str, detector: int) -> Table | None:
    """The real stars of one band × detector (`None` when there are none)."""
    if real_stars is None or not len(real_stars):
        return None
    rows = real_stars[(real_stars["band"] == band) & (real_stars["detector"] == detector)]
    return rows if len(rows) else None


def _certify_calibrations(
    butler: Butler,
    layout: RepoLayout,
    sim: SimulatedExposure,
    band: str,
    data_id: dict[str, Any],
    flats: dict[str, tuple[np.ndarray, np.ndarray]],
    epoch: str,
    flat_runs: dict[str, str],
    ranges: dict[str, tuple[Time, Time | None]],
) -> None:
    """Certify both flat epochs of one detector (and its illumination correction, if simulated);
    record in the visit image the flat of its own epoch."""
    vi = sim.visit_image
    for name, (f, var_f) in flats.items():
        flat_image = MaskedImage(
            Image(f.astype(np.float32), bbox=vi.bbox), variance=Image(var_f.astype(np.float32), bbox=vi.bbox),
            mask_schema=sim.flat.mask.schema,
        )
        flat_ref = certify_calibration(
            butler, "flat", flat_image, data_id=data_id, run=flat_runs[name],
            calib_collection=layout.calib_collection, begin=ranges[name][0], end=ranges[name][1],
        )
        if name == epoch:
            # As ISR does: the visit image names the flat it was divided by.
            record_isr_flat(vi.metadata, flat_ref)
    if sim.illumination is not None:
        certify_calibration(
            butler, "illuminationCorrection",
            Image(sim.illumination.astype(np.float32), bbox=vi.bbox), data_id=data_id,
            run=f"{layout.calib_run}/illumination/{band}", calib_collection=layout.calib_collection,
            begin=None, end=None,
        )


def _band_catalog(
    positions: Table, visit_image: VisitImage, detector: int, band: str, bright: float, faint: float
) -> Table:
    """The sources of one detector on the sky, with this band's magnitudes (``bright``–``faint`` by quantile)."""
    table = positions.copy()
    sky = visit_image.sky_projection.pixel_to_sky(XY(x=np.asarray(table["x"]), y=np.asarray(table["y"])))
    table["ra"], table["dec"] = sky.ra.deg, sky.dec.deg
    # quantile^MAG_QUANTILE_POWER: about half the sources bright (peak S/N ≥ 50), the rest down to ``faint``.
    table["mag"] = bright + (faint - bright) * np.asarray(table["quantile"]) ** MAG_QUANTILE_POWER
    table["injection_id"] = detector * 100_000 + np.arange(len(table))
    table["band"] = band
    table.remove_columns(["x", "y", "quantile"])
    return table


def build_demo_repo(
    root: str | os.PathLike[str],
    *,
    bands: Sequence[str] = ("u", "g", "r", "i", "z", "y"),
    detectors: Sequence[int] = (0, 1),
    shape: tuple[int, int] = (256, 256),
    units: Literal["nJy", "electron"] = "nJy",
    do_illumination_correction: bool = False,
    n_sources: int = 20,
    source_types: Sequence[str] = ("Star", "Sersic"),
    seed: int = 0,
    layout: RepoLayout | None = None,
    faint_snr: float = 10.0,
    difference_images: bool = True,
    n_real_stars: int = 0,
) -> DemoRepo:
    """Create a local SQLite repository with simulated visits, flats and an injection catalog.

    Parameters
    ----------
    root
        New (or empty) directory for the repository.
    bands
        One visit per band, 2 days apart in this order.
    detectors
        Detector IDs (side by side on the sky).
    shape
        ``(ny, nx)`` of every detector.
    units
        ``"nJy"`` (calibrated) or ``"electron"`` visit images.
    do_illumination_correction
        Simulate an illumination correction R and certify it as
        ``illuminationCorrection``.
    n_sources
        Injected sources per detector and band (same positions in every band;
        magnitudes from `magnitude_range` of each band).
    source_types
        Cycled over the sources (``Star``, ``Sersic``, …).
    seed
        Seeds flats, scenes, noise and the catalog.
    layout
        Collection names (default `RepoLayout`).
    faint_snr
        S/N of the faintest injected sources (`magnitude_range`); below ≈ 5
        the catalog reaches past the detection limit (completeness < 1).
    difference_images
        Also put a template-convolved ``difference_image`` of every visit
        image (`isrinject.demo.difference`).
    n_real_stars
        Stars added to the observed scene of every detector (the real stars
        the classifier two-sample test compares injected stars with), on the
        grid slots the injected sources leave free, from the bright end of
        `magnitude_range` to aperture S/N `REAL_STAR_FAINT_SNR`.

    Returns
    -------
    demo
        `DemoRepo`.

    Raises
    ------
    FileExistsError
        If ``root`` exists and is not empty.
    """
    root = Path(root)
    if root.exists() and any(root.iterdir()):
        raise FileExistsError(f"{root} exists and is not empty; choose a new repository directory.")
    unknown = [b for b in bands if b not in BAND_PARAMETERS]
    if unknown:
        raise ValueError(f"Unknown band(s) {unknown}; expected some of {sorted(BAND_PARAMETERS)}.")
    if not bands or not detectors:
        raise ValueError("Need at least one band and one detector.")
    layout = layout or RepoLayout()
    bands, detectors = tuple(bands), tuple(int(d) for d in detectors)
    shape = (int(shape[0]), int(shape[1]))
    root.mkdir(parents=True, exist_ok=True)
    butler = create_repo(str(root))
    filters = register_instrument(butler, layout.instrument, bands=bands, detectors=detectors)
    register_dataset_types(butler)
    if difference_images:
        register_difference_image(butler)
    begin, switch = _visit_times(bands)
    flat_runs = {"old": f"{layout.calib_run}/flat-old", "new": f"{layout.calib_run}/flat-new"}
    ranges = {"old": (EPOCH_START, switch), "new": (switch, None)}
    seeds = np.random.SeedSequence(seed)
    rng_catalog = np.random.default_rng(seeds.spawn(1)[0])
    positions = {d: _sources(rng_catalog, n_sources, source_types, shape, margin=12.0) for d in detectors}
    # Injected sources and real stars on distinct slots of one grid (isolated by construction).
    real_tables = []
    for d in detectors:
        slots = _grid_slots(rng_catalog, shape, margin=12.0)
        if len(slots) >= n_sources + n_real_stars:
            star_slots, galaxy_slots = _assign_slots(rng_catalog, slots, np.asarray(positions[d]["source_type"]),
                                                     n_real_stars, buffer=3 * math.ceil(shape[1] / GRID_SPACING))
            is_star = (np.asarray(positions[d]["source_type"]) == "Star")[:, None]
            xy = np.where(is_star, star_slots[:n_sources], galaxy_slots)
            positions[d]["x"], positions[d]["y"] = xy[:, 0], xy[:, 1]
            if n_real_stars:
                real_tables.append(_real_stars(rng_catalog, star_slots[n_sources:], bands, d))
        elif n_real_stars:
            raise ValueError(f"{n_sources} sources and {n_real_stars} real stars per detector do not fit on the "
                             f"{len(slots)} grid slots of a {shape} detector; lower --n-real-stars (0: none) or "
                             "--n-sources, or raise --size.")
    real_stars = vstack(real_tables) if real_tables else None
    amp_boxes = amplifier_boxes(shape)
    visits = {band: 1000 + 10 * i for i, band in enumerate(bands)}
    catalogs = []
    for b_index, band in enumerate(bands):
        bright, faint = magnitude_range(band, faint_snr=faint_snr)
        sims = {}
        regions = {}
        for d_index, detector in enumerate(detectors):
            flats, sim_seed = _flats_and_seed(seed, b_index, band, detector, shape, amp_boxes)
            epoch = "old" if begin[band] < switch else "new"
            sim = _simulate(
                band=band, visit=visits[band], detector=detector, d_index=d_index, shape=shape, seed=sim_seed,
                units=units, do_illumination_correction=do_illumination_correction, instrument=layout.instrument,
                flat=flats[epoch], obs_time=begin[band],
                background_sources=_real_stars_of(real_stars, band, detector),
            )
            sims[detector] = sim
            vi = sim.visit_image
            regions[detector] = detector_region(vi.sky_projection, vi.bbox)
            data_id = {"instrument": layout.instrument, "detector": detector, "physical_filter": filters[band]}
            _certify_calibrations(butler, layout, sim, band, data_id, flats, epoch, flat_runs, ranges)
            catalogs.append(_band_catalog(positions[detector], vi, detector, band, bright, faint))
        register_visit(
            butler, layout.instrument, visit=visits[band], physical_filter=filters[band], begin=begin[band],
            end=begin[band] + TimeDelta(EXPOSURE_TIME_S, format="sec"), detector_regions=regions,
            exposure_time=EXPOSURE_TIME_S,
        )
        for d_index, (detector, sim) in enumerate(sims.items()):
            put_visit_image(butler, sim.visit_image, instrument=layout.instrument, visit=visits[band],
                            detector=detector, run=layout.raw_run)
            if difference_images:
                # The same scene (same seed) drawn with the template's PSF.
                flats, sim_seed = _flats_and_seed(seed, b_index, band, detector, shape, amp_boxes)
                template = functools.partial(
                    _simulate, band=band, visit=visits[band], detector=detector, d_index=d_index, shape=shape,
                    seed=sim_seed, units=units, instrument=layout.instrument, obs_time=begin[band],
                    flat=flats["old" if begin[band] < switch else "new"],
                )
                put_difference_image(butler, sim, template, instrument=layout.instrument, visit=visits[band],
                                     detector=detector, run=layout.raw_run, seed=sim_seed)
    catalog = vstack(catalogs)
    order = ["injection_id", "ra", "dec", "source_type", "mag", "n", "half_light_radius", "q", "beta", "band"]
    catalog = catalog[order]
    for band in bands:
        rows = catalog[catalog["band"] == band]
        rows.remove_column("band")
        ingest_injection_catalog(butler, rows, band, layout.catalog_run)
    set_input_chain(butler, layout.inputs, [layout.raw_run, layout.calib_collection, layout.catalog_run])
    demo = DemoRepo(
        root=root, layout=layout, bands=bands, detectors=detectors, shape=shape, units=units,
        do_illumination_correction=do_illumination_correction, visits=visits, visit_begin=begin,
        physical_filters=filters, flat_switch=switch, flat_runs=flat_runs, catalog=catalog, seed=seed,
        real_stars=real_stars,
    )
    demo.save()
    return demo
