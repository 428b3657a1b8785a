"""Batch prediction of images larger than memory: dask blocks in, store chunks out, resumable.

:func:`predict_store_image` predicts one stored image with the project's model through
``dask.array.map_overlap``: the image's bands are read lazily from the store in blocks of
``chunk`` × ``chunk`` pixels, each block with ``halo + align`` pixels of its neighbours, and every
block task normalizes its window, runs the network and **writes** its prediction, confidence,
margin, entropy and probabilities straight into the store's derived arrays. Memory is then one
block per worker, whatever the image size.

Identical to in-memory inference
    A block's window is cut from the image exactly as :func:`napari_hitl.core.tiling.tiled_apply`
    cuts a tile (same reflect padding at the image border, same pooling grid), so the stored
    arrays equal :func:`napari_hitl.core.loop.predict_project_image`'s to float precision.

Resumable
    Every block marks itself done in ``hitl/batch/done`` only **after** its five arrays are
    written. A run that stops (cancel, error, killed process) leaves the done blocks marked and
    the others not; running again with the same model computes only the missing blocks. While a
    run is unfinished, the arrays carry a ``pending`` signature, so pushing from them is refused;
    the last block's completion gives them the model's signature, as an in-memory prediction has.

Schedulers
    ``scheduler=None`` runs dask's local threaded scheduler; an address (``tcp://host:8786``) or a
    ``distributed.Client`` runs the blocks on a dask cluster. Workers open the store by its path
    and load the model from it (checked by hash), so the store must be on a file system every
    worker sees (see ``docs/scale.md``).
"""

from __future__ import annotations

import os
import queue
import threading
import time
import uuid
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import zarr

from napari_hitl.core.errors import Cancelled, HitlError, StaleDataError
from napari_hitl.core.learning.data import TrainingDataError
from napari_hitl.core.learning.prediction import prediction_from_logits
from napari_hitl.core.loop import (
    PREDICTION_KEYS,
    LoopState,
    load_state,
    normalized_window,
    prediction_arrays,
    stack_depth,
    stack_shapes,
)
from napari_hitl.core.loop.reading import halo_box
from napari_hitl.core.progress import CancelToken, Progress
from napari_hitl.core.store import ATTR, LABEL_DTYPE, ProjectStore
from napari_hitl.core.tiling import block_bounds, ceil_to, parse_chunk

BATCH_GROUP = "batch"
HALO_READS = "zarr"
CONNECT_TIMEOUT = "20s"
BATCH_CHUNK = 512  # measured: 512² blocks are faster than 1024² and need half the memory
LOCAL_WORKERS = 2  # measured: 2 threads × 1 torch thread beat 1 × 2 on 2 cores (+20 %)


class SchedulerError(HitlError):
    """The dask scheduler named by an address cannot be reached."""


@dataclass
class BatchReport:
    """What one :func:`predict_store_image` run did.

    Attributes
    ----------
    name
        The image.
    blocks
        Blocks of the whole image.
    skipped
        Blocks already done by an earlier run of the same model (not recomputed).
    computed
        Blocks computed by this run.
    pixels
        Pixels computed by this run.
    seconds
        Wall time of this run.
    """

    name: str
    blocks: int
    skipped: int
    computed: int
    pixels: int
    seconds: float

    @property
    def megapixels_per_second(self) -> float:
        """Throughput of this run (0 when nothing was computed)."""
        return self.pixels / 1e6 / self.seconds if self.seconds > 0 and self.pixels else 0.0


# ------------------------------------------------------------------------------ block tasks
_MODELS: dict[tuple[str, str], Any] = {}
_MODELS_LOCK = threading.Lock()


def _model(store_path: str, model_hash: str) -> Any:
    """The store's ``latest`` model in this process (loaded once), checked against its hash."""
    key = (store_path, model_hash)
    with _MODELS_LOCK:
        if key not in _MODELS:
            state = load_state(ProjectStore.open(store_path))
            if state is None or state.model_hash != model_hash:
                found = state.model_hash if state else "none"
                raise StaleDataError(
                    f"the model of {store_path} changed during batch prediction (expected "
                    f"{model_hash}, found {found}); run the prediction again"
                )
            if len(_MODELS) > 4:
                _MODELS.clear()
            _MODELS[key] = state.classifier
        return _MODELS[key]


class _Running:
    """Counts the blocks being computed, so that a stopped run can wait for them: dask's
    threaded scheduler returns on the first error while other blocks are still running."""

    def __init__(self) -> None:
        self._count = 0
        self._idle = threading.Condition()

    def __enter__(self) -> None:
        with self._idle:
            self._count += 1

    def __exit__(self, *exc: object) -> None:
        with self._idle:
            self._count -= 1
            self._idle.notify_all()

    def wait_idle(self) -> None:
        """Return when no block is running."""
        with self._idle:
            self._idle.wait_for(lambda: self._count == 0)


