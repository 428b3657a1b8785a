"""Verify a project store's invariants and repair what can be repaired without a human label.

Used by ``napari-hitl check STORE [--repair]``. What is checked, per image:

- an interrupted change waiting in the journal (opening the store for a change finishes it);
- labels and provenance readable, of the same shape, provenance 0 exactly where labels are 0,
  provenance codes known, label values among the project's classes;
- every push record (undo history) readable, its pixels inside the image and its values classes;
- derived arrays (predictions, confidence...) signed, from the current image, not half written;
- every model's bytes against its recorded hash, and no model in a format that can run code.

``--repair`` never changes a human label. Labels left without provenance by an older
napari-hitl crashing between its two writes become machine labels of the push that wrote them
when the undo history names them, human labels otherwise; provenance without a label is cleared;
damaged undo records, half-written or foreign derived arrays and damaged models are deleted
(each is recomputable: undo history only for that push, predictions by Infer, models by Train).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from napari_hitl.core.errors import StoreError
from napari_hitl.core.store import (
    LABEL_DTYPE,
    PROVENANCE_HUMAN,
    PROVENANCE_UNLABELED,
    ProjectStore,
    machine_provenance,
)
from napari_hitl.core.store.journal import pending


@dataclass
class Problem:
    """One broken invariant; ``fix`` repairs it (``None``: cannot be repaired here)."""

    where: str
    what: str
    fix: Any = None

    def line(self) -> str:
        """One line for the terminal."""
        tail = "" if self.fix is not None else " (cannot be repaired: restore from a backup)"
        return f"{self.where}: {self.what}{tail}"


@dataclass
class CheckReport:
    """What :func:`check_store` found and, with ``repair``, what it did."""

    problems: list[Problem] = field(default_factory=list)
    repaired: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """No problem left."""
        return not self.problems


def _image_problems(store: ProjectStore, name: str) -> list[Problem]:
    where = f"image {name!r}"
    try:
        labels = store.labels(name)
    except Exception as exc:  # a corrupt or missing chunk
        return [Problem(where, f"labels cannot be read ({type(exc).__name__}: {exc})")]
    try:
        prov = store.provenance(name)
    except Exception as exc:
        return [Problem(where, f"provenance cannot be read ({type(exc).__name__}: {exc})")]
    out: list[Problem] = []
    values = {c.value for c in store.classes}
    present = set(np.unique(labels).tolist()) - {0}
    unknown = sorted(present - values)
    if unknown:
        out.append(
            Problem(
                where,
                f"label values {unknown[:10]} are not classes of the project",
                lambda s, u=unknown: _add_classes(s, u),
            )
        )
    keys = store.push_keys(name)
    records: list[tuple[int, np.ndarray, np.ndarray]] = []
    for key in keys:
        try:
            it, index, vals = store.read_push(name, key)
        except StoreError as exc:
            out.append(Problem(where, f"undo record {key}: {exc}", _drop_push(name, key)))
            continue
        if index.size and (index.min() < 0 or index.max() >= labels.size):
            out.append(
                Problem(where, f"undo record {key} points outside the image", _drop_push(name, key))
            )
            continue
        records.append((it, index, vals))
    orphans = (labels > 0) & (prov == PROVENANCE_UNLABELED)
    ghosts = (labels == 0) & (prov != PROVENANCE_UNLABELED)
    if orphans.any() or ghosts.any():
        parts = []
        if orphans.any():
            parts.append(f"{int(orphans.sum())} labeled pixels have no provenance")
        if ghosts.any():
            parts.append(f"{int(ghosts.sum())} unlabeled pixels have a provenance")
        out.append(
            Problem(where, "; ".join(parts), lambda s, n=name, r=records: _fix_provenance(s, n, r))
        )
    stale = store.stale_label_levels(name, labels)
    if stale:
        out.append(
            Problem(
                where,
                f"label pyramid level(s) {stale} differ from the labels (what other OME-Zarr "
                "tools show when zoomed out)",
                lambda s, n=name: f"rebuilt label levels {s.rebuild_label_levels(n)} of {n!r}",
            )
        )
    for key in store.derived_keys(name):
        problem = _derived_problem(store, name, key)
        if problem:
            out.append(Problem(where, f"{key!r} {problem}", _drop_derived(name, key)))
    return out


def _add_classes(store: ProjectStore, values: list[int]) -> str:
    store.ensure_classes(values)
    return f"added classes {values[:10]} for label values that had none (rename them)"


def _drop_push(name: str, key: str) -> Any:
    def fix(store: ProjectStore) -> str:
        now = store.label_state(name)
        store.commit_labels(
            name, now.labels, now.provenance, old=now, drop_pushes=[key], what="repair"
        )
        return f"image {name!r}: removed undo record {key} (that push can no longer be undone)"

    return fix


def _drop_derived(name: str, key: str) -> Any:
    def fix(store: ProjectStore) -> str:
        store.remove_derived(name, key)
        return f"image {name!r}: removed {key!r} (compute it again with Infer / predict)"

    return fix


def _derived_problem(store: ProjectStore, name: str, key: str) -> str | None:
    sig = store.derived_signature(name, key)
    if sig is None:
        return "has no signature"
    if sig.get("pending") == "being written":
        return "was interrupted while being written"
    if sig.get("source_hash") != store.image_info(name).source_hash:
        return "was computed from another image"
    return None


def _fix_provenance(
    store: ProjectStore, name: str, records: list[tuple[int, np.ndarray, np.ndarray]]
) -> str:
    now = store.label_state(name)
    labels, prov = now.labels, now.provenance.copy()
    flat_l, flat_p = labels.ravel(), prov.ravel()
    orphans = (flat_l > 0) & (flat_p == PROVENANCE_UNLABELED)
    n_orphans = int(orphans.sum())
    machine = 0
    for iteration, index, values in records:  # the undo history names the pixels a push wrote
        hit = orphans[index] & (flat_l[index] == values)
        flat_p[index[hit]] = machine_provenance(iteration)
        orphans[index[hit]] = False
        machine += int(hit.sum())
    flat_p[orphans] = PROVENANCE_HUMAN
    ghosts = int(((labels == 0) & (prov != PROVENANCE_UNLABELED)).sum())
    prov[labels == 0] = PROVENANCE_UNLABELED
    store.commit_labels(name, labels, prov.astype(LABEL_DTYPE), old=now, what="repair")
    return (
        f"image {name!r}: {machine} labeled pixels marked machine (named by the undo history), "
        f"{n_orphans - machine} marked human, {ghosts} stale provenance entries cleared"
    )


def _model_problems(store: ProjectStore) -> list[Problem]:
    from napari_hitl.core.learning.registry import checkpoint_problem, list_checkpoints

    out = []
    for model in list_checkpoints(store):
        problem = checkpoint_problem(store, model)
        if problem:

            def fix(s: ProjectStore, m: str = model) -> str:
                from napari_hitl.core.learning.registry import remove_checkpoint

                remove_checkpoint(s, m)
                return f"model {m!r}: removed (train again with Train / napari-hitl train)"

            out.append(Problem(f"model {model!r}", problem, fix))
    return out


def check_store(path: str | Path, repair: bool = False) -> CheckReport:
    """Verify the invariants of the store at ``path`` (see the module's description).

    Parameters
    ----------
    path
        The store.
    repair
        Finish an interrupted change and repair what can be repaired (never a human label).

    Returns
    -------
    CheckReport
        The problems left (after repair) and what was repaired.

    Raises
    ------
    StoreError
        Not a project store, or its metadata cannot be read at all.
    """
    report = CheckReport()
    if repair:
        store = ProjectStore.open(path, "a")
        report.repaired.extend(store.recovered)
    else:
        store = ProjectStore.open(path, "r", recover=False)
        for journal in pending(store.path):
            report.problems.append(
                Problem(
                    "store",
                    f"an interrupted change is waiting in {journal.name} "
                    "(opening the store for a change, or --repair, finishes or drops it)",
                    True,
                )
            )
        if report.problems:
            return report  # labels are between two states until the journal is replayed
    problems: list[Problem] = []
    try:
        store.classes  # noqa: B018 - parsing them is the check
    except (ValueError, KeyError, TypeError) as exc:
        problems.append(Problem("store", f"the class list cannot be read ({exc})"))
        report.problems = problems
        return report
    for name in store.image_names():
        try:
            store.image_info(name)
        except Exception as exc:
            problems.append(Problem(f"image {name!r}", f"metadata cannot be read ({exc})"))
            continue
        problems.extend(_image_problems(store, name))
    problems.extend(_model_problems(store))
    if repair:
        with store.write_lock("repair"):
            for p in problems:
                if p.fix is not None and callable(p.fix):
                    report.repaired.append(p.fix(store))
        return CheckReport(check_store(path).problems, report.repaired)
    report.problems = problems
    return report
