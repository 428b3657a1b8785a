"""Label edits are transactions: kill -9 at any point, two writers at once, a stale editor —
human labels are never lost, ``check`` passes (after ``--repair`` at most) and undo works."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import zarr

from napari_hitl.cli import main
from napari_hitl.core.errors import StoreBusyError
from napari_hitl.core.io.rasters import Raster
from napari_hitl.core.loop.accept import store_push, store_undo
from napari_hitl.core.store import (
    PROVENANCE_HUMAN,
    ProjectStore,
    add_image,
    machine_provenance,
)
from napari_hitl.core.store import lock as store_lock
from napari_hitl.core.store.check import check_store
from napari_hitl.core.store.classes import make_classes
from napari_hitl.core.store.journal import pending

SHAPE = (600, 700)  # 2 x 2 chunks of 512: a push changes several chunk files


def _make(tmp_path: Path, shape: tuple[int, int] = SHAPE) -> tuple[Path, np.ndarray]:
    path = tmp_path / "p.zarr"
    store = ProjectStore.create(path, classes=make_classes(["a", "b", "c"]))
    rng = np.random.default_rng(0)
    add_image(store, Raster(rng.random((2, *shape)).astype(np.float32), "CYX", ["x", "y"]), "im")
    human = np.zeros(shape, np.uint16)
    human[:40] = 1
    human[-40:, :300] = 2
    store.write_labels("im", human)
    return path, human


def _human_intact(store: ProjectStore, human: np.ndarray) -> None:
    labels, prov = store.labels("im"), store.provenance("im")
    keep = human > 0
    assert np.array_equal(labels[keep], human[keep])
    assert (prov[keep] == PROVENANCE_HUMAN).all()


_SCRIPT = textwrap.dedent(
    """
    import sys, numpy as np
    from napari_hitl.core.store import ProjectStore
    from napari_hitl.core.loop.accept import store_push, store_undo, store_clear_machine
    store = ProjectStore.open(sys.argv[1], "a")
    op = sys.argv[2]
    shape = store.labels("im").shape
    if op == "push":
        store_push(store, "im", np.full(shape, 3, np.uint16), np.ones(shape, bool), 2)
    elif op == "undo":
        store_undo(store, "im")
    elif op == "clear":
        store_clear_machine(store, "im")
    elif op == "strokes":
        base = store.labels("im")
        edited = base.copy()
        edited[100:140, 100:600] = 2
        store.save_edited_labels("im", edited, base=base)
    """
)


def _run(path: Path, op: str, crash_at: str | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    if crash_at:
        env["NAPARI_HITL_TEST_CRASH_AT"] = crash_at
    return subprocess.run(
        [sys.executable, "-c", _SCRIPT, str(path), op],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _pushed_once(tmp_path: Path) -> tuple[Path, np.ndarray]:
    path, human = _make(tmp_path)
    store = ProjectStore.open(path, "a")
    shape = human.shape
    store_push(store, "im", np.full(shape, 2, np.uint16), np.eye(*shape, dtype=bool), 1)
    return path, human


@pytest.mark.parametrize("op", ["push", "undo", "strokes"])
@pytest.mark.parametrize("crash_at", ["staged", "committed", "applied:1", "applied:3"])
def test_kill_during_a_label_change_leaves_old_or_new_state(tmp_path, op, crash_at):
    done_path, human = _pushed_once(tmp_path / "done")  # the change, not interrupted
    assert _run(done_path, op).returncode == 0
    after = ProjectStore.open(done_path, "r").label_state("im")

    path, _ = _pushed_once(tmp_path / "killed")  # the same change, killed with SIGKILL
    old = ProjectStore.open(path, "r").label_state("im")
    res = _run(path, op, crash_at)
    assert res.returncode == -signal.SIGKILL, res.stderr
    assert pending(path), "the crash left no journal: the crash point was not reached"
    report = check_store(path)
    assert not report.ok and "interrupted change" in report.problems[0].line()
    store = ProjectStore.open(path, "a")  # recovery happens on open
    assert store.recovered
    assert check_store(path).ok
    state = store.label_state("im")
    want = old if crash_at == "staged" else after
    assert np.array_equal(state.labels, want.labels)
    assert np.array_equal(state.provenance, want.provenance)
    assert state.generation == want.generation
    _human_intact(store, human)
    while store_undo(store, "im"):  # undo still works and never touches a human pixel
        pass
    _human_intact(store, human)
    assert not (store.provenance("im") >= machine_provenance(1)).any()
    assert check_store(path).ok


def test_sigkill_at_random_moments_never_wedges_the_store(tmp_path):
    path, human = _make(tmp_path, (1100, 1100))
    script = textwrap.dedent(
        """
        import sys, numpy as np
        from napari_hitl.core.store import ProjectStore
        from napari_hitl.core.loop.accept import store_push, store_undo
        store = ProjectStore.open(sys.argv[1], "a")
        shape = store.labels("im").shape
        rng = np.random.default_rng(int(sys.argv[2]))
        print("ready", flush=True)
        it = 1
        while True:
            store_push(store, "im", rng.integers(1, 4, shape).astype(np.uint16),
                       rng.random(shape) < 0.5, it)
            it += 1
            store_undo(store, "im")
        """
    )
    rng = np.random.default_rng(1)
    for seed in range(6):
        proc = subprocess.Popen(
            [sys.executable, "-c", script, str(path), str(seed)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        time.sleep(float(rng.uniform(0.05, 1.5)))
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        store = ProjectStore.open(path, "a")
        assert check_store(path).ok, [p.line() for p in check_store(path).problems]
        _human_intact(store, human)
    while store_undo(store, "im"):
        pass
    assert np.array_equal(store.labels("im"), human)


def test_two_writers_and_a_painter_at_once(tmp_path):
    path, human = _make(tmp_path, (400, 400))
    worker = textwrap.dedent(
        """
        import sys, numpy as np
        from napari_hitl.core.store import ProjectStore
        from napari_hitl.core.loop.accept import store_push, store_undo
        store = ProjectStore.open(sys.argv[1], "a")
        rng = np.random.default_rng(int(sys.argv[2]))
        shape = (400, 400)
        for it in range(1, 13):
            store_push(store, "im", rng.integers(1, 3, shape).astype(np.uint16),
                       rng.random(shape) < 0.3, it)  # classes 1, 2: the painter paints 3
            if it % 3 == 0:
                store_undo(store, "im")
        """
    )
    painter = textwrap.dedent(
        """
        import sys, numpy as np
        from napari_hitl.core.store import ProjectStore
        store = ProjectStore.open(sys.argv[1], "a")
        for k in range(12):  # like the widget: load, paint a stroke, save against what it loaded
            base = store.labels("im")
            edited = base.copy()
            edited[60 + 20 * k : 70 + 20 * k, 50:350] = 3
            store.save_edited_labels("im", edited, base=base)
        """
    )
    procs = [
        subprocess.Popen([sys.executable, "-c", code, str(path), str(i)], stderr=subprocess.PIPE)
        for i, code in enumerate([worker, worker, painter])
    ]
    errors = [p.communicate(timeout=300)[1].decode() for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], errors
    assert not any("Traceback" in e for e in errors), errors
    store = ProjectStore.open(path, "a")
    assert check_store(path).ok
    _human_intact(store, human)
    labels, prov = store.labels("im"), store.provenance("im")
    for k in range(12):  # every painted stroke is there, as a human label
        rows = slice(60 + 20 * k, 70 + 20 * k)
        assert (labels[rows, 50:350] == 3).all()
        assert (prov[rows, 50:350] == PROVENANCE_HUMAN).all()


def test_a_stale_editor_never_turns_undone_machine_labels_into_human(tmp_path):
    path, human = _make(tmp_path, (200, 200))
    store = ProjectStore.open(path, "a")
    store_push(store, "im", np.full((200, 200), 3, np.uint16), np.ones((200, 200), bool), 1)
    base = store.labels("im")  # napari's layer, loaded after the push
    editor = base.copy()
    assert _run(path, "undo").returncode == 0  # `napari-hitl undo` in a terminal meanwhile
    editor[100:110, 20:40] = 2  # the person paints one stroke and saves
    saved = store.save_strokes("im", editor, base=base)
    assert saved.moved_on and saved.changed == 200
    labels, prov = store.labels("im"), store.provenance("im")
    assert (labels[100:110, 20:40] == 2).all()
    assert (prov == PROVENANCE_HUMAN).sum() == (human > 0).sum() + 200
    assert not (prov >= machine_provenance(1)).any()  # nothing of the undone push came back
    assert np.array_equal(saved.labels, labels)
    # without the base (an editor that is not tracked) the same save would have kept them all
    assert (editor > 0).sum() > (labels > 0).sum() + 20000


def test_a_busy_store_says_who_holds_it(tmp_path, monkeypatch):
    path, _ = _make(tmp_path, (64, 64))
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from pathlib import Path;"
            "from napari_hitl.core.store.lock import store_lock\n"
            "with store_lock(Path(sys.argv[1]), 'push'):\n"
            "    print('held', flush=True); time.sleep(30)",
            str(path),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        monkeypatch.setattr(store_lock, "WAIT_SECONDS", 0.3)
        store = ProjectStore.open(path, "a")
        with pytest.raises(StoreBusyError, match=rf"busy: push by pid {holder.pid}"):
            store.write_labels("im", np.zeros((64, 64), np.uint16))
        assert main(["undo", str(path), "--image", "im"]) == 2
    finally:
        holder.kill()
        holder.wait()
    assert store.labels("im")[:40].all()  # nothing was written while it was busy


def test_check_repairs_a_store_an_older_version_left_half_written(tmp_path, capsys):
    path, human = _make(tmp_path, (100, 100))
    store = ProjectStore.open(path, "a")
    pushed = np.zeros((100, 100), bool)
    pushed[50:60] = True
    store_push(store, "im", np.full((100, 100), 3, np.uint16), pushed, 1)
    store_undo(store, "im")
    store_push(store, "im", np.full((100, 100), 3, np.uint16), pushed, 2)
    # What napari-hitl 0.1 could leave, writing labels and provenance one after the other:
    raw_labels = zarr.open_array(str(path / "images/im/labels/annotations/0"), mode="r+")
    raw_prov = zarr.open_array(str(path / "images/im/hitl/provenance"), mode="r+")
    raw_prov[50:60] = 0  # a push killed between its writes (its undo record came first)
    raw_labels[42:44, 10:20] = 2  # a saved stroke killed likewise
    raw_prov[46:48, :] = machine_provenance(2)  # an undo killed likewise
    assert main(["check", str(path)]) == 1
    out = capsys.readouterr().out
    assert "1020 labeled pixels have no provenance; 200 unlabeled pixels have a provenance" in out
    assert "--repair" in out
    assert main(["check", str(path), "--repair"]) == 0
    assert main(["check", str(path)]) == 0
    store = ProjectStore.open(path, "a")
    prov, labels = store.provenance("im"), store.labels("im")
    _human_intact(store, human)
    assert (prov[50:60] == machine_provenance(2)).all()  # named by the undo record: machine
    assert (prov[42:44, 10:20] == PROVENANCE_HUMAN).all() and (labels[42:44, 10:20] == 2).all()
    assert (prov[46:48] == 0).all()
    assert store_undo(store, "im") == 1000  # the repaired push can be undone
    assert (store.labels("im")[50:60] == 0).all()


def test_check_finds_and_repairs_a_damaged_model_and_a_half_written_prediction(tmp_path, capsys):
    from napari_hitl.core.learning.data import Normalization
    from napari_hitl.core.learning.net import NetClassifier
    from napari_hitl.core.learning.registry import list_checkpoints, save_checkpoint

    path, human = _make(tmp_path, (64, 64))
    store = ProjectStore.open(path, "a")
    norm = Normalization(["x", "y"], [0.0, 0.0], [1.0, 1.0])
    clf = NetClassifier("unet", norm, [1, 2, 3], ["a", "b", "c"])
    save_checkpoint(store, "latest", clf, {"iteration": 1})
    save_checkpoint(store, "before-guidance", clf, {"iteration": 1})
    assert main(["check", str(path)]) == 0
    raw = zarr.open_array(str(path / "models/latest"), mode="r+")
    data = np.asarray(raw[...])
    data[len(data) // 2] ^= 0xFF
    raw[...] = data
    store.write_derived("im", "confidence", np.ones((64, 64), np.float32))
    conf = zarr.open_array(str(path / "images/im/hitl/confidence"), mode="r+")
    sig = dict(conf.attrs)["napari_hitl"]["signature"]
    conf.attrs.update({"napari_hitl": {"signature": {**sig, "pending": "being written"}}})
    capsys.readouterr()
    assert main(["check", str(path), "--json"]) == 1
    out = capsys.readouterr().out
    assert "model 'latest'" in out and "do not match the recorded hash" in out
    assert "'confidence' was interrupted while being written" in out
    assert main(["check", str(path), "--repair"]) == 0
    store = ProjectStore.open(path, "a")
    assert list_checkpoints(store) == ["before-guidance"]
    assert store.derived_keys("im") == []
    _human_intact(store, human)


def test_leftovers_of_a_dead_process_go_and_work_in_progress_stays(tmp_path):
    from napari_hitl.core.learning.registry import list_checkpoints

    path, _ = _make(tmp_path, (64, 64))
    leftover = path / "models" / ".incoming-999999999-abc"  # a process that no longer exists
    leftover.mkdir(parents=True)
    live = path / "models" / f".incoming-{os.getpid()}-def"  # this process, still saving
    live.mkdir()
    store = ProjectStore.open(path, "a")
    assert not leftover.exists() and live.exists()
    assert list_checkpoints(store) == []
