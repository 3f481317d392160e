"""Physical detector + ISR simulator: the truth isrinject is tested against.

`simulate_exposure` draws a scene with GalSim, puts its photons into the
pre-flat electrons of a ComCam-like detector (flat, illumination, Poisson
and read noise, saturation) and runs the ISR steps of doc/isrinject/design.md to produce
an `lsst.images.VisitImage`.  `make_flat` and `make_detector` are the
building blocks.  `simulate_difference` adds a template of the same scene and
their difference image (`isrinject.sim.difference`).
"""

from .camera import (
    COMCAM_FULL_WELL_ELECTRONS,
    amplifier_boxes,
    amplifier_index_map,
    default_comcam_csv,
    load_comcam_amplifiers,
    make_comcam_detector,
    make_detector,
)
from .difference import SimulatedDifference, gaussian_matching_kernel, simulate_difference
from .flat import FLAT_BANDS, FlatBandParameters, make_flat, measure_flat, true_flat, vignetting
from .isr import (
    BAND_PARAMETERS,
    SIM_SOURCE_TYPES,
    BandParameters,
    SimulatedExposure,
    illumination_correction,
    mag_to_njy,
    photometric_scaling_njy_per_electron,
    simulate_exposure,
)

__all__ = [
    "BAND_PARAMETERS",
    "COMCAM_FULL_WELL_ELECTRONS",
    "FLAT_BANDS",
    "SIM_SOURCE_TYPES",
    "BandParameters",
    "FlatBandParameters",
    "SimulatedDifference",
    "SimulatedExposure",
    "amplifier_boxes",
    "amplifier_index_map",
    "default_comcam_csv",
    "gaussian_matching_kernel",
    "illumination_correction",
    "load_comcam_amplifiers",
    "mag_to_njy",
    "make_comcam_detector",
    "make_detector",
    "make_flat",
    "measure_flat",
    "photometric_scaling_njy_per_electron",
    "simulate_difference",
    "simulate_exposure",
    "true_flat",
    "vignetting",
]
