"""The injection engine: everything that turns catalog rows into pixels, without a butler.

Layers, imports pointing down only:

1. ``isrinject.engine.model`` — the per-pixel ISR model (pure numpy), with
   ``isrinject.engine.flags`` and ``isrinject.engine.masks`` beside it;
2. ``isrinject.engine.draw`` — a catalog row → noiseless stamp (GalSim, the image's PSF);
3. ``isrinject.engine.catalog`` — the injection catalog: schema, validation, generation, ingestion;
4. ``isrinject.engine.calibration`` — what ISR did to an image (f, V_f, R, c, σ_a, saturation);
   ``isrinject.engine.saturation`` — bleed trails and ISR's SAT / SUSPECT / interpolation
   of saturated pixels (also used by the simulator);
5. ``isrinject.engine.inject`` — rows → stamps → pixel model → masks and output catalog.

Nothing here imports ``lsst.pipe.base``; a butler appears only as an argument
(catalog ingestion).  The PipelineTasks that call the engine live in
``isrinject.tasks``.
"""
