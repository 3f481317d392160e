# Overrides for visit images kept in electrons (post-ISR, before photometric
# calibration) that carry no photometric_scaling: magnitudes are converted with
# this constant scaling [nJy per electron].
config.scaling_source = "constant"
config.photometric_scaling = 1.0
