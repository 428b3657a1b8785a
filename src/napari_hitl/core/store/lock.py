"""One writer at a time: the project store's lock (owned by :mod:`napari_hitl.core.store`).

Every operation that changes a store takes the **exclusive** lock for its short commit section
(labels, provenance and undo history, the store's attributes, a model, a derived array, an
image). Reads that must see labels, provenance and the label generation of one moment take the
**shared** lock. The lock is an advisory ``flock`` on ``STORE/.hitl.lock``: the operating system
releases it when the holding process dies (also on ``kill -9``), so a crash never leaves a stale
lock behind.

Inside one process the lock is re-entrant and shared by all :class:`ProjectStore` objects of the
same path (a thread of the GUI and a worker thread queue for it); between processes a writer
waits up to :data:`WAIT_SECONDS` and then gets :class:`~napari_hitl.core.errors.StoreBusyError`
saying what holds the store and which process.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

from napari_hitl.core.errors import StoreBusyError

try:  # POSIX
    import fcntl
except ImportError:  # pragma: no cover - Windows: one process-wide lock file via msvcrt
    fcntl = None  # type: ignore[assignment]

LOCK_NAME = ".hitl.lock"
OWNER_NAME = ".hitl.lock.owner"
WAIT_SECONDS = float(os.environ.get("NAPARI_HITL_LOCK_WAIT", "30"))
_POLL = 0.05


@dataclass
class _ProcessLock:
    """The state of one store's lock inside this process."""

    rlock: threading.RLock
    fd: int | None = None
    depth: int = 0
    exclusive: bool = False


_REGISTRY: dict[str, _ProcessLock] = {}
_REGISTRY_GUARD = threading.Lock()


def _process_lock(path: Path) -> _ProcessLock:
    key = str(path.resolve())
    with _REGISTRY_GUARD:
        if key not in _REGISTRY:
            _REGISTRY[key] = _ProcessLock(threading.RLock())
        return _REGISTRY[key]


def _holder(path: Path) -> str:
    """What holds the store, as written by the holder ("push by pid 123"), or ``"?"``."""
    try:
        text = (path / OWNER_NAME).read_text().strip()
    except OSError:
        return "another process"
    return text or "another process"


def _open_fd(path: Path) -> int | None:
    """The lock file's descriptor, or ``None`` where it cannot be made (a read-only store)."""
    try:
        return os.open(path / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o666)
    except OSError:
        try:
            return os.open(path / LOCK_NAME, os.O_RDONLY)
        except OSError:
            return None


@contextmanager
def store_lock(
    path: Path, what: str, exclusive: bool = True, wait: float | None = None
) -> Iterator[None]:
    """Hold the store's lock for the ``with`` block.

    Parameters
    ----------
    path
        The store's folder.
    what
        What the holder does (``"push"``, ``"save strokes"``...), shown to whoever waits.
    exclusive
        ``True`` for a change, ``False`` for a consistent read.
    wait
        Seconds to wait for another process before giving up (default :data:`WAIT_SECONDS`).

    Raises
    ------
    StoreBusyError
        Another process held the store for longer than ``wait``.
    """
    state = _process_lock(path)
    wait = WAIT_SECONDS if wait is None else wait
    deadline = time.monotonic() + wait
    if not state.rlock.acquire(timeout=max(wait, 0.0)):
        raise StoreBusyError(f"{path} is busy: {_holder(path)} (in this program); try again")
    try:
        if state.depth == 0:
            state.fd = _open_fd(path)
            state.exclusive = False
        need_upgrade = exclusive and not state.exclusive
        if state.fd is not None and fcntl is not None and (state.depth == 0 or need_upgrade):
            mode = fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH
            while True:
                try:
                    fcntl.flock(state.fd, mode | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        raise StoreBusyError(
                            f"{path} is busy: {_holder(path)}; try again when it has finished"
                        ) from None
                    time.sleep(_POLL)
                except OSError:  # a file system without locks: carry on unlocked
                    break
            if exclusive:
                state.exclusive = True
                with suppress(OSError):
                    (path / OWNER_NAME).write_text(f"{what} by pid {os.getpid()}\n")
        state.depth += 1
    except BaseException:
        if state.depth == 0 and state.fd is not None:
            os.close(state.fd)
            state.fd = None
        state.rlock.release()
        raise
    try:
        yield
    finally:
        state.depth -= 1
        if state.depth == 0 and state.fd is not None:
            os.close(state.fd)  # closing the descriptor releases the flock
            state.fd = None
            state.exclusive = False
        state.rlock.release()
