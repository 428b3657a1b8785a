"""The project store: one zarr v3 directory (``NAME.zarr``) per labeling project.

Layout (valid OME-Zarr / NGFF 0.5, see :mod:`napari_hitl.core.store_ngff`; full description in
``docs/store.md``)::

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

import contextlib
import hashlib
import json
import os
import shutil
import time
import uuid
from collections.abc import Generator, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import zarr

from napari_hitl import __version__
from napari_hitl.core.bands import (
    BandInfo,
    default_rgb,
    is_height_band,
    robust_stats,
    subsample_for_stats,
    wavelength_for_name,
)
from napari_hitl.core.classes import (
    MAX_CLASSES,
    MAX_LABEL_VALUE,
    ClassInfo,
    check_class_count,
    classes_from_json,
    default_color,
)
from napari_hitl.core.errors import (
    HitlError,
    InputFileError,
    SchemaVersionError,
    StaleDataError,
    StoreDamagedError,
    StoreError,
)
from napari_hitl.core.geo import GeoRef
from napari_hitl.core.progress import CancelToken, Progress, run_to_end
from napari_hitl.core.rasters import Raster
from napari_hitl.core.store_journal import Transaction, pending, recover
from napari_hitl.core.store_lock import store_lock
from napari_hitl.core.store_ngff import (
    NGFF_VERSION,
    dimension_names,
    disk_axes,
    image_attrs,
    image_label_attrs,
    label_axes,
    label_levels,
    multiscale,
    root_ome_attrs,
    shown,
    write_series,
)

SCHEMA_VERSION = 1
ATTR = "napari_hitl"
LABEL_DTYPE = np.uint16
PROVENANCE_UNLABELED = 0
PROVENANCE_HUMAN = 1
TILE = 1024  # import tile edge; chunks are smaller
PYRAMID_MIN_EDGE = 4096  # images with a longer side get a multiscale pyramid at import
PYRAMID_TOP_EDGE = 1024  # ...halving until the longer side is at most this
_CHUNK_BYTES = 4 * 1024 * 1024


def machine_provenance(iteration: int) -> int:
    """Provenance code of a pixel accepted from the model at ``iteration`` (1-based)."""
    if iteration < 1:
        raise ValueError("iterations count from 1")
    return iteration + 1


@dataclass
class ImageInfo:
    """Everything the store knows about one image (its metadata, not its pixels)."""

    name: str
    axes: str
    shape: tuple[int, ...]
    dtype: str
    bands: list[BandInfo]
    rgb: tuple[int, int, int]
    nodata: float | None
    georef: GeoRef | None
    source_hash: str
    sources: list[str] = field(default_factory=list)
    invalid_pixels: int = 0

    @property
    def spatial_shape(self) -> tuple[int, ...]:
        """Shape of one band (and of the labels): ``[Z|T,] Y, X``."""
        return self.shape[1:]

    @property
    def band_names(self) -> list[str]:
        """The band names in order."""
        return [b.name for b in self.bands]

    @property
    def dsm_band(self) -> int | None:
        """Index of the height band, if there is one."""
        return next((i for i, b in enumerate(self.bands) if b.role == "dsm"), None)

    def to_json(self) -> dict[str, Any]:
        """The ``napari_hitl`` attributes written on the image group."""
        return {
            "axes": self.axes,
            "shape": list(self.shape),
            "dtype": self.dtype,
            "bands": [b.to_json() for b in self.bands],
            "rgb": list(self.rgb),
            "nodata": self.nodata,
            "georef": self.georef.to_json() if self.georef else None,
            "source_hash": self.source_hash,
            "sources": self.sources,
            "invalid_pixels": self.invalid_pixels,
        }

    @classmethod
    def from_json(cls, name: str, data: dict[str, Any]) -> ImageInfo:
        """Inverse of :meth:`to_json`."""
        return cls(
            name=name,
            axes=data["axes"],
            shape=tuple(data["shape"]),
            dtype=data["dtype"],
            bands=[BandInfo.from_json(b) for b in data["bands"]],
            rgb=tuple(data["rgb"]),  # type: ignore[arg-type]
            nodata=data.get("nodata"),
            georef=GeoRef.from_json(data.get("georef")),
            source_hash=data["source_hash"],
            sources=list(data.get("sources", [])),
            invalid_pixels=int(data.get("invalid_pixels", 0)),
        )


@dataclass
class LabelState:
    """An image's labels and provenance as they were at one label generation."""

    labels: np.ndarray
    provenance: np.ndarray
    generation: int


@dataclass
class StrokeSave:
    """What :meth:`ProjectStore.save_strokes` did.

    ``labels`` is what the store holds now (the editor should show it when ``moved_on``: the
    store had changed since the editor loaded its labels, and the person's strokes were applied
    on top of that change).
    """

    changed: int
    labels: np.ndarray
    generation: int
    moved_on: bool


def _validate_name(name: str) -> str:
    if (
        not name
        or name.startswith(".")
        or "/" in name
        or "\\" in name
        or name in ("labels", "hitl")
    ):
        raise ValueError(
            f"image name {name!r} is not allowed: use letters, digits, '_', '-' or '.', "
            "not starting with '.'"
        )
    return name


def _chunks_for(shape: tuple[int, ...], itemsize: int) -> tuple[int, ...]:
    """All bands of a spatial tile per chunk, tiles shrunk until a chunk is at most ~4 MB."""
    c = shape[0]
    stack = (1,) * (len(shape) - 3)
    edge = 512
    while edge > 64 and c * edge * edge * itemsize > _CHUNK_BYTES:
        edge //= 2
    return (c, *stack, min(edge, shape[-2]), min(edge, shape[-1]))


def _spatial_chunks(shape: tuple[int, ...]) -> tuple[int, ...]:
    return (*(1,) * (len(shape) - 2), min(512, shape[-2]), min(512, shape[-1]))


def _atomic_write_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    tmp.write_text(json.dumps(data, indent=2))
    os.replace(tmp, path)


def staging_name(kind: str = "incoming") -> str:
    """A hidden folder name for work in progress: ``.incoming-<pid>-<random>``.

    The process id lets :meth:`ProjectStore.open` tell a crashed writer's leftovers (removed)
    from another process's import or model save still under way (kept).
    """
    return f".{kind}-{os.getpid()}-{uuid.uuid4().hex}"


def _abandoned(folder: Path) -> bool:
    """Whether a hidden work folder was left by a process that is gone."""
    name = folder.name
    if not name.startswith((".incoming-", ".trash-")):
        return False
    parts = name.split("-")
    if len(parts) >= 3 and parts[1].isdigit():
        pid = int(parts[1])
        if pid == os.getpid():
            return False
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        except OSError:
            return False
        return False
    try:  # an older napari-hitl's name without a pid: gone after an hour
        return time.time() - folder.stat().st_mtime > 3600
    except OSError:
        return False


def _changed_chunk_slices(
    new: np.ndarray, old: np.ndarray, chunks: Sequence[int]
) -> list[tuple[slice, ...]]:
    """The chunk-aligned windows in which ``new`` and ``old`` differ."""
    differs = new != old
    if not differs.any():
        return []
    out = []
    grid = [range(0, n, c) for n, c in zip(new.shape, chunks, strict=True)]
    for corner in np.ndindex(*(len(g) for g in grid)):
        window = tuple(
            slice(g[i], min(g[i] + c, n))
            for g, i, c, n in zip(grid, corner, chunks, new.shape, strict=True)
        )
        if differs[window].any():
            out.append(window)
    return out


def _stage_changed_chunks(
    root: Path, txn: Transaction, rel: str, new: np.ndarray, old: np.ndarray
) -> None:
    """Write the chunks of array ``rel`` that change into ``txn``'s staging area."""
    meta = root / rel / "zarr.json"
    target = zarr.open_array(str(root / rel), mode="r")
    windows = _changed_chunk_slices(new, old, target.chunks)
    if not windows:
        return
    staged_dir = txn.stage(f"{rel}/zarr.json").parent
    shutil.copyfile(meta, staged_dir / "zarr.json")
    with zarr.config.set({"array.write_empty_chunks": True}):  # a cleared chunk replaces the old
        staged = zarr.open_array(str(staged_dir), mode="r+")
        for window in windows:
            staged[window] = new[window]
    (staged_dir / "zarr.json").unlink()
    txn.replace_files_under(rel)