@dataclass
class _BlockTask:
    """Predict one block and write it into the store (picklable: runs on dask workers)."""

    store_path: str
    name: str
    model_hash: str
    stack: bool
    rows: list[int]
    cols: list[int]
    depth: tuple[int, int]
    halo: int
    align: int
    pad_mode: str
    shape: tuple[int, int]
    bands: list[int]
    on_done: Callable[[int], None] | None = None
    stop: threading.Event | None = None
    running: _Running | None = None

    def __getstate__(self) -> dict[str, Any]:
        # local-only hooks stay home
        return {**self.__dict__, "on_done": None, "stop": None, "running": None}

    def _index(self, axis: int, lo: int, hi: int) -> np.ndarray:
        """Rows (axis 0) or cols (axis 1) of the received block that make the padded window
        of output pixels ``lo:hi``, as :func:`~napari_hitl.core.tiling.pad_for_tiles` pads."""
        size, depth = self.shape[axis], self.depth[axis]
        extra = ceil_to(size, self.align) - size
        padded = np.pad(np.arange(size), (self.halo, self.halo + extra), mode=self.pad_mode)  # type: ignore[call-overload]
        first = max(0, lo - depth) if depth else 0
        return padded[lo : ceil_to(hi, self.align) + 2 * self.halo] - first

    @staticmethod
    def mark_done(hitl: zarr.Group, block: tuple[int, ...]) -> None:
        """Record ``block`` as finished (called after all its arrays are written)."""
        hitl[f"{BATCH_GROUP}/done"][block] = 1  # type: ignore[index]

    def read(self, z: int | None, y0: int, y1: int, x0: int, x1: int) -> tuple[np.ndarray, ...]:
        """The model's bands of block ``y0:y1, x0:x1`` with its halo, normalized, and its valid
        mask, read from the store (only the zarr chunks the window touches)."""
        window = halo_box((y0, y1, x0, x1), self.depth, self.shape)
        clf = _model(self.store_path, self.model_hash)
        store = ProjectStore.open(self.store_path)
        return normalized_window(store, self.name, clf.normalization, index=z, window=window)

    def __call__(self, *arrays: np.ndarray, block_id: tuple[int, ...] | None = None) -> np.ndarray:
        """Predict the block ``block_id`` (from ``arrays`` = bands, valid with their halo as
        ``map_overlap`` hands them, or read here when none are given) and write it."""
        if self.stop is not None and self.stop.is_set():
            raise Cancelled("cancelled by the user")
        if self.running is None:
            return self._predict(arrays, block_id)
        with self.running:
            return self._predict(arrays, block_id)

    def _predict(self, arrays: tuple[np.ndarray, ...], block_id: tuple[int, ...] | None) -> Any:
        assert block_id is not None
        z = block_id[0] if self.stack else None
        i, j = block_id[-2:]
        y0, y1, x0, x1 = self.rows[i], self.rows[i + 1], self.cols[j], self.cols[j + 1]
        clf = _model(self.store_path, self.model_hash)
        if arrays:  # map_overlap's block with its halo: normalize it here
            x, valid = arrays
            if self.stack:
                x, valid = x[:, 0], valid[0]
            first_row = halo_box((y0, y1, x0, x1), self.depth, self.shape)[0]  # for the row cue
            x = clf.normalization.apply(x, valid, (first_row, self.shape[0]))
        else:
            x, valid = self.read(z, y0, y1, x0, x1)
        ri, ci = self._index(0, y0, y1), self._index(1, x0, x1)
        if ri.min() < 0 or ri.max() >= x.shape[1] or ci.min() < 0 or ci.max() >= x.shape[2]:
            raise RuntimeError(f"block {block_id} of {self.name!r} lacks its halo")  # a bug
        window = np.ascontiguousarray(x[:, ri[:, None], ci[None, :]])
        logits = clf.window_logits(window)[:, : y1 - y0, : x1 - x0]
        inner_valid = valid[ri[self.halo : self.halo + y1 - y0]][
            :, ci[self.halo : self.halo + x1 - x0]
        ]
        pred = prediction_from_logits(logits, clf.class_values, clf.temperature, inner_valid)
        image_dir = Path(self.store_path) / "images" / self.name
        hitl = zarr.open_group(str(image_dir / "hitl"), mode="r+")
        lead = () if z is None else (z,)
        box = (*lead, slice(y0, y1), slice(x0, x1))
        for key, data in prediction_arrays(pred).items():
            hitl[key][(slice(None), *box) if key == "probabilities" else box] = data  # type: ignore[index]
        self.mark_done(hitl, (*lead, i, j))  # only now: a block cut short above is redone
        n = (y1 - y0) * (x1 - x0)
        if self.on_done is not None:
            self.on_done(n)
        return np.full((1,) * len(block_id), n, np.int64)


