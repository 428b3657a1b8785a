"""Importing rasters: checked first, staged beside the store, committed in one rename."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import uuid
from collections.abc import Generator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from napari_hitl.core.errors import (
    InputFileError,
    StoreError,
)
from napari_hitl.core.io.rasters import Raster
from napari_hitl.core.progress import CancelToken, Progress, run_to_end
from napari_hitl.core.store.classes import (
    ClassInfo,
    check_class_count,
    classes_from_json,
    default_color,
)
from napari_hitl.core.store.damage import open_store
from napari_hitl.core.store.labels import check_labels
from napari_hitl.core.store.layout import (
    PROVENANCE_HUMAN,
    ImageInfo,
    atomic_write_json,
    staging_name,
    validate_name,
)
from napari_hitl.core.store.project import ProjectStore
from napari_hitl.core.store.pyramid import (
    TILE,
    level_count,
    pyramid_tiles,
    spatial_tiles,
)
from napari_hitl.core.store.staging import ImportItem, class_label_attrs, stage_image


@dataclass
class ImportResult:
    """What :func:`import_rasters` did (the generator's return value)."""

    store: ProjectStore
    images: list[ImageInfo]
    discarded: dict[str, int] = field(default_factory=dict)  # replaced image → human px gone
    created: bool = False


@dataclass
class ImportPlan:
    items: list[ImportItem]
    classes: list[ClassInfo]
    classes_changed: bool
    discarded: dict[str, int]


def human_labeled_pixels(store: ProjectStore, name: str) -> int:
    """How many pixels of image ``name`` a person labeled (provenance human), read by tiles."""
    prov = store.provenance_array(name)
    return sum(
        int(np.count_nonzero(np.asarray(prov[tile]) == PROVENANCE_HUMAN))
        for tile in spatial_tiles(tuple(prov.shape), 4 * TILE)
    )


def plan_import(
    store: ProjectStore | None,
    items: Sequence[ImportItem],
    classes: Sequence[ClassInfo] | None,
    rgb: tuple[int, ...] | None,
    overwrite: bool,
    discard_labels: bool,
) -> ImportPlan:
    """Check everything an import needs before anything is written; raise on the first problem."""
    if not items:
        raise InputFileError("input", "no images to import")
    where = str(store.path) if store is not None else "the new store"
    seen: dict[str, str] = {}
    for item in items:
        src = item.raster.sources[0] if item.raster.sources else item.name
        validate_name(item.name)
        if item.name in seen:
            raise InputFileError(
                src,
                f"two images would be named {item.name!r} (also {seen[item.name]}); "
                "give them different names",
            )
        seen[item.name] = src
    checked: list[ImportItem] = []
    discarded: dict[str, int] = {}
    label_values: set[int] = set()
    for item in items:
        raster = item.raster
        src = raster.sources[0] if raster.sources else item.name
        if raster.dtype.kind not in "uifb" or raster.dtype.itemsize > 8:
            raise InputFileError(src, f"pixel type {raster.dtype} is not supported")
        if store is not None and item.name in store:
            if not overwrite:
                raise StoreError(
                    f"{where} already has an image {item.name!r}; pass overwrite (--overwrite) "
                    "to replace it"
                )
            human = human_labeled_pixels(store, item.name)
            if human and not discard_labels:
                raise StoreError(
                    f"{where}: replacing image {item.name!r} would discard its {human} "
                    "human-labeled pixels; allow that with --discard-labels "
                    "(discard_labels=True), or import under another name"
                )
            discarded[item.name] = human
        if rgb is not None and (len(rgb) != 3 or not all(0 <= i < raster.n_bands for i in rgb)):
            raise InputFileError(
                src, f"RGB bands {rgb} must be 3 indices in 0..{raster.n_bands - 1}"
            )
        labels = item.labels
        if labels is not None:
            try:
                labels = check_labels(
                    labels, raster.spatial_shape, None, what=f"labels for {item.name!r}"
                )
            except ValueError as exc:
                raise InputFileError(src, str(exc)) from exc
            label_values.update(int(v) for v in np.unique(labels) if v)
        checked.append(ImportItem(item.name, raster, labels))
    current = store.classes if store is not None else []
    base = list(classes) if classes is not None else list(current)
    known = {c.value for c in base}
    extra = [ClassInfo(v, f"class {v}", default_color(v)) for v in sorted(label_values - known)]
    final = classes_from_json([c.to_json() for c in [*base, *extra]])
    check_class_count(
        len(final), "the project after this import (mask values without a class become classes)"
    )
    return ImportPlan(checked, final, final != current, discarded)


def import_rasters(
    store: ProjectStore | str | os.PathLike[str],
    items: Sequence[ImportItem],
    *,
    classes: Sequence[ClassInfo] | None = None,
    rgb: Sequence[int] | None = None,
    units: Sequence[str | None] | None = None,
    wavelengths: Sequence[float | None] | None = None,
    overwrite: bool = False,
    discard_labels: bool = False,
    pyramid: bool | None = None,
    cancel: CancelToken | None = None,
) -> Generator[Progress, None, ImportResult]:
    """Import several images (and their labels and classes) as one transaction.

    Everything is checked first — names, pixel types, RGB bands, label masks against each
    image's shape, the class list — and nothing is written when a check fails. The images are
    then written tile by tile into hidden folders; only when all of them are complete are they
    moved into place and the class list and image order written in one replacement of the
    root metadata. A failure, a cancel or Ctrl-C at any point before that leaves the store
    byte for byte as it was, and a store that did not exist is not created: a new store is
    built in a hidden sibling folder and renamed into place at the end.

    Parameters
    ----------
    store
        A store opened with ``mode="a"``, or the path of one (created when missing).
    items
        The images: name, raster and optional human labels (shape = the raster's spatial
        shape, ``[Z|T,] Y, X``; 0 = unlabeled).
    classes
        The project's class list after the import (e.g. from
        :func:`napari_hitl.core.store.classes.parse_classes`); ``None`` keeps the store's. Label
        values without a class get a class named ``"class <value>"``.
    rgb
        Band indices of the RGB composite of every image; chosen per image when omitted.
    units, wavelengths
        Per-band unit and centre wavelength (nm), for every image.
    overwrite
        Replace images of the same name (otherwise that is an error).
    discard_labels
        With ``overwrite``, allow replacing an image that has human labels (they are lost;
        :attr:`ImportResult.discarded` says how many pixels). Without it such an image is
        refused, with the count in the message.
    pyramid
        See :func:`import_raster`.
    cancel
        Checked between tiles.

    Returns
    -------
    ImportResult
        The store, the metadata of each imported image, and the human-labeled pixels of each
        replaced image (the generator's return value).

    Raises
    ------
    InputFileError
        A source cannot be used (unreadable pixels are found while writing; the store is
        unchanged then too).
    StoreError
        A name is taken without ``overwrite``, a replaced image has human labels without
        ``discard_labels``, or the store cannot be opened.
    ValueError
        A bad class list (duplicates, more than
        :data:`~napari_hitl.core.store.classes.MAX_CLASSES`).
    """
    rgb_given = tuple(int(i) for i in rgb) if rgb is not None else None
    if isinstance(store, ProjectStore):
        store.require_writable()
        path, target = store.path, store
    else:
        path = Path(store)
        target = open_store(path, "a") if path.exists() else None
    plan = plan_import(target, items, classes, rgb_given, overwrite, discard_labels)
    created = target is None
    made_dirs: list[Path] = []
    if created:
        for parent in reversed([path.parent, *path.parent.parents]):
            if not parent.exists():
                made_dirs.append(parent)
        path.parent.mkdir(parents=True, exist_ok=True)
        hidden = path.parent / f".{path.name}.incoming-{uuid.uuid4().hex}"
        try:
            work = ProjectStore.create(hidden, classes=plan.classes)
        except BaseException:
            shutil.rmtree(hidden, ignore_errors=True)
            remove_empty(made_dirs)
            raise
    else:
        assert target is not None
        work = target
    per_item = [import_steps(it.raster.spatial_shape, pyramid) for it in plan.items]
    total = sum(per_item) + 1
    staged: list[tuple[Path, ImportItem, ImageInfo]] = []
    try:
        done = 0
        for item, steps in zip(plan.items, per_item, strict=True):
            staging = work.path / "images" / staging_name()
            staged.append((staging, item, None))  # type: ignore[arg-type]
            info = yield from stage_image(
                staging,
                item,
                plan.classes,
                rgb_given,
                units,
                wavelengths,
                pyramid,
                cancel,
                done,
                total,
            )
            staged[-1] = (staging, item, info)
            done += steps
        if cancel is not None:
            cancel.raise_if_cancelled()
        commit_images(work, [(s, it.name) for s, it, _ in staged], plan)
        if created:
            if path.exists():
                raise StoreError(f"{path} appeared while importing; nothing was written there")
            os.rename(work.path, path)
    except BaseException:
        for staging, _item, _info in staged:
            shutil.rmtree(staging, ignore_errors=True)
        if created:
            shutil.rmtree(work.path, ignore_errors=True)
            remove_empty(made_dirs)
        raise
    result_store = ProjectStore.open(path, "a") if created else work
    yield Progress(total, total, f"imported {', '.join(it.name for it in plan.items)}")
    return ImportResult(result_store, [info for _s, _it, info in staged], plan.discarded, created)


def remove_empty(folders: Sequence[Path]) -> None:
    """Remove the folders an import created (deepest first) if they are still empty."""
    for folder in reversed(folders):
        with contextlib.suppress(OSError):
            folder.rmdir()


def import_steps(spatial: tuple[int, ...], pyramid: bool | None) -> int:
    """Progress steps of one image: its tiles and pyramid tiles."""
    levels = pyramid_tiles(spatial, level_count(spatial, pyramid))
    return len(list(spatial_tiles(spatial))) + len(levels)


def import_raster(
    store: ProjectStore,
    raster: Raster,
    name: str,
    *,
    labels: np.ndarray | None = None,
    rgb: Sequence[int] | None = None,
    units: Sequence[str | None] | None = None,
    wavelengths: Sequence[float | None] | None = None,
    overwrite: bool = False,
    discard_labels: bool = True,
    pyramid: bool | None = None,
    cancel: CancelToken | None = None,
) -> Generator[Progress, None, ImageInfo]:
    """Copy a raster into the store as image ``name``, tile by tile; a generator of progress.

    One image through :func:`import_rasters`: checked first, written to a hidden folder and
    moved into place only when complete, so a failure or a cancel leaves the store as it was.
    NaN/inf and the source's nodata value are kept as they are in the data and marked invalid
    in ``hitl/valid``.

    Parameters
    ----------
    store
        A store opened with ``mode="a"``.
    raster
        The source (see :mod:`napari_hitl.core.io.rasters`).
    name
        Image name in the store.
    labels
        Optional initial labels (human), shape = the raster's spatial shape. Values without a
        class get a class named ``"class <value>"``.
    rgb
        Band indices of the RGB composite; chosen from wavelengths/names when omitted.
    units, wavelengths
        Per-band unit and centre wavelength (nm); recognised band names fill wavelengths.
    overwrite
        Replace an existing image of that name.
    discard_labels
        With ``overwrite``: whether an image with human labels may be replaced (default, as
        before); ``False`` refuses, saying how many human-labeled pixels would go.
    pyramid
        Also write downsampled levels ``1, 2, ...`` (each half the size of the one before,
        2 × 2 means, until the longer side is at most :data:`PYRAMID_TOP_EDGE`) so that viewers
        show the image without reading all of it. ``None``: when the longer side exceeds
        :data:`PYRAMID_MIN_EDGE`.
    cancel
        Checked between tiles.

    Returns
    -------
    ImageInfo
        The stored image's metadata (as the generator's return value).
    """
    result = yield from import_rasters(
        store,
        [ImportItem(name, raster, labels)],
        rgb=rgb,
        units=units,
        wavelengths=wavelengths,
        overwrite=overwrite,
        discard_labels=discard_labels,
        pyramid=pyramid,
        cancel=cancel,
    )
    return result.images[0]


def add_image(store: ProjectStore, raster: Raster, name: str, **kwargs: Any) -> ImageInfo:
    """Run :func:`import_raster` to the end (for scripts and tests)."""
    return run_to_end(import_raster(store, raster, name, **kwargs))


def commit_images(
    store: ProjectStore, staged: Sequence[tuple[Path, str]], plan: ImportPlan
) -> None:
    """Move finished images into place, then write classes and image order in one go.

    The moves come first and are undone if anything fails before the root metadata is
    replaced; that replacement (one atomic rename) is the commit point. Replaced images are
    deleted only after it.
    """
    images = store.path / "images"
    with store.write_lock("import images"):
        moved: list[tuple[str, Path | None, bool]] = []  # name, its old copy, new one in place
        rewritten: list[tuple[Path, bytes]] = []  # NGFF label metadata before the change
        try:
            for staging, name in staged:
                target = images / name
                trash = None
                if target.exists():
                    trash = images / staging_name("trash")
                    os.replace(target, trash)
                moved.append((name, trash, False))
                os.replace(staging, target)
                moved[-1] = (name, trash, True)
            new_names = {name for _s, name in staged}
            changed = plan.classes != store.classes
            if changed:  # keep the NGFF label metadata of the other images in step
                label_attrs = class_label_attrs(plan.classes)
                for other in store.image_names():
                    if other in new_names:
                        continue
                    meta_path = images / other / "labels" / "annotations" / "zarr.json"
                    raw = meta_path.read_bytes()
                    meta = json.loads(raw)
                    ome = meta.setdefault("attributes", {}).setdefault("ome", {})
                    ome["image-label"] = label_attrs
                    rewritten.append((meta_path, raw))
                    atomic_write_json(meta_path, meta)
            order = [n for n in store._attrs.get("images", []) if n not in new_names]
            changes: dict[str, Any] = {"images": order + [name for _s, name in staged]}
            if changed:
                changes["classes"] = [c.to_json() for c in plan.classes]
            store._set_attrs(**changes)
        except BaseException:
            for meta_path, raw in reversed(rewritten):
                meta_path.write_bytes(raw)
            for name, trash, placed in reversed(moved):
                if placed:
                    shutil.rmtree(images / name, ignore_errors=True)
                if trash is not None:
                    os.replace(trash, images / name)
            raise
    for _name, trash, _placed in moved:
        if trash is not None:
            shutil.rmtree(trash, ignore_errors=True)