def _stage_push(
    txn: Transaction, rel: str, iteration: int, index: np.ndarray, values: np.ndarray
) -> None:
    """Write one push record (undo history) into ``txn``'s staging area."""
    packed = np.stack([np.asarray(index, np.int64), np.asarray(values, np.int64)])
    path = txn.stage(f"{rel}/zarr.json").parent
    arr = zarr.create_array(
        str(path),
        shape=packed.shape,
        dtype=np.int64,
        chunks=(2, max(1, min(packed.shape[1], 1 << 20))),
        attributes={"iteration": int(iteration)},
        zarr_format=3,
    )
    arr[...] = packed
    txn.replace(rel)


class ProjectStore:
    """A labeling project on disk: images, labels, provenance, derived arrays, classes.

    Open with :meth:`open` or make a new one with :meth:`create`; nothing is held in memory
    except metadata, so many processes may read a store at once.
    """

    def __init__(self, path: Path, root: zarr.Group, writable: bool) -> None:
        self.path = path
        self._root = root
        self.writable = writable
        self.recovered: list[str] = []  # what opening finished or rolled back (crash recovery)

    # ----------------------------------------------------------------- opening
    @classmethod
    def create(
        cls, path: str | os.PathLike[str], classes: Sequence[ClassInfo] = (), exist_ok: bool = False
    ) -> ProjectStore:
        """Create an empty project store (or open an existing one if ``exist_ok``).

        Raises
        ------
        StoreError
            ``path`` exists and ``exist_ok`` is false, or it exists and is not a project store.
        """
        p = Path(path)
        if p.exists():
            if exist_ok:
                return cls.open(p, mode="a")
            raise StoreError(f"{p} already exists; open it, or choose another name")
        root = zarr.open_group(str(p), mode="w-", zarr_format=3)
        root.attrs.update(
            {
                ATTR: {
                    "schema_version": SCHEMA_VERSION,
                    "created_by": f"napari-hitl {__version__}",
                    "classes": [c.to_json() for c in classes],
                    "images": [],
                },
                "ome": root_ome_attrs(),
            }
        )
        root.create_group("images")
        write_series(p, [])
        return cls(p, root, writable=True)

    @classmethod
    def open(
        cls, path: str | os.PathLike[str], mode: str = "r", recover: bool = True
    ) -> ProjectStore:
        """Open an existing project store for reading (``"r"``) or changes (``"a"``).

        A change a crashed process left half done is finished (or, if it was not committed,
        dropped) first, so every reader sees a whole state; ``recover=False`` leaves it for
        ``napari-hitl check`` to report.

        Raises
        ------
        StoreError
            Not a napari-hitl store (or missing).
        SchemaVersionError
            Written by a newer napari-hitl than this one.
        """
        p = Path(path)
        if mode not in ("r", "a"):
            raise ValueError("mode must be 'r' or 'a'")
        meta_path = p / "zarr.json"
        if not meta_path.is_file():
            raise StoreError(
                f"{p} is not a napari-hitl project store (no zarr.json); create one with "
                f"`napari-hitl import {p} IMAGE...`"
            )
        try:
            meta = json.loads(meta_path.read_text())
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            raise StoreError(f"{meta_path}: cannot read the store's metadata ({exc})") from exc
        problem = _root_attrs_problem(meta)
        if problem:
            raise StoreError(f"{meta_path}: the store's metadata is damaged: {problem}")
        try:
            root = zarr.open_group(str(p), mode=mode, zarr_format=3)
            attrs = dict(root.attrs).get(ATTR)
        except Exception as exc:
            raise StoreError(f"{p}: cannot read the store's metadata ({exc})") from exc
        if not isinstance(attrs, dict) or "schema_version" not in attrs:
            raise StoreError(f"{p} is a zarr group but not a napari-hitl project store")
        version = int(attrs["schema_version"])
        if version > SCHEMA_VERSION:
            raise SchemaVersionError(
                f"{p} was written with store schema {version} (by {attrs.get('created_by', '?')});"
                f" this napari-hitl ({__version__}) reads schema {SCHEMA_VERSION} and older. "
                "Upgrade napari-hitl to open it; the store was not changed."
            )
        store = cls(p, root, writable=(mode == "a"))
        if recover and pending(p):
            store.recovered = store._recover()
        if store.writable:
            store._remove_leftovers()
        return store

    def _recover(self) -> list[str]:
        """Finish or roll back a change a crashed process left (see :mod:`.store_journal`)."""
        try:
            with store_lock(self.path, "recovery"):
                done = recover(self.path)
        except OSError as exc:
            raise StoreError(
                f"{self.path}: a change was interrupted and the store cannot be repaired here "
                f"({exc}); open it where it is writable, or run `napari-hitl check --repair`"
            ) from exc
        self._root = zarr.open_group(str(self.path), mode="a" if self.writable else "r")
        return done

    # ----------------------------------------------------------------- locking
    @contextmanager
    def write_lock(self, what: str) -> Iterator[None]:
        """Hold the store's exclusive lock (re-entrant) while changing it.

        Raises
        ------
        StoreError
            The store is open read-only.
        StoreBusyError
            Another process holds the store for longer than the lock's wait.
        """
        self.require_writable()
        with store_lock(self.path, what, exclusive=True):
            yield

    @contextmanager
    def read_lock(self) -> Iterator[None]:
        """Hold the store's shared lock: what is read inside comes from one generation."""
        with store_lock(self.path, "read", exclusive=False):
            yield

    def _remove_leftovers(self) -> None:
        """Delete hidden folders left by a crashed import (never anything visible)."""
        for folder in (self.path / "images", self.path / "models"):
            for child in folder.iterdir() if folder.is_dir() else ():
                if child.is_dir() and _abandoned(child):
                    shutil.rmtree(child, ignore_errors=True)

    def require_writable(self) -> None:
        """Raise :class:`StoreError` (one line) when the store is open read-only."""
        if not self.writable:
            raise StoreError(f"{self.path} is open read-only; open it with mode='a' to change it")

    @property
    def _attrs(self) -> dict[str, Any]:
        return dict(dict(self._root.attrs)[ATTR])

    def _set_attrs(self, **changes: Any) -> None:
        with self.write_lock("update the project settings"):
            meta_path = self.path / "zarr.json"
            meta = json.loads(meta_path.read_text())
            attrs = dict(meta.setdefault("attributes", {}).get(ATTR, {}))
            attrs.update(changes)
            # Rewrite the root zarr.json atomically: a crash never leaves it half written.
            meta["attributes"][ATTR] = attrs
            meta["attributes"]["ome"] = root_ome_attrs()
            _atomic_write_json(meta_path, meta)
            self._root = zarr.open_group(str(self.path), mode="a", zarr_format=3)
            if "images" in changes:  # what other OME-Zarr tools list; derived from the above
                write_series(self.path, attrs["images"])

    def setting(self, key: str, default: Any = None) -> Any:
        """A project setting (JSON value kept in the root attributes), or ``default``."""
        return self._attrs.get("settings", {}).get(key, default)

    def set_setting(self, key: str, value: Any) -> None:
        """Store a project setting (any JSON value; ``None`` removes it)."""
        if value is not None:
            json.dumps(value)  # refuse what cannot be stored before touching the file
        with self.write_lock("change a setting"):
            self._reload_root()
            settings = dict(self._attrs.get("settings", {}))
            if value is None:
                settings.pop(key, None)
            else:
                settings[key] = value
            self._set_attrs(settings=settings)

    def _reload_root(self) -> None:
        """Read the root attributes again (another process may have changed them)."""
        self._root = zarr.open_group(
            str(self.path), mode="a" if self.writable else "r", zarr_format=3
        )

    @property
    def schema_version(self) -> int:
        """The schema version the store was written with."""
        return int(self._attrs["schema_version"])

    # ----------------------------------------------------------------- history
    def history(self) -> list[dict[str, Any]]:
        """What each Train recorded, oldest first (``[]`` before the first one).

        The records are kept as a JSON list ``history`` in the root attributes
        (``zarr.json``); :func:`napari_hitl.core.history.train_record` makes them.
        """
        return [dict(r) for r in self._attrs.get("history", [])]

    def append_history(self, record: dict[str, Any]) -> None:
        """Add one Train's record (a JSON object) at the end of :meth:`history`.

        Raises
        ------
        StoreError
            The store is open read-only.
        ValueError
            ``record`` is not a dict, or not JSON-serialisable.
        """
        self.require_writable()
        if not isinstance(record, dict):
            raise ValueError(f"a history record is a dict, not {type(record).__name__}")
        try:
            record = json.loads(json.dumps(record, allow_nan=False))
        except (TypeError, ValueError) as exc:
            raise ValueError(f"a history record must be plain JSON ({exc})") from exc
        with self.write_lock("record a Train"):
            self._reload_root()
            self._set_attrs(history=[*self._attrs.get("history", []), record])

    # ----------------------------------------------------------------- classes
    @property
    def classes(self) -> list[ClassInfo]:
        """The project's classes, sorted by label value."""
        return classes_from_json(self._attrs.get("classes", []))

    def set_classes(self, classes: Iterable[ClassInfo]) -> None:
        """Replace the class list (values must be unique)."""
        items = [c.to_json() for c in classes]
        validated = classes_from_json(items)
        with self.write_lock("change the classes"):
            self._set_attrs(classes=items)
            for name in self.image_names():  # keep the NGFF label metadata in step
                ann = self._image_group(name)["labels/annotations"]
                ome = dict(ann.attrs).get("ome", {})
                ome["image-label"] = _image_label_attrs(validated)
                ann.attrs.update({"ome": ome})

    def ensure_classes(self, values: Iterable[int]) -> None:
        """Add a class (named ``class V``) for every label value in ``values`` that has none."""
        self._ensure_classes(values)

    def _ensure_classes(self, values: Iterable[int]) -> None:
        known = {c.value for c in self.classes}
        new = sorted(int(v) for v in set(values) - known - {0})
        if new:
            extra = [ClassInfo(v, f"class {v}", default_color(v)) for v in new]
            self.set_classes([*self.classes, *extra])

    # ------------------------------------------------------------------ images
    def image_names(self) -> list[str]:
        """Image names in the order they were added."""
        images = self.path / "images"
        present = (
            {c.name for c in images.iterdir() if c.is_dir() and not c.name.startswith(".")}
            if images.is_dir()
            else set()
        )
        order = [n for n in self._attrs.get("images", []) if n in present]
        return order + sorted(present - set(order))

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name in self.image_names()

    def _image_group(self, name: str) -> zarr.Group:
        if name not in self:
            raise StoreError(
                f"{self.path} has no image {name!r}; "
                f"it has: {', '.join(self.image_names()) or 'none'}"
            )
        return zarr.open_group(
            str(self.path / "images" / name), mode="r+" if self.writable else "r"
        )

    def image_info(self, name: str) -> ImageInfo:
        """Metadata of one image."""
        return ImageInfo.from_json(name, dict(self._image_group(name).attrs)[ATTR])

    def set_display(
        self,
        name: str,
        rgb: Sequence[int] | None = None,
        dsm_band: int | str | None = "keep",
    ) -> ImageInfo:
        """Change how an image is shown: the bands of its RGB composite and its height band.

        Only the ``rgb`` entry and the band roles of the image's ``napari_hitl`` attributes
        change (the height band is the band with role ``"dsm"``); every other key, and the
        OME-Zarr metadata beyond the channel colours, is kept as it is. Pixels, labels and
        derived arrays are untouched (their signatures stay valid).

        Parameters
        ----------
        name
            The image.
        rgb
            Three band indices (red, green, blue); ``None`` keeps the current ones.
        dsm_band
            Index of the height band, ``None`` for no height band, or ``"keep"`` (default)
            to leave it as it is. A band that stops being the height band gets back the role
            it had before it was chosen (``"other"`` for a band imported as height).

        Returns
        -------
        ImageInfo
            The image's metadata after the change.

        Raises
        ------
        ValueError
            ``rgb`` is not three band indices, or ``dsm_band`` is not a band index.
        StoreError
            No such image, or the store is open read-only.
        """
        self.require_writable()
        group_json = self.path / "images" / name / "zarr.json"
        self._image_group(name)  # raises StoreError for an unknown image
        meta = json.loads(group_json.read_text())
        attrs = meta.setdefault("attributes", {})
        data = attrs[ATTR]
        n = len(data["bands"])
        if rgb is not None:
            rgb = [int(i) for i in rgb]
            if len(rgb) != 3 or not all(0 <= i < n for i in rgb):
                raise ValueError(f"RGB bands {tuple(rgb)} must be 3 indices in 0..{n - 1}")
            data["rgb"] = rgb
        if dsm_band != "keep":
            if dsm_band is not None and not (
                isinstance(dsm_band, int | np.integer) and 0 <= int(dsm_band) < n
            ):
                raise ValueError(f"height band {dsm_band!r} must be None or an index in 0..{n - 1}")
            for i, band in enumerate(data["bands"]):
                role = band.get("role", "spectral")
                extra = band.get("extra") or {}
                if dsm_band is not None and i == int(dsm_band):
                    if role != "dsm":
                        band["extra"] = {**extra, "role_before_height": role}
                        band["role"] = "dsm"
                elif role == "dsm":
                    band["role"] = extra.pop("role_before_height", "other")
                    if extra:
                        band["extra"] = extra
                    else:
                        band.pop("extra", None)
        omero = attrs.get("ome", {}).get("omero", {})
        channels = omero.get("channels", [])
        if rgb is not None and len(channels) == n:
            colors = {rgb[2]: "0000FF", rgb[1]: "00FF00", rgb[0]: "FF0000"}
            for i, ch in enumerate(channels):
                ch["color"] = colors.get(i, "FFFFFF")
                ch["active"] = i in colors
        _atomic_write_json(group_json, meta)
        return self.image_info(name)

    def image(self, name: str) -> zarr.Array:
        """The bands of an image, lazily read, channel first (``C, [Z|T,] Y, X``).

        A zarr array, or for a time stack (stored ``T, C, Y, X`` as NGFF requires) an
        :class:`~napari_hitl.core.store_ngff.AxisView` that reads and writes it channel first.
        """
        return self.image_levels(name)[0]

    def image_levels(self, name: str) -> list[zarr.Array]:
        """The image at every stored resolution: ``[full, 1/2, 1/4, ...]`` (just ``[full]`` for
        images without a pyramid), each lazily read and channel first (see :meth:`image`)."""
        group = self._image_group(name)
        axes = ImageInfo.from_json(name, dict(group.attrs)[ATTR]).axes
        levels = []
        while str(len(levels)) in group:
            levels.append(shown(group[str(len(levels))], axes))
        return levels

    def image_dask(self, name: str, level: int = 0, chunks: Any = None) -> Any:
        """The image (pyramid ``level``) as a channel-first dask array, rechunked to ``chunks``
        when given."""
        from napari_hitl.core.store_ngff import as_dask

        return as_dask(self.image_levels(name)[level], chunks)

    def valid_mask(self, name: str) -> np.ndarray:
        """Boolean map of usable pixels (False where any band is NaN, inf or nodata)."""
        arr = self.valid_array(name)
        if arr is not None:
            return np.asarray(arr[...])
        return np.ones(self.image_info(name).spatial_shape, dtype=bool)

    def valid_array(self, name: str) -> zarr.Array | None:
        """The stored valid-pixel mask, not read (for windows and dask), or ``None`` when every
        pixel of the image is valid."""
        group = self._image_group(name)
        if "hitl" in group and "valid" in group["hitl"]:  # type: ignore[operator]
            return group["hitl"]["valid"]  # type: ignore[index,return-value]
        return None

    def remove_image(self, name: str) -> None:
        """Delete an image and everything attached to it."""
        self.require_writable()
        self._image_group(name)
        trash = self.path / "images" / staging_name("trash")
        os.replace(self.path / "images" / name, trash)
        self._set_attrs(images=[n for n in self._attrs.get("images", []) if n != name])
        shutil.rmtree(trash, ignore_errors=True)

    # ------------------------------------------------------------------ labels
    def labels(self, name: str) -> np.ndarray:
        """The image's labels (uint16, 0 = unlabeled) as a numpy array."""
        return np.asarray(self._image_group(name)["labels/annotations/0"][...])  # type: ignore[index]

    def labels_array(self, name: str) -> zarr.Array:
        """The labels as a zarr array, for lazy access or painting in place."""
        return self._image_group(name)["labels/annotations/0"]  # type: ignore[return-value]

    def label_level_count(self, name: str) -> int:
        """How many resolutions the labels are stored at (one per image level; images
        imported before label pyramids existed have one)."""
        group = self._image_group(name)["labels/annotations"]
        count = 1
        while str(count) in group:  # type: ignore[operator]
            count += 1
        return count

    def label_level(self, name: str, level: int) -> np.ndarray:
        """The stored labels at pyramid ``level`` (0: full size), as numpy."""
        return np.asarray(self._image_group(name)[f"labels/annotations/{level}"][...])  # type: ignore[index]

    def rebuild_label_levels(self, name: str) -> list[int]:
        """Write the label pyramid again from the full-size labels; returns the levels that
        differed. Level 0 (the labels people and pushes wrote) is never changed."""
        with self.write_lock("rebuild label levels"):
            self.require_writable()
            labels = self.labels(name)
            group = self._image_group(name)["labels/annotations"]
            fixed = []
            for k, level in enumerate(label_levels(labels, self.label_level_count(name) - 1)):
                if k and not np.array_equal(self.label_level(name, k), level):
                    group[str(k)][...] = level  # type: ignore[index]
                    fixed.append(k)
            return fixed

    def provenance(self, name: str) -> np.ndarray:
        """Per-pixel provenance: 0 unlabeled, 1 human, k+1 machine from iteration k."""
        return np.asarray(self.provenance_array(name)[...])

    def provenance_array(self, name: str) -> zarr.Array:
        """The provenance as a zarr array, for reading a slice or a window lazily."""
        return self._image_group(name)["hitl/provenance"]  # type: ignore[return-value]

    def label_generation(self, name: str) -> int:
        """How many label changes image ``name`` has had (0 right after import).

        Every push, undo, clear and save of strokes adds one, in the same commit as the change,
        so an editor that remembers the generation it loaded knows whether the store moved on.
        """
        attrs = dict(self._image_group(name)["hitl"].attrs).get(ATTR, {})  # type: ignore[union-attr]
        return int(attrs.get("label_generation", 0))

    def label_state(self, name: str) -> LabelState:
        """Labels, provenance and generation of image ``name``, read from one generation."""
        with self.read_lock():
            return LabelState(self.labels(name), self.provenance(name), self.label_generation(name))

    def write_labels(
        self, name: str, labels: np.ndarray, provenance: np.ndarray | None = None
    ) -> None:
        """Replace an image's labels (and provenance; by default every label is human).

        The change is one transaction (see :meth:`commit_labels`).

        Raises
        ------
        ValueError
            Wrong shape, negative values or values with no class (the message lists them).
        """
        self.commit_labels(name, labels, provenance)

    def commit_labels(
        self,
        name: str,
        labels: np.ndarray,
        provenance: np.ndarray | None = None,
        *,
        old: LabelState | None = None,
        add_push: tuple[int, np.ndarray, np.ndarray] | None = None,
        drop_pushes: Sequence[str] = (),
        what: str = "write labels",
    ) -> int:
        """Change labels, provenance and undo history of image ``name`` as one transaction.

        Only the chunks that change are written: staged beside the store, committed by one
        rename, then moved into place (:mod:`napari_hitl.core.store_journal`). A crash at any
        point leaves either the old or the new state once the store is opened again.

        Parameters
        ----------
        labels, provenance
            The new arrays (provenance defaults to human wherever labels are set).
        old
            The state the caller read under the same lock (saves reading it again).
        add_push
            ``(iteration, flat_index, values)``: record a push for :meth:`read_push`.
        drop_pushes
            Keys of push records to delete (an undo, a clear).
        what
            What the change is, for a waiting process's message and the journal.

        Returns
        -------
        int
            The image's new label generation.

        Raises
        ------
        ValueError
            Wrong shape, values with no class, or provenance not 0 exactly where labels are 0.
        """
        with self.write_lock(what):
            info = self.image_info(name)
            labels = check_labels(
                labels, info.spatial_shape, self.classes, what=f"labels of {name!r}"
            )
            if provenance is None:
                provenance = np.where(labels > 0, PROVENANCE_HUMAN, PROVENANCE_UNLABELED)
            provenance = np.asarray(provenance)
            if provenance.shape != labels.shape:
                raise ValueError(
                    f"provenance shape {provenance.shape} != labels shape {labels.shape}"
                )
            if np.any((provenance == 0) != (labels == 0)):
                raise ValueError("provenance must be 0 exactly where labels are 0")
            provenance = provenance.astype(LABEL_DTYPE, copy=False)
            if old is None:
                old = self.label_state(name)
            generation = self.label_generation(name) + 1
            base = f"images/{name}"
            n_levels = self.label_level_count(name) - 1
            changes = [
                (f"{base}/labels/annotations/{k}", new_level, old_level)
                for k, (new_level, old_level) in enumerate(
                    zip(
                        label_levels(labels, n_levels),
                        label_levels(old.labels, n_levels),
                        strict=True,
                    )
                )
            ]
            changes.append((f"{base}/hitl/provenance", provenance, old.provenance))
            with Transaction(self.path, f"{what} of {name}") as txn:
                for rel, new_data, old_data in changes:
                    _stage_changed_chunks(self.path, txn, rel, new_data, old_data)
                if add_push is not None:
                    iteration, index, values = add_push
                    self._image_group(name)["hitl"].require_group("pushes")  # type: ignore[union-attr]
                    keys = self.push_keys(name)
                    key = str(max((int(k) for k in keys), default=-1) + 1)
                    _stage_push(txn, f"{base}/hitl/pushes/{key}", iteration, index, values)
                for key in drop_pushes:
                    txn.delete(f"{base}/hitl/pushes/{key}")
                rel = f"{base}/hitl/zarr.json"
                meta = json.loads((self.path / rel).read_text())
                hitl_attrs = dict(meta.setdefault("attributes", {}).get(ATTR, {}))
                hitl_attrs["label_generation"] = generation
                meta["attributes"][ATTR] = hitl_attrs
                txn.stage(rel).write_text(json.dumps(meta, indent=2))
                txn.replace(rel)
                txn.commit()
            return generation

    # ------------------------------------------------------------ undo history
    def push_keys(self, name: str) -> list[str]:
        """Keys of the image's recorded pushes (undo history), oldest first."""
        hitl = self._image_group(name)["hitl"]
        if "pushes" not in hitl:  # type: ignore[operator]
            return []
        keys = [k for k in hitl["pushes"].array_keys() if k.isdigit()]  # type: ignore[index,union-attr]
        return sorted(keys, key=int)

    def read_push(self, name: str, key: str) -> tuple[int, np.ndarray, np.ndarray]:
        """One recorded push: ``(iteration, flat pixel index, values)``.

        Raises
        ------
        StoreDamagedError
            The record cannot be read or is malformed (``napari-hitl check`` explains).
        """
        try:
            arr = self._image_group(name)["hitl/pushes"][key]  # type: ignore[index]
            packed = np.asarray(arr[...])
            iteration = int(dict(arr.attrs)["iteration"])
        except Exception as exc:
            raise StoreDamagedError(
                f"{self.path}: push record {key} of image {name!r} cannot be read ({exc}); "
                f"run `napari-hitl check {self.path} --repair`"
            ) from exc
        if packed.ndim != 2 or packed.shape[0] != 2:
            raise StoreDamagedError(
                f"{self.path}: push record {key} of image {name!r} has shape {packed.shape}; "
                f"run `napari-hitl check {self.path} --repair`"
            )
        return iteration, packed[0], packed[1]

    def save_edited_labels(
        self, name: str, labels: np.ndarray, base: np.ndarray | None = None
    ) -> int:
        """Save labels edited by a person; returns how many stored pixels changed.

        See :meth:`save_strokes`; this is its short form.
        """
        return self.save_strokes(name, labels, base).changed

    def save_strokes(
        self, name: str, labels: np.ndarray, base: np.ndarray | None = None
    ) -> StrokeSave:
        """Save a person's edits: the pixels where ``labels`` differs from ``base``.

        Changed pixels become human labels; erased pixels become unlabeled; every other pixel
        keeps what the store has *now* — so an editor that loaded ``base`` before another
        process pushed, undid or painted never overwrites that work with its stale copy (the
        person's own strokes are re-applied on top of it). Without ``base`` the edits are
        counted against the stored labels, as an editor that is up to date would.

        Returns
        -------
        StrokeSave
            Pixels changed, the labels now stored and their generation.

        Raises
        ------
        ValueError
            Wrong shape or values with no class.
        """
        with self.write_lock("save strokes"):
            info = self.image_info(name)
            new = check_labels(labels, info.spatial_shape, self.classes, what=f"labels of {name!r}")
            now = self.label_state(name)
            ref = now.labels if base is None else np.asarray(base)
            if ref.shape != new.shape:
                raise ValueError(
                    f"the labels the editor started from have shape {ref.shape}, "
                    f"the image {info.spatial_shape}"
                )
            mine = new != ref
            merged = now.labels.copy()
            merged[mine] = new[mine]
            changed = merged != now.labels
            n = int(changed.sum())
            if not n:
                return StrokeSave(
                    0,
                    merged,
                    now.generation,
                    moved_on=base is not None and not np.array_equal(ref, now.labels),
                )
            prov = now.provenance.copy()
            prov[changed] = PROVENANCE_HUMAN
            prov[merged == 0] = PROVENANCE_UNLABELED
            generation = self.commit_labels(name, merged, prov, old=now, what="save strokes")
            moved_on = base is not None and not np.array_equal(ref, now.labels)
            return StrokeSave(n, merged, generation, moved_on)

    # --------------------------------------------------------- derived arrays
    def signature(self, name: str, **extra: Any) -> dict[str, Any]:
        """The signature a derived array of ``name`` must carry to be current."""
        return {
            "source_hash": self.image_info(name).source_hash,
            "schema_version": SCHEMA_VERSION,
            **extra,
        }

    def write_derived(
        self, name: str, key: str, data: np.ndarray, signature: dict[str, Any] | None = None
    ) -> None:
        """Store an array computed from image ``name`` (prediction, confidence...) with a signature.

        ``signature`` defaults to :meth:`signature`; pass extra fields (model hash...) through
        ``self.signature(name, model=...)``.
        """
        self.require_writable()
        if key in ("provenance", "valid", "pushes") or "/" in key or key.startswith("."):
            raise ValueError(f"{key!r} is reserved or not a valid name for a derived array")
        sig = signature if signature is not None else self.signature(name)
        data = np.asarray(data)
        with self.write_lock(f"write {key}"):
            hitl = self._image_group(name).require_group("hitl")
            # Marked pending until every chunk is written: a crash in between leaves an array
            # that read_derived refuses instead of one that looks current.
            arr = hitl.create_array(
                key,
                shape=data.shape,
                dtype=data.dtype,
                chunks=_spatial_chunks(data.shape) if data.ndim >= 2 else data.shape,
                fill_value=0,
                overwrite=True,
                attributes={ATTR: {"signature": {**sig, "pending": "being written"}}},
            )
            arr[...] = data
            arr.attrs.update({ATTR: {"signature": sig}})

    def derived_group(self, name: str) -> zarr.Group:
        """The group holding image ``name``'s derived arrays (``hitl``), created if missing.

        For code that writes derived arrays piece by piece (batch prediction block by block,
        a stack's slices) and signs them itself; whole arrays go through :meth:`write_derived`.
        """
        group = self._image_group(name)
        if self.writable:
            return group.require_group("hitl")
        return group["hitl"]  # type: ignore[return-value]

    def derived_signature(self, name: str, key: str) -> dict[str, Any] | None:
        """The signature stored with derived array ``key`` (``None`` when it has none)."""
        arr = self._image_group(name)["hitl"][key]  # type: ignore[index]
        sig = dict(arr.attrs).get(ATTR, {}).get("signature")
        return dict(sig) if isinstance(sig, dict) else None

    def remove_derived(self, name: str, key: str) -> None:
        """Delete derived array ``key`` of image ``name`` (it can be computed again)."""
        if key not in self.derived_keys(name):
            raise StoreError(f"image {name!r} has no {key!r}")
        with self.write_lock(f"remove {key}"):
            hitl = self._image_group(name)["hitl"]
            del hitl[key]  # type: ignore[attr-defined]

    def derived_keys(self, name: str) -> list[str]:
        """Names of the derived arrays stored for an image."""
        group = self._image_group(name)
        if "hitl" not in group:
            return []
        return sorted(k for k in group["hitl"].array_keys() if k not in ("provenance", "valid"))  # type: ignore[union-attr]

    def read_derived(
        self, name: str, key: str, expected: dict[str, Any] | None = None
    ) -> np.ndarray:
        """Read a derived array, refusing it when its signature does not match.

        Raises
        ------
        StoreError
            No such derived array.
        StaleDataError
            The image changed since it was computed, or ``expected`` fields differ.
        """
        return np.asarray(self.derived_array(name, key, expected)[...])

    def derived_array(
        self,
        name: str,
        key: str,
        expected: dict[str, Any] | None = None,
        *,
        action: str = "compute",
    ) -> zarr.Array:
        """A derived array, checked as :meth:`read_derived` does but not read (for slices,
        chunked or lazy reads). ``action`` names what the user should do again in the message
        ("predict", "compute"...).

        Raises
        ------
        StoreError
            No such derived array.
        StaleDataError
            The image changed since it was computed, ``expected`` fields differ, or it is still
            being written.
        """
        if key not in self.derived_keys(name):
            raise StoreError(f"image {name!r} has no {key!r} yet: {action} it first")
        arr = self._image_group(name)["hitl"][key]  # type: ignore[index]
        sig = dict(arr.attrs).get(ATTR, {}).get("signature", {})
        want = self.signature(name, **(expected or {}))
        if sig.get("pending"):  # an unfinished batch prediction (napari_hitl.core.batch_predict)
            raise StaleDataError(f"{key!r} of image {name!r} is not complete: {sig['pending']}")
        stale = [k for k, v in want.items() if sig.get(k) != v]
        if stale:
            detail = ", ".join(f"{k}: stored {sig.get(k)!r} vs current {want[k]!r}" for k in stale)
            raise StaleDataError(
                f"{key!r} of image {name!r} is out of date ({detail}); {action} it again"
            )
        return arr  # type: ignore[return-value]

    # ---------------------------------------------------------------- models
    def model_names(self) -> list[str]:
        """Names of the stored models (checkpoints), sorted."""
        if "models" not in self._root:
            return []
        keys = self._root["models"].array_keys()  # type: ignore[union-attr]
        return sorted(k for k in keys if not k.startswith("."))

    def write_model(self, name: str, blob: bytes, config: dict[str, Any]) -> None:
        """Store model ``name``: its bytes and a JSON config, replacing one of that name.

        Written whole under a hidden name, then renamed into place: a crash while saving leaves
        the previous model as it was (the leftover is removed on the next open).
        """
        self.require_writable()
        if not name or "/" in name or name.startswith("."):
            raise ValueError(f"{name!r} is not a valid model name")
        with self.write_lock(f"save model {name!r}"):
            models = self._root.require_group("models")
            incoming = staging_name()
            arr = models.create_array(
                incoming,
                shape=(len(blob),),
                dtype=np.uint8,
                chunks=(max(1, min(len(blob), 1 << 24)),),
                attributes={ATTR: {"config": json.loads(json.dumps(config))}},
            )
            arr[...] = np.frombuffer(blob, dtype=np.uint8)
            folder = self.path / "models"
            trash = folder / staging_name("trash")
            if (folder / name).exists():
                os.replace(folder / name, trash)
            os.replace(folder / incoming, folder / name)
            shutil.rmtree(trash, ignore_errors=True)

    def model_config(self, name: str) -> dict[str, Any]:
        """The JSON config stored with model ``name``.

        Raises
        ------
        StoreError
            No such model.
        KeyError, ValueError
            Its metadata cannot be read (the caller says how to retrain).
        """
        if name not in self.model_names():
            raise StoreError(f"{self.path} has no model {name!r}")
        arr = self._root["models"][name]  # type: ignore[index]
        return dict(dict(arr.attrs)[ATTR]["config"])

    def model_bytes(self, name: str) -> bytes:
        """Model ``name``'s bytes, as :meth:`write_model` stored them (its config:
        :meth:`model_config`).

        Raises
        ------
        StoreError
            No such model.
        """
        if name not in self.model_names():
            raise StoreError(f"{self.path} has no model {name!r}")
        arr = self._root["models"][name]  # type: ignore[index]
        return np.asarray(arr[...], dtype=np.uint8).tobytes()

    def remove_model(self, name: str) -> None:
        """Delete model ``name`` (renamed away first, so a crash leaves it or nothing)."""
        self.require_writable()
        if name not in self.model_names():
            raise StoreError(f"{self.path} has no model {name!r}")
        with self.write_lock(f"remove model {name!r}"):
            folder = self.path / "models"
            trash = folder / staging_name("trash")
            os.replace(folder / name, trash)
            shutil.rmtree(trash, ignore_errors=True)

    # ---------------------------------------------------------------- summary
    def summary(self) -> dict[str, Any]:
        """A JSON-friendly overview for ``napari-hitl info``."""
        images = []
        for name in self.image_names():
            info = self.image_info(name)
            labels = self.labels(name)
            images.append(
                {
                    "name": name,
                    "axes": info.axes,
                    "shape": list(info.shape),
                    "dtype": info.dtype,
                    "bands": info.band_names,
                    "rgb": list(info.rgb),
                    "dsm_band": info.dsm_band,
                    "crs": info.georef.crs if info.georef else None,
                    "invalid_pixels": info.invalid_pixels,
                    "labeled_pixels": int(np.count_nonzero(labels)),
                    "derived": self.derived_keys(name),
                }
            )
        return {
            "path": str(self.path),
            "schema_version": self.schema_version,
            "classes": [c.to_json() for c in self.classes],
            "images": images,
        }


