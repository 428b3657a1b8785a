"""napari contributions that need napari but never Qt: reader, writer, sample data, layers."""
