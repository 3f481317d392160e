"""Pinned output of one fixed-seed injection (a refactoring guard).

``VisitInjectTask.run`` injects stars, Sersic galaxies, a trail and a FITS
stamp (two of them overlapping) into a simulated u-band visit image with a
structured flat and its variance, an illumination correction, amplifier
saturation and defects (NO_DATA rows, BAD columns), plus one bad catalog row.
The sha256 of the output image, variance and mask arrays and of every output
catalog column (float64 columns rounded to 12 significant digits, as a per-source
sum may be regrouped at the last bit) were recorded from the code before the engine was split out of
the task; any change to the numbers (not only to the layout) fails the test.

One pin was re-recorded on purpose since: ``injection_flux`` (the engine
move computes each source's share n/g in float64; the task used to multiply
the float32 flat and illumination first, a 1e-9 relative difference); and
``image``, ``variance`` and ``injection_flux`` once more when Sersic k-images
came from the shipped table (`isrinject.engine.draw.sersic_table`, within 1e-5 of
the peak of GalSim's exact profile): with the table switched off the old
pins still held.  ``catalog.meta`` once when the modules moved into
`isrinject.engine` / `isrinject.tasks`: its ``injection_flag_doc`` string names
the module of `~isrinject.engine.flags.InjectionFlag` (no number changed).
``image``, ``variance``, ``mask``, ``injection_flag``, ``injection_draw_size``,
``injection_flux`` and ``injection_flux_electrons`` once more, with the new
``injection_truncated_fraction`` pin, when stamps became noise-aware and
``INJECTED`` a threshold on the model (issue 22,
`isrinject.engine.draw.extent`): smaller stamps leave out wings below the
noise (so fewer pixels draw noise and the seeded draws fall differently) and
``INJECTED`` no longer covers the whole stamp; the flags because the
trail's smaller stamp no longer leaves the image (no PARTIAL_OVERLAP) and the
overlapping Sérsic's pixels on the saturated star now cross saturation in
this noise realization.  With
``stamp_noise_fraction = injected_noise_fraction = 0`` every old pin still
held; only the new column was added.

Issue 23 (bleed trails and ISR's saturation treatment) re-recorded the pins
the pinned run's saturating star changes, and only those: source 1 (mag 11.5)
passes the saturation level, so with the defaults its charge bleeds along the
columns and the grown SATURATED pixels are interpolated over (``image``,
``variance``, ``mask``); ``injection_flux`` of source 1 (and of source 3,
whose n = 4 wings put a few electrons into the over-full pixels) changes by
the bled charge; ``injection_flag`` gains BLED / INTERPOLATED; the new
``injection_lost_electrons`` column gets a pin; ``catalog.meta`` lists the two
new flag bits.  `PINS_BEFORE_BLEED` are the pins before issue 23:
``do_bleed=False`` and ``do_saturation_interpolation=False`` reproduce them
all (only the new column and the flag list in ``catalog.meta`` differ).
When issues 22 and 23 were merged the combined pins were recorded once:
with the bleed and interpolation off, every pin of issue 22's noise-aware
stamps held unchanged (only ``injection_lost_electrons`` and the flag list in
``catalog.meta`` are new), which is what `PINS_BEFORE_BLEED` holds now.

Stars re-recorded ``image``, ``variance``, ``mask``, ``injection_flux``,
``injection_flux_electrons`` and ``injection_truncated_fraction`` (in both
sets) when a star became the PSF's own ``compute_stellar_image`` at its
position (`isrinject.engine.draw.stellar`) instead of the cached kernel
shifted with GalSim's quintic, which was off by up to 0.45 % of the peak for
σ = 1.7 px and 0.15 % for the u band's σ = 2.1 px (a real rendering error, the
classifier test's AUC excess; ``tests/test_draw.py``).  Flags, draw sizes
and every other column held; the inputs are unchanged.

The input is pinned as well: if the simulator changes, the input hashes fail
first and the output hashes must be re-recorded (``ISRINJECT_PRINT_PINS=1``
prints them) from a commit whose engine is known to be unchanged.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import galsim
import numpy as np
import pytest
from astropy.table import Table
from lsst.images import XY, Image

from isrinject import VisitInjectConfig, VisitInjectTask
from isrinject.sim import simulate_exposure
from isrinject.tasks.marking import CONFIG_HASH_KEY, VERSION_KEY

SHAPE = (160, 192)

#: sha256 of the simulated inputs (image, variance, mask, flat image, flat variance, illumination).
INPUT_PINS = {
    "image": "cee0961c1b607195c2b7281a69954f6b4d35caf89f847688d1b6c35cdaed804e",
    "variance": "0f9b8ba0720e09818e26dc8968018e0eec79b2a57ff5d594c87cefea205e6701",
    "mask": "e62f1794ee17f94c7c1a21c94eb1d74adaf0edeb210ff8981fe8fe046afb8c8a",
    "flat": "39e8856c2ce25b08f562c3c6d149b030df5d936b27c248b7fd21a6d73b00d8ad",
    "flat_variance": "30f11aa63b827b1a4efe29e4ea87bae854bc7d7f06fc6d164632ba763d6cd95f",
    "illumination": "5265e5175420d4c2bdf72d8689b8c1ea4d2ecca41c35185c6a47cc2892769b90",
}

#: sha256 of the output planes and of every output catalog column.
OUTPUT_PINS = {
    "image": "294a7131f254e0cc65dac43517e19bd9c2d0c77d8ccb83b5fc1d2fed8d12ae2e",
    "variance": "3e7292fd9623d8d8df880e459b3a43731a649295d81739f1a2268320a65fb594",
    "mask": "76c3af5885995f5685d2192b680403aeac572a21986308245cf08b70b3434486",
    "mask_planes": "ab9943008abe515bdb1a30ffa73e4608ebb3f6d214c76fcf1d63468d08d633a8",
    "catalog.injection_id": "84ca4f50986f859425dcfceda2b5fe6bd467aa7c5fe638ba980433b5ab47761f",
    "catalog.injection_flag": "9e025a75b7e212c58843e5f2fccdd45bb585e142b37ced2a53a42d5d48c293e4",
    "catalog.injection_draw_size": "efec3286b8e6635319364fb7ff6a21c25f75cd2cec6ac6bafa9ab718e7bd0672",
    "catalog.ra": "bac472ee9db5265ddfa3d1e380150b943c827ccb42415d2171eedc5a22ab286f",
    "catalog.dec": "b6c2785f8c440b249edcbf1bec72c852d0bfc431305c249da83814fe051c779d",
    "catalog.source_type": "3ed08a4706aa79240627e4b29c87e928ccbfbb451ecb14082f9b5fec31411b44",
    "catalog.mag": "898c44e0347db335b8cd1cef76c2f3234232e70be3525cf05889a9dec55bffba",
    "catalog.n": "0e6b051e59f49986b6faeb8b8449787b173deb48265fdd80ce244ecfc601e0ef",
    "catalog.half_light_radius": "4e4c1a6a192411da54941cac994c83f60061e2523f16b640c2f1cb549c831b86",
    "catalog.q": "bdb6713ca723275e62ffcc56d5938cc0c16fcf256e4318e6193c7a1b9ee1f665",
    "catalog.beta": "584ea15250b18f433a0d35af753d094326b0a8040f79931fed6f5e8599e65ca7",
    "catalog.trail_length": "733ef683803d2734faedc7c2fb6135badcbdede2b850a12247ca7dafa2228a93",
    "catalog.stamp": "c62c47fa93389c4ce9dec61ffef13a3a1ff34cbfaf7aab92ce144d328e85ab64",
    "catalog.x": "30bfed7ba6b0a407fc12fb2eccb04ca99baa3c82144a412b67a6d1fd51735e10",
    "catalog.y": "3e9020c0f12851ea3ff9e519e19c206ad9aee0107ee8a47141f80c947a5c023e",
    "catalog.injection_flux": "cdb3cfa645050753ead8f2999263ede8198ee5906a60f0c8d7e1ebad72971327",
    "catalog.injection_flux_electrons": "20e231ab956b0ac67594a08aa5b557c948b6f3dac39e063ac1b814f666f42e01",
    "catalog.injection_model_flux": "2c7215a5a26a72d3e5f20baead7b892fe3b15c49a82392d96a21d070ba0c0264",
    "catalog.injection_flat": "e34f67952202e83a17b7af243189af2ac74934e42575f22f6154797778e33e37",
    "catalog.injection_effective_gain": "e09a9b188c0879ee8280d4cb8f80a13da9f0fa60ebc91863446edf63f1a4a7a0",
    "catalog.injection_lost_electrons": "c60c71867456d5bccb3841549bb545987add908187ee6a73a9acbbcf5235da1d",
    "catalog.injection_truncated_fraction": "ea76094e89ae39ba255d65a2825f431a9f49e829973e51e1432d0af31caf5da8",
    "catalog.meta": "585405dae89b15709fa377ce99ac65d752518767fb956522fb63f3e2551b76da",
}

#: The pins before issue 23 (bleed and ISR's saturation treatment), with the
#: new column's pin and the meta listing its two new flag bits.
PINS_BEFORE_BLEED = {
    **OUTPUT_PINS,
    "image": "2e6cc162a292138ceefb97c804a45eb677b056a212a81f7139f95f2182998cf7",
    "variance": "0ba908a011049f993a8386274284c3116ca71c68ab2f0868215b8eb6b0f5c9e6",
    "mask": "a5bdf009adabfb3d74c87a11fd891b92d9a56bf6621ee6f2ff4454faa4e2a925",
    "catalog.injection_flag": "5d60d8fe6edc96438b298d8b7498e364ce159bc70ca9255ad5a97cbe2ba9b308",
    "catalog.injection_flux": "34394a9876793afafb1e2685818d6f29d2ab2789b8cd8c785fcb84ee35a367d4",
}


def _sha256(values: np.ndarray, significant_digits: int | None = None) -> str:
    values = np.ascontiguousarray(values)
    if significant_digits is not None and values.dtype == np.float64:
        # Per-source sums may be reordered or regrouped at the last bit.
        with np.errstate(invalid="ignore", divide="ignore"):
            scale = 10.0 ** (significant_digits - 1 - np.floor(np.log10(np.abs(values))))
            values = np.where(np.isfinite(scale), np.round(values * scale) / scale, values)
    if values.dtype.kind in "OUS":
        data = "\x1f".join(str(v) for v in values.tolist()).encode()
    else:
        data = values.tobytes()
    return hashlib.sha256(f"{values.dtype.str}{values.shape}".encode() + data).hexdigest()


def _stamp_file(directory: Path) -> str:
    """A small elliptical galaxy image as a FITS stamp (deterministic)."""
    path = directory / "galaxy.fits"
    profile = galsim.Exponential(half_light_radius=0.8).shear(q=0.5, beta=20 * galsim.degrees)
    profile.drawImage(nx=25, ny=25, scale=0.2).write(str(path))
    return path.name


def _catalog(sim, stamp_name: str) -> Table:
    #           star   star(bright, saturates)  sersic  sersic(overlaps) trail   stamp  star(bad mag)  star(edge)
    x = np.array([40.3, 120.6, 70.2, 74.9, 140.0, 40.0, 100.0, 2.0])
    y = np.array([30.7, 110.2, 80.4, 83.1, 40.0, 120.0, 60.0, 157.5])
    sky = sim.visit_image.sky_projection.pixel_to_sky(XY(x=x, y=y))
    n = len(x)
    return Table(
        {
            "injection_id": np.arange(n),
            "ra": sky.ra.deg,
            "dec": sky.dec.deg,
            "source_type": ["Star", "Star", "Sersic", "Sersic", "Trail", "Stamp", "Star", "Star"],
            "mag": [19.0, 11.5, 18.5, 19.5, 17.0, 18.0, np.nan, 19.0],
            "n": [np.nan, np.nan, 1.5, 4.0, np.nan, np.nan, np.nan, np.nan],
            "half_light_radius": [np.nan, np.nan, 0.8, 0.5, np.nan, np.nan, np.nan, np.nan],
            "q": [np.nan, np.nan, 0.6, 0.9, np.nan, np.nan, np.nan, np.nan],
            "beta": [np.nan, np.nan, 30.0, -10.0, 25.0, np.nan, np.nan, np.nan],
            "trail_length": [np.nan, np.nan, np.nan, np.nan, 30.0, np.nan, np.nan, np.nan],
            "stamp": ["", "", "", "", "", stamp_name, "", ""],
        }
    )


def _pinned_run(directory: Path, **overrides):
    sim = simulate_exposure(
        band="u", visit=41, detector=3, shape=SHAPE, seed=13, units="nJy",
        do_illumination_correction=True, defects=True, n_background_stars=6, n_background_galaxies=4,
    )
    config = VisitInjectConfig()
    config.do_illumination_correction = True
    config.stamp_prefix = f"{directory}{os.sep}"
    config.noise_seed = 7
    for name, value in overrides.items():
        setattr(config, name, value)
    task = VisitInjectTask(config=config)
    illumination = Image(sim.illumination.astype(np.float32), bbox=sim.visit_image.bbox)
    inputs = {
        "image": sim.visit_image.image.array,
        "variance": sim.visit_image.variance.array,
        "mask": sim.visit_image.mask.array,
        "flat": sim.flat.image.array,
        "flat_variance": sim.flat.variance.array,
        "illumination": illumination.array,
    }
    input_hashes = {name: _sha256(values) for name, values in inputs.items()}
    result = task.run(
        visit_image=sim.visit_image,
        injection_catalogs=[_catalog(sim, _stamp_file(directory))],
        flat=sim.flat,
        illumination_correction=illumination,
    )
    return input_hashes, result


@pytest.fixture(scope="module")
def pinned_run(tmp_path_factory: pytest.TempPathFactory):
    return _pinned_run(tmp_path_factory.mktemp("pinned"))


def _output_hashes(result) -> dict[str, str]:
    image = result.injected_visit_image
    catalog = result.injected_visit_image_catalog
    hashes = {
        "image": _sha256(image.image.array),
        "variance": _sha256(image.variance.array),
        "mask": _sha256(image.mask.array),
        "mask_planes": _sha256(np.array(list(image.mask.schema.names))),
    }
    for name in catalog.colnames:
        hashes[f"catalog.{name}"] = _sha256(np.ma.filled(catalog[name]), significant_digits=12)
    # isrinject's version and the config hash are not output numbers: they
    # change with every release or new config field (tests/test_marking.py
    # checks them).
    meta = {k: v for k, v in catalog.meta.items() if k not in (VERSION_KEY, CONFIG_HASH_KEY)}
    hashes["catalog.meta"] = _sha256(np.array([f"{k}={v}" for k, v in sorted(meta.items())]))
    return hashes


def test_the_run_exercises_every_part_of_the_engine(pinned_run) -> None:
    """The pinned run is worth pinning: saturation, overlap, flags, V_f, R all occur."""
    _, result = pinned_run
    out = result.injected_visit_image
    flags = np.asarray(result.injected_visit_image_catalog["injection_flag"])
    from isrinject.engine.flags import InjectionFlag

    bright = InjectionFlag.SATURATED | InjectionFlag.BLED | InjectionFlag.INTERPOLATED
    assert flags[1] & bright == bright
    assert out.mask.get("INTERPOLATED").any()
    assert flags[6] & InjectionFlag.MAG_BAD
    assert flags[7] & InjectionFlag.PARTIAL_OVERLAP
    assert out.mask.get("SATURATED").any() and out.mask.get("INJECTED_CORE").sum() >= 6 * 9
    assert np.all(np.isfinite(result.injected_visit_image_catalog["injection_flux"][:6]))


def test_output_is_unchanged(pinned_run) -> None:
    input_hashes, result = pinned_run
    output_hashes = _output_hashes(result)
    if os.environ.get("ISRINJECT_PRINT_PINS"):
        print("INPUT_PINS =", input_hashes)
        print("OUTPUT_PINS =", output_hashes)
    assert input_hashes == INPUT_PINS, "the simulated input changed: re-record the pins (see the module docstring)"
    assert output_hashes == OUTPUT_PINS


def test_bleed_and_interpolation_off_reproduce_the_pins_before_them(tmp_path: Path) -> None:
    """``do_bleed=False``, ``do_saturation_interpolation=False``: today's numbers before issue 23."""
    _, result = _pinned_run(tmp_path, do_bleed=False, do_saturation_interpolation=False)
    assert _output_hashes(result) == PINS_BEFORE_BLEED