def check_labels(
    labels: np.ndarray,
    shape: tuple[int, ...],
    classes: Sequence[ClassInfo] | None,
    what: str = "labels",
) -> np.ndarray:
    """Validate a label map and return it as uint16.

    Parameters
    ----------
    labels
        Integer label map, 0 = unlabeled.
    shape
        The spatial shape it must have.
    classes
        When given, every non-zero value must be one of theirs.

    Raises
    ------
    ValueError
        Shape mismatch, non-integer or negative values, or values without a class.
    """
    arr = np.asarray(labels)
    if arr.shape != tuple(shape):
        raise ValueError(f"{what}: shape {arr.shape} does not match the image's {tuple(shape)}")
    if arr.dtype.kind == "b":
        arr = arr.astype(LABEL_DTYPE)
    if arr.dtype.kind not in "ui":
        raise ValueError(f"{what}: labels must be integers, got {arr.dtype}")
    if arr.size and (int(arr.min()) < 0 or int(arr.max()) > MAX_LABEL_VALUE):
        raise ValueError(
            f"{what}: values must be in 0..{MAX_LABEL_VALUE} "
            f"(found {int(arr.min())}..{int(arr.max())})"
        )
    if classes is not None:
        allowed = {c.value for c in classes} | {0}
        present = set(np.unique(arr).tolist())
        unknown = sorted(present - allowed)
        if unknown:
            raise ValueError(
                f"{what}: values {unknown[:10]} have no class (classes: "
                f"{', '.join(f'{c.value}={c.name}' for c in classes) or 'none'}); add classes first"
            )
    return arr.astype(LABEL_DTYPE, copy=False)


