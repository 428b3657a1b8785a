"""The project store object: opening, locking, settings, classes and images."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import zarr

from napari_hitl import __version__
from napari_hitl.core.errors import (
    SchemaVersionError,
    StoreError,
)
from napari_hitl.core.store.classes import (
    ClassInfo,
    classes_from_json,
    default_color,
)
from napari_hitl.core.store.derived import DerivedMixin
from napari_hitl.core.store.journal import pending, recover
from napari_hitl.core.store.labels import LabelsMixin
from napari_hitl.core.store.layout import (
    ATTR,
    SCHEMA_VERSION,
    ImageInfo,
    atomic_write_json,
    is_abandoned,
    root_attrs_problem,
    staging_name,
)
from napari_hitl.core.store.lock import store_lock
from napari_hitl.core.store.ngff import (
    as_dask,
    root_ome_attrs,
    shown,
    write_series,
)
from napari_hitl.core.store.staging import class_label_attrs


class ProjectStore(LabelsMixin, DerivedMixin):
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
        problem = root_attrs_problem(meta)
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
                if child.is_dir() and is_abandoned(child):
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
            atomic_write_json(meta_path, meta)
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
        (``zarr.json``); :func:`napari_hitl.core.loop.history.train_record` makes them.
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
                ome["image-label"] = class_label_attrs(validated)
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
        atomic_write_json(group_json, meta)
        return self.image_info(name)

    def image(self, name: str) -> zarr.Array:
        """The bands of an image, lazily read, channel first (``C, [Z|T,] Y, X``).

        A zarr array, or for a time stack (stored ``T, C, Y, X`` as NGFF requires) an
        :class:`~napari_hitl.core.store.ngff.AxisView` that reads and writes it channel first.
        """
        return shown(self._image_group(name)["0"])

    def image_levels(self, name: str) -> list[zarr.Array]:
        """The image at every stored resolution: ``[full, 1/2, 1/4, ...]`` (just ``[full]`` for
        images without a pyramid), each lazily read and channel first (see :meth:`image`)."""
        group = self._image_group(name)
        levels = []
        while str(len(levels)) in group:
            levels.append(shown(group[str(len(levels))]))
        return levels

    def image_dask(self, name: str, chunks: Any = None) -> Any:
        """The full-size image as a channel-first dask array, rechunked to ``chunks`` when
        given."""
        return as_dask(self.image(name), chunks)

    def image_dask_levels(self, name: str) -> list[Any]:
        """:meth:`image_levels` as channel-first dask arrays (for multiscale layers)."""
        return [as_dask(level) for level in self.image_levels(name)]

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
