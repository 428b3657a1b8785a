"""Qt widgets: the only place in napari-hitl that imports qtpy, magicgui or superqt."""