# ---------------------------------------------------------------------- import
@dataclass
class ImportItem:
    """One image to import: its name in the store, its pixels and optional human labels."""

    name: str
    raster: Raster
    labels: np.ndarray | None = None


@dataclass
class ImportResult:
    """What :func:`import_rasters` did (the generator's return value)."""

    store: ProjectStore
    images: list[ImageInfo]
    discarded: dict[str, int] = field(default_factory=dict)  # replaced image → human px gone
    created: bool = False


@dataclass
class _Plan:
    items: list[ImportItem]
    classes: list[ClassInfo]
    classes_changed: bool
    discarded: dict[str, int]


def human_labeled_pixels(store: ProjectStore, name: str) -> int:
    """How many pixels of image ``name`` a person labeled (provenance human), read by tiles."""
    prov = store.provenance_array(name)
    return sum(
        int(np.count_nonzero(np.asarray(prov[tile]) == PROVENANCE_HUMAN))
        for tile in _tiles(tuple(prov.shape), 4 * TILE)
    )


def _plan_import(
    store: ProjectStore | None,
    items: Sequence[ImportItem],
    classes: Sequence[ClassInfo] | None,
    rgb: tuple[int, ...] | None,
    overwrite: bool,
    discard_labels: bool,
) -> _Plan:
    """Check everything an import needs before anything is written; raise on the first problem."""
    if not items:
        raise InputFileError("input", "no images to import")
    where = str(store.path) if store is not None else "the new store"
    seen: dict[str, str] = {}
    for item in items:
        src = item.raster.sources[0] if item.raster.sources else item.name
        _validate_name(item.name)
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
    return _Plan(checked, final, final != current, discarded)


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
        :func:`napari_hitl.core.classes.parse_classes`); ``None`` keeps the store's. Label
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
        A bad class list (duplicates, more than :data:`~napari_hitl.core.classes.MAX_CLASSES`).
    """
    rgb_given = tuple(int(i) for i in rgb) if rgb is not None else None
    if isinstance(store, ProjectStore):
        store.require_writable()
        path, target = store.path, store
    else:
        path = Path(store)
        target = open_store(path, "a") if path.exists() else None
    plan = _plan_import(target, items, classes, rgb_given, overwrite, discard_labels)
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
            _remove_empty(made_dirs)
            raise
    else:
        assert target is not None
        work = target
    per_item = [_import_steps(it.raster.spatial_shape, pyramid) for it in plan.items]
    total = sum(per_item) + 1
    staged: list[tuple[Path, ImportItem, ImageInfo]] = []
    try:
        done = 0
        for item, steps in zip(plan.items, per_item, strict=True):
            staging = work.path / "images" / staging_name()
            staged.append((staging, item, None))  # type: ignore[arg-type]
            info = yield from _stage_image(
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
        _commit_images(work, [(s, it.name) for s, it, _ in staged], plan)
        if created:
            if path.exists():
                raise StoreError(f"{path} appeared while importing; nothing was written there")
            os.rename(work.path, path)
    except BaseException:
        for staging, _item, _info in staged:
            shutil.rmtree(staging, ignore_errors=True)
        if created:
            shutil.rmtree(work.path, ignore_errors=True)
            _remove_empty(made_dirs)
        raise
    result_store = ProjectStore.open(path, "a") if created else work
    yield Progress(total, total, f"imported {', '.join(it.name for it in plan.items)}")
    return ImportResult(result_store, [info for _s, _it, info in staged], plan.discarded, created)


def _remove_empty(folders: Sequence[Path]) -> None:
    """Remove the folders an import created (deepest first) if they are still empty."""
    for folder in reversed(folders):
        with contextlib.suppress(OSError):
            folder.rmdir()


def _import_steps(spatial: tuple[int, ...], pyramid: bool | None) -> int:
    """Progress steps of one image: its tiles and pyramid tiles."""
    return len(list(_tiles(spatial))) + len(_pyramid_tiles(spatial, _n_levels(spatial, pyramid)))


def _n_levels(spatial: tuple[int, ...], pyramid: bool | None) -> int:
    if pyramid is None:
        return pyramid_levels(spatial)
    return max(1, pyramid_levels(spatial, force=True)) if pyramid else 0


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
        The source (see :mod:`napari_hitl.core.rasters`).
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


def _stage_image(
    staging: Path,
    item: ImportItem,
    classes: Sequence[ClassInfo],
    rgb: tuple[int, ...] | None,
    units: Sequence[str | None] | None,
    wavelengths: Sequence[float | None] | None,
    pyramid: bool | None,
    cancel: CancelToken | None,
    done: int,
    total: int,
) -> Generator[Progress, None, ImageInfo]:
    """Write one image, complete, into the hidden folder ``staging`` (not yet in the store)."""
    raster, name = item.raster, item.name
    src = raster.sources[0] if raster.sources else name
    spatial = raster.spatial_shape
    dtype = np.dtype(np.uint8) if raster.dtype.kind == "b" else raster.dtype
    shape = (raster.n_bands, *spatial)
    group = zarr.open_group(str(staging), mode="w-", zarr_format=3)
    data_arr = _create_image_level(group, 0, shape, dtype, raster.axes)
    hitl = group.create_group("hitl")
    invalid_total = 0
    valid_arr = None
    hasher = hashlib.blake2b(digest_size=16)
    hasher.update(f"{shape}|{dtype.str}".encode())
    tiles = list(_tiles(spatial))
    n_levels = _n_levels(spatial, pyramid)
    level_tiles = _pyramid_tiles(spatial, n_levels)
    for i, tile in enumerate(tiles):
        if cancel is not None:
            cancel.raise_if_cancelled()
        try:
            block = np.asarray(raster.data[(slice(None), *tile)])
        except Exception as exc:  # damaged file found only when its pixels are read
            raise InputFileError(
                src, f"cannot read the pixel data ({type(exc).__name__}: {exc})"
            ) from exc
        if block.dtype != dtype:
            block = block.astype(dtype)
        data_arr[(slice(None), *tile)] = block
        hasher.update(np.ascontiguousarray(block).tobytes())
        invalid = _invalid_mask(block, raster.nodata)
        n_invalid = int(invalid.sum())
        if n_invalid:
            if valid_arr is None:
                valid_arr = hitl.create_array(
                    "valid",
                    shape=spatial,
                    dtype=bool,
                    chunks=_spatial_chunks(spatial),
                    fill_value=True,
                    dimension_names=dimension_names(raster.axes[1:]),
                )
            valid_arr[tile] = ~invalid
            invalid_total += n_invalid
        yield Progress(done + i + 1, total, f"importing {name}: tile {i + 1}/{len(tiles)}")
    for j, (level, tile) in enumerate(level_tiles):
        if cancel is not None:
            cancel.raise_if_cancelled()
        _write_level_tile(group, level, tile, raster.axes)
        yield Progress(
            done + len(tiles) + j + 1, total, f"importing {name}: pyramid level {level}/{n_levels}"
        )
    bands = _band_infos(raster, data_arr, valid_arr, units, wavelengths)
    info = ImageInfo(
        name=name,
        axes=raster.axes,
        shape=shape,
        dtype=dtype.str,
        bands=bands,
        rgb=rgb or default_rgb(bands),  # type: ignore[arg-type]
        nodata=raster.nodata,
        georef=raster.georef,
        source_hash=hasher.hexdigest(),
        sources=[str(s) for s in raster.sources],
        invalid_pixels=invalid_total,
    )
    group.attrs.update({"ome": _ngff_image_attrs(info, n_levels), ATTR: info.to_json()})
    _create_label_arrays(group, spatial, item.labels, name, classes, raster.axes, n_levels)
    return info


def _create_image_level(
    group: zarr.Group, level: int, shape: tuple[int, ...], dtype: np.dtype, axes: str
) -> Any:
    """Create pyramid ``level`` of an image (``shape`` channel first) in NGFF axis order, with
    its ``dimension_names``; returned as the store reads it (channel first)."""
    order = disk_axes(axes)
    stored = tuple(shape[axes.index(a)] for a in order)
    chunk = _chunks_for(shape, dtype.itemsize)
    arr = group.create_array(
        str(level),
        shape=stored,
        dtype=dtype,
        chunks=tuple(chunk[axes.index(a)] for a in order),
        fill_value=0,
        dimension_names=dimension_names(order),
    )
    return shown(arr, axes)


def add_image(store: ProjectStore, raster: Raster, name: str, **kwargs: Any) -> ImageInfo:
    """Run :func:`import_raster` to the end (for scripts and tests)."""
    return run_to_end(import_raster(store, raster, name, **kwargs))


def _tiles(
    spatial: tuple[int, ...], edge: int | None = None
) -> Generator[tuple[slice, ...], None, None]:
    """Tiles over the trailing Y, X axes (and every index of a stack axis); ``edge`` defaults
    to :data:`TILE` (read at call time)."""
    edge = edge or TILE
    *stack, ny, nx = spatial
    for idx in np.ndindex(*stack) if stack else [()]:
        for y in range(0, ny, edge):
            for x in range(0, nx, edge):
                yield (
                    *[slice(i, i + 1) for i in idx],
                    slice(y, min(y + edge, ny)),
                    slice(x, min(x + edge, nx)),
                )


def pyramid_levels(spatial: Sequence[int], force: bool = False) -> int:
    """How many downsampled levels an image of ``spatial`` shape gets at import (0: none).

    Levels halve the two last axes until the longer side is at most :data:`PYRAMID_TOP_EDGE`;
    only images whose longer side exceeds :data:`PYRAMID_MIN_EDGE` get them unless ``force``.
    """
    h, w = (int(v) for v in spatial[-2:])
    if not force and max(h, w) <= PYRAMID_MIN_EDGE:
        return 0
    n = 0
    while max(h, w) > PYRAMID_TOP_EDGE:
        h, w, n = -(-h // 2), -(-w // 2), n + 1
    return n


def level_shape(spatial: Sequence[int], level: int) -> tuple[int, ...]:
    """Spatial shape of pyramid level ``level`` (each level rounds half sizes up)."""
    *stack, h, w = (int(v) for v in spatial)
    for _ in range(level):
        h, w = -(-h // 2), -(-w // 2)
    return (*stack, h, w)


def _pyramid_tiles(spatial: tuple[int, ...], levels: int) -> list[tuple[int, tuple[slice, ...]]]:
    """(level, tile of that level) for every level to write, coarser levels after finer."""
    return [(k, tile) for k in range(1, levels + 1) for tile in _tiles(level_shape(spatial, k))]


def downsample2(block: np.ndarray) -> np.ndarray:
    """Means of 2 × 2 pixels over the two last axes (an odd last row/column is repeated), in
    the block's dtype (integers rounded). A NaN makes its 2 × 2 mean NaN."""
    h, w = block.shape[-2:]
    if h % 2 or w % 2:
        pad = [(0, 0)] * (block.ndim - 2) + [(0, h % 2), (0, w % 2)]
        block = np.pad(block, pad, mode="edge")
    f = block.astype(np.float32)
    out = (f[..., ::2, ::2] + f[..., 1::2, ::2] + f[..., ::2, 1::2] + f[..., 1::2, 1::2]) * 0.25
    if block.dtype.kind in "iub":
        info = np.iinfo(block.dtype) if block.dtype.kind != "b" else np.iinfo(np.uint8)
        return np.clip(np.rint(out), info.min, info.max).astype(block.dtype)
    return out.astype(block.dtype)


