"""Labels, provenance and their undo history: every change one journaled transaction."""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import zarr

from napari_hitl.core.errors import (
    StoreDamagedError,
)
from napari_hitl.core.store.classes import (
    MAX_LABEL_VALUE,
    ClassInfo,
)
from napari_hitl.core.store.journal import Transaction
from napari_hitl.core.store.layout import (
    ATTR,
    LABEL_DTYPE,
    PROVENANCE_HUMAN,
    PROVENANCE_UNLABELED,
    LabelState,
    StrokeSave,
)
from napari_hitl.core.store.ngff import (
    label_levels,
)


def changed_chunk_slices(
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


def stage_changed_chunks(
    root: Path, txn: Transaction, rel: str, new: np.ndarray, old: np.ndarray
) -> None:
    """Write the chunks of array ``rel`` that change into ``txn``'s staging area."""
    meta = root / rel / "zarr.json"
    target = zarr.open_array(str(root / rel), mode="r")
    windows = changed_chunk_slices(new, old, target.chunks)
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


def stage_push(
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


class LabelsMixin:
    """Label methods of :class:`~napari_hitl.core.store.project.ProjectStore`."""

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

    def stale_label_levels(self, name: str, labels: np.ndarray | None = None) -> list[int]:
        """The label pyramid levels that differ from the full-size ``labels`` subsampled
        (default: the stored labels), i.e. what other OME-Zarr tools would show wrongly."""
        labels = self.labels(name) if labels is None else labels
        expected = label_levels(labels, self.label_level_count(name) - 1)
        return [
            k
            for k in range(1, len(expected))
            if not np.array_equal(self.label_level(name, k), expected[k])
        ]

    def rebuild_label_levels(self, name: str) -> list[int]:
        """Write the stale label pyramid levels again from the full-size labels; returns them.
        Level 0 (the labels people and pushes wrote) is never changed."""
        with self.write_lock("rebuild label levels"):
            self.require_writable()
            labels = self.labels(name)
            stale = self.stale_label_levels(name, labels)
            expected = label_levels(labels, self.label_level_count(name) - 1)
            group = self._image_group(name)["labels/annotations"]
            for k in stale:
                group[str(k)][...] = expected[k]  # type: ignore[index]
            return stale

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
        rename, then moved into place (:mod:`napari_hitl.core.store.journal`). A crash at any
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
                    stage_changed_chunks(self.path, txn, rel, new_data, old_data)
                if add_push is not None:
                    iteration, index, values = add_push
                    self._image_group(name)["hitl"].require_group("pushes")  # type: ignore[union-attr]
                    keys = self.push_keys(name)
                    key = str(max((int(k) for k in keys), default=-1) + 1)
                    stage_push(txn, f"{base}/hitl/pushes/{key}", iteration, index, values)
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
