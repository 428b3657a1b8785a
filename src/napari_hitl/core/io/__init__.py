"""Reading and writing rasters outside the store: GeoTIFF/TIFF/PNG, georeferencing, band names,
exports, OME-Zarr input."""