def _write_level_tile(group: zarr.Group, level: int, tile: tuple[slice, ...], axes: str) -> None:
    """Compute one tile of pyramid ``level`` from level ``level - 1`` (created on first use);
    ``axes``: the image's channel-first axes."""
    src = shown(group[str(level - 1)], axes)
    shape = (src.shape[0], *level_shape(src.shape[1:], 1))
    key = str(level)
    if key in group:
        dst = shown(group[key], axes)
    else:
        dst = _create_image_level(group, level, shape, src.dtype, axes)
    *stack, ys, xs = tile
    src_tile = (*stack, slice(2 * ys.start, 2 * ys.stop), slice(2 * xs.start, 2 * xs.stop))
    block = np.asarray(src[(slice(None), *src_tile)])
    dst[(slice(None), *tile)] = downsample2(block)


def _invalid_mask(block: np.ndarray, nodata: float | None) -> np.ndarray:
    """Pixels (over the band axis) that are NaN/inf in any band or equal nodata in all bands."""
    invalid = np.zeros(block.shape[1:], dtype=bool)
    if block.dtype.kind == "f":
        invalid |= ~np.all(np.isfinite(block), axis=0)
    if nodata is not None and np.isfinite(nodata):
        invalid |= np.all(block == nodata, axis=0)
    return invalid