# ------------------------------------------------------------------------------- the job
def _signature_base(store: ProjectStore, name: str, state: LoopState, depth: int) -> dict:
    sig = store.signature(name, model_hash=state.model_hash, iteration=state.iteration)
    if depth:
        sig["slices"] = list(range(depth))
    return sig


def _prepare_arrays(
    store: ProjectStore,
    name: str,
    record: dict[str, Any],
    shapes: dict[str, tuple[int, ...]],
    dtypes: dict[str, Any],
    storage: tuple[int, int],
    grid: tuple[int, ...],
    restart: bool,
) -> np.ndarray:
    """The done-mask of an unfinished run to resume, or fresh (pending) arrays and an empty mask."""
    hitl = store.derived_group(name)
    if not restart and BATCH_GROUP in hitl:
        old = dict(hitl[BATCH_GROUP].attrs).get(ATTR, {})
        same = {k: v for k, v in old.items() if k != "run"} == record
        keys = set(hitl.array_keys())
        if same and all(
            key in keys
            and tuple(hitl[key].shape) == shapes[key]
            and hitl[key].dtype == dtypes[key]
            and dict(hitl[key].attrs).get(ATTR, {}).get("signature", {}).get("batch")
            == old.get("run")
            for key in PREDICTION_KEYS
        ):
            done = np.asarray(hitl[f"{BATCH_GROUP}/done"][...]).astype(bool)
            if done.shape == grid:
                return done
    run = uuid.uuid4().hex
    pending = {
        **store.signature(name),
        "batch": run,
        "pending": "a batch prediction of this image is unfinished: run `napari-hitl predict "
        f"{store.path} --image {name}` again to finish it",
    }
    if BATCH_GROUP in hitl:
        del hitl[BATCH_GROUP]  # first forget the old run, then replace its arrays
    for key in PREDICTION_KEYS:
        shape = shapes[key]
        edge = (min(storage[0], shape[-2]), min(storage[1], shape[-1]))
        hitl.create_array(
            key,
            shape=shape,
            dtype=dtypes[key],
            chunks=(*(1,) * (len(shape) - 2), *edge),
            fill_value=0,
            overwrite=True,
            attributes={ATTR: {"signature": pending}},
        )
    group = hitl.create_group(BATCH_GROUP)
    group.create_array("done", shape=grid, dtype=np.uint8, chunks=(1,) * len(grid), fill_value=0)
    group.attrs.update({ATTR: {**record, "run": run}})  # the record comes last: arrays exist
    return np.zeros(grid, bool)


def _finish(store: ProjectStore, name: str, sig: dict[str, Any]) -> None:
    hitl = store.derived_group(name)
    run = dict(hitl[BATCH_GROUP].attrs)[ATTR]["run"]  # type: ignore[index]
    for key in PREDICTION_KEYS:
        hitl[key].attrs.update({ATTR: {"signature": {**sig, "batch": run}}})  # type: ignore[index]


