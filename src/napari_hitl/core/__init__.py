"""The napari-free core of napari-hitl: project store, import/export, learning loop.

Only numpy, torch, zarr, dask, tifffile, scikit-image/learn and scipy are imported here — never
napari, Qt or magicgui (a test enforces it), so the same code serves the GUI, the CLI and tests.
"""