def _band_infos(
    raster: Raster,
    data_arr: zarr.Array,
    valid_arr: zarr.Array | None,
    units: Sequence[str | None] | None,
    wavelengths: Sequence[float | None] | None,
) -> list[BandInfo]:
    sub = subsample_for_stats(data_arr.shape)
    sample = np.asarray(data_arr[sub])
    valid = np.asarray(valid_arr[sub[1:]]) if valid_arr is not None else None
    bands = []
    for i, band_name in enumerate(raster.band_names):
        values = sample[i] if valid is None else sample[i][valid]
        role = raster.roles[i] if i < len(raster.roles) else "spectral"
        if role == "spectral" and is_height_band(band_name):
            role = "dsm"
        wave = wavelengths[i] if wavelengths and i < len(wavelengths) else None
        if wave is None and role == "spectral":
            wave = wavelength_for_name(band_name)
        unit = units[i] if units and i < len(units) else None
        if unit is None and raster.georef is not None:  # GDAL's unit type, when the file has one
            unit = raster.georef.band_metadata(i).get("unittype") or None
        if unit is None and role == "dsm":
            unit = "m"
        bands.append(
            BandInfo(
                name=band_name,
                role=role,
                unit=unit,
                wavelength_nm=wave,
                stats=robust_stats(values, None),
            )
        )
    return bands


