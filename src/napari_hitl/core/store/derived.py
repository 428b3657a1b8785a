"""Arrays computed from an image (predictions, confidence…), signed, and the stored models."""

from __future__ import annotations

import json
import os
import shutil
from typing import Any

import numpy as np
import zarr

from napari_hitl.core.errors import (
    StaleDataError,
    StoreError,
)
from napari_hitl.core.store.layout import ATTR, SCHEMA_VERSION, spatial_chunks, staging_name


class DerivedMixin:
    """Derived-array and model methods of :class:`~napari_hitl.core.store.project.ProjectStore`."""

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
                chunks=spatial_chunks(data.shape) if data.ndim >= 2 else data.shape,
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
        if sig.get("pending"):  # an unfinished batch prediction (napari_hitl.core.loop.batch)
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
