"""The project store: one zarr v3 directory (``NAME.zarr``) per labeling project.

The package owns the store's format; other modules use :class:`ProjectStore` and the functions
re-exported here, never the submodules' internals:

- :mod:`.project` the store object (open, lock, settings, classes, images), with the label
  methods of :mod:`.labels` and the derived-array and model methods of :mod:`.derived`;
- :mod:`.importing` and :mod:`.staging` bring images in (checked, staged, one rename);
  :mod:`.pyramid` tiles and resolution levels; :mod:`.ngff` what other OME-Zarr tools see;
- :mod:`.journal` and :mod:`.lock` make changes atomic and one writer at a time;
  :mod:`.check` verifies and repairs, :mod:`.damage` names damaged chunks;
  :mod:`.layout` constants, image metadata and small helpers.

Layout (valid OME-Zarr / NGFF 0.5; full description in ``docs/store.md``)::

    NAME.zarr/
      zarr.json                    attributes.napari_hitl: schema_version, classes, image order,
                                   settings, history (one record per Train);
                                   attributes.ome: bioformats2raw.layout 3
      OME/zarr.json                attributes.ome.series: the image groups, in order
      images/
        <image>/                   NGFF multiscale image, axes c[,z],y,x or t,c,y,x; omero
                                   channel names
          0, 1, …                  the bands at each pyramid level, dtype as imported
          labels/                  NGFF labels group: ["annotations"]
            annotations/0, 1, …    uint16 labels, 0 = unlabeled (human + accepted machine),
                                   one level per image level (nearest-neighbour)
          hitl/
            provenance             uint16: 0 unlabeled, 1 human, k+1 machine from iteration k
            valid                  bool, only where some pixels are NaN/inf/nodata
            <derived>              predictions, confidence... each with a signature

Writes that add or replace an image go to a hidden sibling folder first and are moved into place
in one rename, so a failure at any point leaves the existing store exactly as it was.
"""

from __future__ import annotations

from napari_hitl.core.store.damage import (
    damaged_store_error,
    find_damaged_chunk,
    is_decode_error,
    open_store,
    store_summary,
)
from napari_hitl.core.store.importing import (
    ImportItem,
    ImportResult,
    add_image,
    human_labeled_pixels,
    import_raster,
    import_rasters,
)
from napari_hitl.core.store.labels import check_labels
from napari_hitl.core.store.layout import (
    ATTR,
    LABEL_DTYPE,
    PROVENANCE_HUMAN,
    PROVENANCE_UNLABELED,
    SCHEMA_VERSION,
    ImageInfo,
    LabelState,
    StrokeSave,
    machine_provenance,
    staging_name,
)
from napari_hitl.core.store.ngff import NGFF_VERSION
from napari_hitl.core.store.project import ProjectStore
from napari_hitl.core.store.pyramid import (
    PYRAMID_MIN_EDGE,
    PYRAMID_TOP_EDGE,
    TILE,
    downsample2,
    level_shape,
    pyramid_levels,
)

__all__ = [
    "ATTR",
    "LABEL_DTYPE",
    "NGFF_VERSION",
    "PROVENANCE_HUMAN",
    "PROVENANCE_UNLABELED",
    "PYRAMID_MIN_EDGE",
    "PYRAMID_TOP_EDGE",
    "SCHEMA_VERSION",
    "TILE",
    "ImageInfo",
    "ImportItem",
    "ImportResult",
    "LabelState",
    "ProjectStore",
    "StrokeSave",
    "add_image",
    "check_labels",
    "damaged_store_error",
    "downsample2",
    "find_damaged_chunk",
    "human_labeled_pixels",
    "import_raster",
    "import_rasters",
    "is_decode_error",
    "level_shape",
    "machine_provenance",
    "open_store",
    "pyramid_levels",
    "staging_name",
    "store_summary",
]