def _ngff_image_attrs(info: ImageInfo, levels: int = 0) -> dict[str, Any]:
    """The ``ome`` attributes of an image: multiscales in NGFF axis order and omero channels."""
    colors = {info.rgb[0]: "FF0000", info.rgb[1]: "00FF00", info.rgb[2]: "0000FF"}
    channels = []
    for i, band in enumerate(info.bands):
        s = band.stats
        window = (
            {"start": s.p1, "end": s.p99, "min": s.min, "max": s.max}
            if s is not None and s.valid_pixels
            else {"start": 0, "end": 1, "min": 0, "max": 1}
        )
        channels.append(
            {
                "label": band.name,
                "color": colors.get(i, "FFFFFF"),
                "window": window,
                "active": i in info.rgb,
            }
        )
    return image_attrs(info.name, info.axes, levels, channels)


def _image_label_attrs(classes: Sequence[ClassInfo]) -> dict[str, Any]:
    """NGFF ``image-label`` metadata: class colours and names for other OME-Zarr tools."""
    return image_label_attrs([(c.value, c.rgba, c.name) for c in classes])


def _create_label_arrays(
    group: zarr.Group,
    spatial: tuple[int, ...],
    labels: np.ndarray | None,
    name: str,
    classes: Sequence[ClassInfo],
    axes: str,
    levels: int = 0,
) -> None:
    """The NGFF labels group (one level per image level) and the provenance of a staged image
    (``axes``: the image's channel-first axes)."""
    labels_group = group.create_group("labels")
    labels_group.attrs.update({"ome": {"version": NGFF_VERSION, "labels": ["annotations"]}})
    ann = labels_group.create_group("annotations")
    letters = label_axes(axes)
    ann.attrs.update(
        {
            "ome": {
                "version": NGFF_VERSION,
                "multiscales": [multiscale(f"{name} annotations", letters, levels)],
                "image-label": _image_label_attrs(classes),
            }
        }
    )
    names = dimension_names(letters)
    arrays = [
        ann.create_array(
            str(k),
            shape=level_shape(spatial, k),
            dtype=LABEL_DTYPE,
            chunks=_spatial_chunks(level_shape(spatial, k)),
            fill_value=0,
            dimension_names=names,
        )
        for k in range(levels + 1)
    ]
    prov = group["hitl"].create_array(  # type: ignore[union-attr]
        "provenance",
        shape=spatial,
        dtype=LABEL_DTYPE,
        chunks=_spatial_chunks(spatial),
        fill_value=0,
        dimension_names=names,
    )
    if labels is not None and np.any(labels):
        for arr, level in zip(arrays, label_levels(labels, levels), strict=True):
            arr[...] = level
        prov[...] = np.where(labels > 0, PROVENANCE_HUMAN, PROVENANCE_UNLABELED).astype(LABEL_DTYPE)