def predict_store_image(
    store: ProjectStore,
    name: str,
    state: LoopState | None = None,
    *,
    chunk: int | str | Sequence[int] | None = None,
    scheduler: Any = None,
    workers: int | None = None,
    restart: bool = False,
    halo_reads: str = HALO_READS,
    cancel: CancelToken | None = None,
) -> Generator[Progress, None, BatchReport]:
    """Predict a stored image block by block with dask, writing the results into the store.

    Parameters
    ----------
    store
        The project, opened writable.
    name
        The image (2-D, or a stack predicted slice by slice).
    state
        The model (default: the stored ``latest``; workers load it from the store).
    chunk
        Block edge in pixels (or ``ROWS,COLS``), rounded up to the network's alignment;
        default :data:`BATCH_CHUNK`. Memory grows with it, not with the image.
    scheduler
        ``None`` for dask's local threads, a ``distributed`` scheduler address or ``Client``.
    workers
        Local dask threads (default :data:`LOCAL_WORKERS`, at most the number of cores); the
        cores are shared out between them (torch threads per block = cores // workers).
    restart
        Forget an unfinished run and start over.
    halo_reads
        ``"zarr"``: each block task reads its window (block + halo) from the store, touching
        only the zarr chunks it needs; ``"dask"``: ``dask.array.map_overlap`` hands each task
        its block with the halo cut from the neighbouring dask blocks, which dask loads whole
        (see ``docs/scale.md`` for the memory this costs).
    cancel
        Stops the run between blocks; what is done stays done.

    Returns
    -------
    BatchReport
        Blocks skipped (done before) and computed, pixels and time.

    Raises
    ------
    TrainingDataError
        No model yet.
    StaleDataError
        The model changed while the run was going on.
    Cancelled
        ``cancel`` was set (run again to resume).
    """
    import dask

    t0 = time.perf_counter()
    store.require_writable()
    latest = load_state(store)
    state = state or latest
    if state is None:
        raise TrainingDataError("no model yet: train first")
    if latest is None or latest.model_hash != state.model_hash:
        raise StaleDataError(
            "batch prediction uses the store's latest model (workers load it from the store); "
            "save this model as latest first"
        )
    clf = state.classifier
    info = store.image_info(name)
    idx = clf.normalization.band_indices(info.band_names, what=f"image {name!r}")
    depth_z = stack_depth(info)
    h, w = (int(v) for v in info.spatial_shape[-2:])
    halo = int(getattr(clf, "halo", 0))
    align = clf.align
    edge = parse_chunk(chunk, align) or parse_chunk(BATCH_CHUNK, align)
    assert edge is not None
    reach = halo + align  # the window of the last block reaches halo + alignment padding back
    rows = block_bounds(h, edge[0], reach + 1)
    cols = block_bounds(w, edge[1], reach + 1)
    grid = (*((depth_z,) if depth_z else ()), len(rows) - 1, len(cols) - 1)
    k = len(clf.class_values)
    shapes = stack_shapes(info, k)  # every key's shape, 2-D images as well as stacks
    dtypes = {key: (LABEL_DTYPE if key == "prediction" else np.float32) for key in PREDICTION_KEYS}
    record = {
        "model_hash": state.model_hash,
        "iteration": state.iteration,
        "source_hash": info.source_hash,
        "rows": rows,
        "cols": cols,
    }
    local = scheduler is None or scheduler in ("threads", "sync")
    if local:  # local threads share this process's copy of the model
        with _MODELS_LOCK:
            _MODELS[(str(store.path), state.model_hash)] = clf
    client, own_client = (None, False) if local else _connect(scheduler)  # before any write
    try:
        done = _prepare_arrays(store, name, record, shapes, dtypes, edge, grid, restart)
    except BaseException:
        if own_client:
            client.close()
        raise
    todo = [tuple(int(v) for v in b) for b in np.argwhere(~done)]
    n_blocks, skipped = int(done.size), int(done.sum())
    sig = _signature_base(store, name, state, depth_z)
    report = BatchReport(name, n_blocks, skipped, 0, 0, 0.0)
    if not todo:
        if own_client:
            client.close()
        _finish(store, name, sig)
        report.seconds = time.perf_counter() - t0
        yield Progress(n_blocks, n_blocks, f"{name}: all {n_blocks} blocks were already done")
        return report

    depth_y = reach if len(rows) > 2 else 0
    depth_x = reach if len(cols) > 2 else 0
    stop = threading.Event()
    finished: queue.Queue[int | None] = queue.Queue()
    task = _BlockTask(
        str(store.path),
        name,
        state.model_hash,
        bool(depth_z),
        rows,
        cols,
        (depth_y, depth_x),
        halo,
        align,
        "reflect" if min(h, w) > halo else "symmetric",
        (h, w),
        idx,
        on_done=finished.put,
        stop=stop,
        running=_Running(),
    )
    out = _block_graph(store, name, task, grid, halo_reads)
    blocks = [out.blocks[b] for b in todo]
    total = len(todo)
    prefix = f"{name}: block" if not skipped else f"{name} (resumed, {skipped} done before): block"

    def progress(count: int, pixels: int) -> Progress:
        rate = pixels / 1e6 / max(time.perf_counter() - t0, 1e-9)
        return Progress(skipped + count, n_blocks, f"{prefix} {count}/{total}, {rate:.3g} Mpx/s")

    if local:
        error: list[BaseException] = []
        cores = os.cpu_count() or 1
        n_workers = max(1, min(int(workers or LOCAL_WORKERS), cores))

        def run() -> None:
            threads = torch.get_num_threads()
            try:
                torch.set_num_threads(max(1, threads // n_workers))
                dask.compute(
                    *blocks,
                    scheduler="sync" if scheduler == "sync" else "threads",
                    num_workers=n_workers,
                )
            except BaseException as exc:
                error.append(exc)
            finally:
                torch.set_num_threads(threads)
                finished.put(None)

        thread = threading.Thread(target=run, name=f"napari-hitl predict {name}", daemon=True)
        thread.start()
        try:
            while True:
                try:
                    item = finished.get(timeout=0.1)
                except queue.Empty:
                    item = -1
                if cancel is not None and cancel.cancelled:
                    stop.set()
                if item is None:
                    break
                if item >= 0:
                    report.computed += 1
                    report.pixels += item
                    yield progress(report.computed, report.pixels)
        finally:
            stop.set()  # the caller stopped listening (or we are done): no new blocks
            thread.join()
            task.running.wait_idle()  # type: ignore[union-attr]  # blocks still writing
        if error:
            raise error[0]
    else:
        try:
            yield from _run_distributed(blocks, client, cancel, report, progress)
        finally:
            if own_client:
                client.close()
    if cancel is not None:
        cancel.raise_if_cancelled()
    still = np.asarray(store.derived_group(name)[f"{BATCH_GROUP}/done"][...]).astype(bool)
    if not still.all():  # a block finished without its mark: never sign a partial result
        raise RuntimeError(f"{int((~still).sum())} blocks of {name!r} are not done; run again")
    _finish(store, name, sig)
    report.seconds = time.perf_counter() - t0
    return report


def _block_graph(
    store: ProjectStore, name: str, task: _BlockTask, grid: tuple[int, ...], halo_reads: str
) -> Any:
    """The dask array (one element per block) whose blocks run ``task``."""
    import dask.array as da

    out_chunks = tuple((1,) * n for n in grid)
    meta = np.empty((0,) * len(grid), np.int64)
    if halo_reads == "zarr":
        return da.map_blocks(task, chunks=out_chunks, dtype=np.int64, meta=meta)
    if halo_reads != "dask":
        raise ValueError(f"halo_reads is 'zarr' or 'dask', not {halo_reads!r}")
    info = store.image_info(name)
    lead = ((1,) * grid[0],) if task.stack else ()
    chunks = (*lead, tuple(np.diff(task.rows)), tuple(np.diff(task.cols)))
    bands = store.image_dask(name, chunks=((info.shape[0],), *chunks))
    if task.bands != list(range(info.shape[0])):
        bands = bands[np.asarray(task.bands)]
    stored_valid = store.valid_array(name)
    if stored_valid is not None:
        valid = da.from_zarr(stored_valid, chunks=chunks)
    else:
        valid = da.ones(info.spatial_shape, chunks=chunks, dtype=bool)
    zdepth = {0: 0} if task.stack else {}
    off = len(zdepth)
    dy, dx = task.depth
    return da.map_overlap(
        task,
        bands,
        valid,
        depth=[
            {0: 0, **{a + 1: d for a, d in zdepth.items()}, off + 1: dy, off + 2: dx},
            {**zdepth, off: dy, off + 1: dx},
        ],
        boundary="none",
        trim=False,
        align_arrays=False,
        drop_axis=0,
        chunks=out_chunks,
        dtype=np.int64,
        meta=meta,
    )


def _connect(scheduler: Any) -> tuple[Any, bool]:
    """A ``distributed.Client`` for ``scheduler`` (address or client) and whether we own it."""
    try:
        from distributed import Client
    except ImportError as exc:  # pragma: no cover - depends on the installation
        raise ImportError(
            "a scheduler address needs dask.distributed: pip install 'napari-hitl[distributed]'"
        ) from exc
    if isinstance(scheduler, Client):
        return scheduler, False
    try:
        return Client(scheduler, timeout=CONNECT_TIMEOUT), True
    except (OSError, TimeoutError, ValueError) as exc:
        raise SchedulerError(
            f"cannot reach the dask scheduler at {scheduler!r} ({type(exc).__name__}: {exc}); "
            "start one (`dask scheduler`, then `dask worker ADDRESS` on each machine) or check "
            "the address"
        ) from exc


def _run_distributed(
    blocks: list[Any],
    client: Any,
    cancel: CancelToken | None,
    report: BatchReport,
    progress: Callable[[int, int], Progress],
) -> Generator[Progress, None, None]:
    """Compute ``blocks`` on a dask.distributed cluster, reporting each finished block."""
    from distributed import as_completed

    futures = client.compute(blocks)
    try:
        for future in as_completed(futures):
            if cancel is not None and cancel.cancelled:
                raise Cancelled("cancelled by the user")
            n = int(np.asarray(future.result()).sum())
            report.computed += 1
            report.pixels += n
            yield progress(report.computed, report.pixels)
    finally:
        client.cancel([f for f in futures if not f.done()])
