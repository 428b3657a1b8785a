"""The store's format in small pieces: constants, image metadata, chunking, atomic writes."""

from __future__ import annotations

import json
import os
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from napari_hitl.core.io.bands import BandInfo
from napari_hitl.core.io.geo import GeoRef
from napari_hitl.core.store.classes import MAX_CLASSES, classes_from_json

SCHEMA_VERSION = 1
ATTR = "napari_hitl"
LABEL_DTYPE = np.uint16
PROVENANCE_UNLABELED = 0
PROVENANCE_HUMAN = 1
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


def validate_name(name: str) -> str:
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


def chunks_for(shape: tuple[int, ...], itemsize: int) -> tuple[int, ...]:
    """All bands of a spatial tile per chunk, tiles shrunk until a chunk is at most ~4 MB."""
    c = shape[0]
    stack = (1,) * (len(shape) - 3)
    edge = 512
    while edge > 64 and c * edge * edge * itemsize > _CHUNK_BYTES:
        edge //= 2
    return (c, *stack, min(edge, shape[-2]), min(edge, shape[-1]))


def spatial_chunks(shape: tuple[int, ...]) -> tuple[int, ...]:
    return (*(1,) * (len(shape) - 2), min(512, shape[-2]), min(512, shape[-1]))


def atomic_write_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    tmp.write_text(json.dumps(data, indent=2))
    os.replace(tmp, path)


def staging_name(kind: str = "incoming") -> str:
    """A hidden folder name for work in progress: ``.incoming-<pid>-<random>``.

    The process id lets :meth:`ProjectStore.open` tell a crashed writer's leftovers (removed)
    from another process's import or model save still under way (kept).
    """
    return f".{kind}-{os.getpid()}-{uuid.uuid4().hex}"


def is_abandoned(folder: Path) -> bool:
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


def root_attrs_problem(meta: Any) -> str | None:
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
        return f"'{ATTR}' is {json_type(ours)}, not an object"
    version = ours.get("schema_version")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        return f"schema_version is {json_type(version)}, expected a whole number ≥ 1"
    expected = {"classes": list, "images": list, "settings": dict, "history": list}
    for key, kind in expected.items():
        if key in ours and not isinstance(ours[key], kind):
            want = "a list" if kind is list else "an object"
            return f"{key} is {json_type(ours[key])}, expected {want}"
    bad = [n for n in ours.get("images", []) if not isinstance(n, str)]
    if bad:
        return f"the image list holds {json_type(bad[0])}, expected image names"
    # Too many classes is refused where the classes are used, so `classes --set` can fix it.
    if "classes" in ours and len(ours["classes"]) <= MAX_CLASSES:
        try:
            classes_from_json(ours["classes"])
        except ValueError as exc:
            return f"classes: {exc}"
    return None


def json_type(value: Any) -> str:
    """``null``, ``"text"``, ``3``... as the value appears in JSON (shortened)."""
    text = json.dumps(value)
    return text if len(text) <= 40 else text[:37] + "..."