def _commit_images(store: ProjectStore, staged: Sequence[tuple[Path, str]], plan: _Plan) -> None:
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
                label_attrs = _image_label_attrs(plan.classes)
                for other in store.image_names():
                    if other in new_names:
                        continue
                    meta_path = images / other / "labels" / "annotations" / "zarr.json"
                    raw = meta_path.read_bytes()
                    meta = json.loads(raw)
                    ome = meta.setdefault("attributes", {}).setdefault("ome", {})
                    ome["image-label"] = label_attrs
                    rewritten.append((meta_path, raw))
                    _atomic_write_json(meta_path, meta)
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


# ------------------------------------------------------- opening checked, damage named
def open_store(path: str | os.PathLike[str], mode: str = "r") -> ProjectStore:
    """:meth:`ProjectStore.open`, which checks the root metadata's types (kept for callers)."""
    return ProjectStore.open(path, mode)


def _root_attrs_problem(meta: Any) -> str | None:
    """What is wrong with the ``napari_hitl`` root attributes (``None``: nothing found)."""
    if not isinstance(meta, dict):
        return f"zarr.json holds {type(meta).__name__}, not an object"
    attrs = meta.get("attributes", {})
    if not isinstance(attrs, dict):
        return f"'attributes' is {type(attrs).__name__}, not an object"
    ours = attrs.get(ATTR)
    if ours is None:
        return None  # not a napari-hitl store: ProjectStore.open says so
    if not isinstance(ours, dict):
        return f"'{ATTR}' is {_json_type(ours)}, not an object"
    version = ours.get("schema_version")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        return f"schema_version is {_json_type(version)}, expected a whole number ≥ 1"
    expected = {"classes": list, "images": list, "settings": dict, "history": list}
    for key, kind in expected.items():
        if key in ours and not isinstance(ours[key], kind):
            want = "a list" if kind is list else "an object"
            return f"{key} is {_json_type(ours[key])}, expected {want}"
    bad = [n for n in ours.get("images", []) if not isinstance(n, str)]
    if bad:
        return f"the image list holds {_json_type(bad[0])}, expected image names"
    # Too many classes is refused where the classes are used, so `classes --set` can fix it.
    if "classes" in ours and len(ours["classes"]) <= MAX_CLASSES:
        try:
            classes_from_json(ours["classes"])
        except ValueError as exc:
            return f"classes: {exc}"
    return None


def _json_type(value: Any) -> str:
    """``null``, ``"text"``, ``3``... as the value appears in JSON (shortened)."""
    text = json.dumps(value)
    return text if len(text) <= 40 else text[:37] + "..."


def is_decode_error(exc: BaseException) -> bool:
    """Whether ``exc`` was raised while decoding a stored chunk (zarr codecs or numcodecs)."""
    if not isinstance(exc, Exception) or isinstance(exc, HitlError):
        return False
    tb = exc.__traceback__
    while tb is not None:
        name = tb.tb_frame.f_code.co_filename.replace("\\", "/")
        if "/numcodecs/" in name or "numcodecs/" in name or "/zarr/codecs/" in name:
            return True
        tb = tb.tb_next
    return False


# Arrays of an image that a corrupt chunk is looked for in, cheapest first.
_CHECKED_ARRAYS = ("labels/annotations/0", "hitl/provenance", "hitl/valid")


def find_damaged_chunk(
    store: ProjectStore, arrays: Sequence[str] = _CHECKED_ARRAYS
) -> tuple[str, str, str, str] | None:
    """The first chunk of ``arrays`` (of any image) that cannot be decoded.

    Returns
    -------
    tuple of str or None
        ``(image, array, chunk key, reason)``, or ``None`` when every chunk reads.
    """
    for name in store.image_names():
        group = zarr.open_group(str(store.path / "images" / name), mode="r")
        for key in arrays:
            try:
                arr = group[key]
            except KeyError:
                continue
            if not isinstance(arr, zarr.Array):
                continue
            for idx in np.ndindex(*arr.cdata_shape):
                try:
                    arr.blocks[idx]
                except Exception as exc:
                    chunk = arr.metadata.encode_chunk_key(idx)
                    return name, key, chunk, f"{type(exc).__name__}: {exc}"
    return None


def damaged_store_error(store: ProjectStore, exc: BaseException) -> StoreError:
    """A one-line :class:`StoreError` for a chunk that failed to decode.

    Parameters
    ----------
    store
        The store the chunk belongs to.
    exc
        The codec's exception (see :func:`is_decode_error`).

    Returns
    -------
    StoreError
        Naming the image, array and chunk when :func:`find_damaged_chunk` finds them.
    """
    found = find_damaged_chunk(store)
    if found is None:
        return StoreError(
            f"{store.path}: a stored chunk cannot be decoded ({type(exc).__name__}: {exc}); "
            "the store is damaged: restore it from a backup"
        )
    name, key, chunk, reason = found
    return StoreError(
        f"{store.path}: image {name!r}, array {key}: chunk {chunk} cannot be decoded ({reason}); "
        f"the store is damaged: restore it from a backup, or re-import the image with "
        "--overwrite --discard-labels"
    )


def store_summary(store: ProjectStore) -> dict[str, Any]:
    """:meth:`ProjectStore.summary`, with an undecodable chunk reported as a :class:`StoreError`
    naming the image and array instead of a codec's own exception."""
    try:
        return store.summary()
    except Exception as exc:
        if is_decode_error(exc):
            raise damaged_store_error(store, exc) from exc
        raise
