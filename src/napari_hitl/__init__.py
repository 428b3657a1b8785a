"""napari-hitl: human-in-the-loop labeling of multiband scientific images.

Importing this package loads neither napari nor Qt: the learning core, the project store and the
CLI run on headless servers. The napari contributions live in :mod:`napari_hitl._napari` (no Qt)
and :mod:`napari_hitl._qt` (widgets).
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("napari-hitl")
except PackageNotFoundError:  # pragma: no cover - running from a source tree without install
    __version__ = "0+unknown"

__all__ = ["__version__"]
