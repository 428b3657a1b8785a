"""Crash-safe changes to a project store: a redo journal of file renames.

A change (labels + provenance + undo history + label generation) is first written in full under
``STORE/.journal/<id>/data/`` — the new chunk files, the new push record, the new group metadata,
each at the path it will have in the store. Nothing in the store has changed yet. Then
``ops.json`` — the list of renames and deletions — is written to a temporary name and renamed
into place: **that rename is the commit**. Afterwards each staged file is renamed over its
target (an atomic step per file), each deletion done, and the journal folder removed.

A crash before the commit leaves a journal without ``ops.json``: it is removed and the store is
as it was. A crash after the commit leaves ``ops.json``: replaying it finishes the change. Both
happen in :func:`recover`, which the store calls whenever it is opened; replaying is idempotent
(a staged file that is gone was already moved). The journal belongs to
:mod:`napari_hitl.core.store`; nothing else writes it.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import time
import uuid
from pathlib import Path
from typing import Any

JOURNAL_DIR = ".journal"
OPS_NAME = "ops.json"
# Test hook: kill this process at a named point of a transaction, to prove recovery.
_CRASH_ENV = "NAPARI_HITL_TEST_CRASH_AT"


def _crash_point(name: str) -> None:
    if os.environ.get(_CRASH_ENV) == name:
        os.kill(os.getpid(), signal.SIGKILL)


def _fsync_path(path: Path) -> None:
    """Flush a file (or a folder's entries) to disk; ignored where the OS does not allow it."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class Transaction:
    """One change to the store, staged beside it and committed by one rename.

    Parameters
    ----------
    root
        The store's folder.
    what
        A short description, kept in the journal (``"push into img"``).
    """

    def __init__(self, root: Path, what: str) -> None:
        self.root = root
        self.what = what
        self.dir = root / JOURNAL_DIR / f"{time.time_ns():020d}-{uuid.uuid4().hex[:8]}"
        self.data = self.dir / "data"
        self.data.mkdir(parents=True)
        self.ops: list[dict[str, str]] = []

    def stage(self, rel: str) -> Path:
        """The staging path of store path ``rel`` (its parent folder exists)."""
        path = self.data / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    def replace(self, rel: str) -> None:
        """Commit will move the staged file or folder ``rel`` over the store's ``rel``."""
        self.ops.append({"op": "replace", "path": rel})

    def replace_files_under(self, rel: str) -> int:
        """Add a :meth:`replace` for every staged file under ``rel``; returns how many."""
        base = self.data / rel
        n = 0
        for dirpath, _, files in os.walk(base):
            for f in sorted(files):
                full = Path(dirpath) / f
                self.replace(full.relative_to(self.data).as_posix())
                n += 1
        return n

    def delete(self, rel: str) -> None:
        """Commit will delete the store's file or folder ``rel``."""
        self.ops.append({"op": "delete", "path": rel})

    def commit(self) -> None:
        """Make the change durable and apply it (see the module's description)."""
        if not self.ops:
            self.abort()
            return
        for dirpath, _, files in os.walk(self.data):
            for f in files:
                _fsync_path(Path(dirpath) / f)
        _crash_point("staged")
        tmp = self.dir / (OPS_NAME + ".tmp")
        tmp.write_text(json.dumps({"what": self.what, "ops": self.ops}))
        _fsync_path(tmp)
        os.replace(tmp, self.dir / OPS_NAME)
        _fsync_path(self.dir)
        _crash_point("committed")
        _apply(self.root, self.dir, self.ops)
        shutil.rmtree(self.dir, ignore_errors=True)

    def abort(self) -> None:
        """Forget the staged change (the store was not touched)."""
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> Transaction:
        return self

    def __exit__(self, exc_type: Any, *_: Any) -> None:
        if exc_type is not None:
            self.abort()


def _remove(target: Path, trash_dir: Path) -> None:
    if target.is_dir() and not target.is_symlink():
        trash = trash_dir / f"trash-{uuid.uuid4().hex}"
        os.replace(target, trash)
        shutil.rmtree(trash, ignore_errors=True)
    elif target.exists() or target.is_symlink():
        target.unlink()


def _apply(root: Path, journal: Path, ops: list[dict[str, str]]) -> None:
    data = journal / "data"
    for i, op in enumerate(ops):
        target = root / op["path"]
        if op["op"] == "replace":
            staged = data / op["path"]
            if staged.exists():  # gone: moved by an earlier, interrupted replay
                target.parent.mkdir(parents=True, exist_ok=True)
                if staged.is_dir() and target.exists():
                    _remove(target, journal)
                os.replace(staged, target)
        elif op["op"] == "delete":
            _remove(target, journal)
        else:  # pragma: no cover - written only by this module
            raise ValueError(f"unknown journal operation {op['op']!r}")
        _crash_point(f"applied:{i + 1}")


def pending(root: Path) -> list[Path]:
    """Journal folders of unfinished changes (committed or not), oldest first."""
    base = root / JOURNAL_DIR
    if not base.is_dir():
        return []
    return sorted(p for p in base.iterdir() if p.is_dir())


def recover(root: Path) -> list[str]:
    """Finish committed changes and drop uncommitted ones; returns what was done, one line each.

    The caller holds the store's exclusive lock.
    """
    done = []
    for journal in pending(root):
        ops_file = journal / OPS_NAME
        if ops_file.is_file():
            record = json.loads(ops_file.read_text())
            _apply(root, journal, record["ops"])
            done.append(f"finished an interrupted change ({record.get('what', '?')})")
        else:
            done.append("dropped an unfinished change that had not been committed")
        shutil.rmtree(journal, ignore_errors=True)
    base = root / JOURNAL_DIR
    if base.is_dir() and not any(base.iterdir()):
        base.rmdir()
    return done
