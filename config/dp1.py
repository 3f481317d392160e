# Overrides for a DP1-style repository (LSSTComCam, Rubin Science Pipelines v29+):
# calibrated visit images and calibrations are stored as ExposureF, and the
# visit images were divided by an illumination correction after ISR.
config.visit_image_storage_class = "ExposureF"
config.flat_storage_class = "ExposureF"
config.do_illumination_correction = True
config.illumination_storage_class = "ExposureF"
