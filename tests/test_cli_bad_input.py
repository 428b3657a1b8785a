"""Every bad input the tester found: exit status 2 (130 for Ctrl-C) and one line on stderr.

No traceback, no misleading message (``invalid literal for int()``), no silent surprise
(``--bands -1`` meaning the last band, ``--steps -5`` training nothing).
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys

import numpy as np
import pytest
from tests.helpers import write_labeled_tiff

import napari_hitl.cli.store as cli_store
from napari_hitl.cli import main
from napari_hitl.core.store import ProjectStore
from napari_hitl.core.store.classes import MAX_CLASSES


def run(argv: list[str], capsys) -> tuple[int, str, str]:
    """Run the CLI in-process: exit status, stdout, stderr (argparse's exit included)."""
    try:
        rc = main(argv)
    except SystemExit as exc:
        rc = int(exc.code or 0)
    out, err = capsys.readouterr()
    return rc, out, err


def one_line(err: str) -> str:
    """The single stderr line (asserting there is one and no traceback)."""
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


@pytest.fixture
def store(tmp_path, rng, capsys):
    """A store with image ``a`` (3 bands, 64 × 64) and 200 human-labeled pixels."""
    write_labeled_tiff(tmp_path, rng)
    path = tmp_path / "p.zarr"
    argv = ["import", str(path), str(tmp_path / "a.tif"), "--labels", str(tmp_path / "mask.tif")]
    assert main([*argv, "--classes", "cloud,clear"]) == 0
    capsys.readouterr()
    return path


def _edit_root(path, **changes):
    meta_path = path / "zarr.json"
    meta = json.loads(meta_path.read_text())
    for key, value in changes.items():
        if key == "whole":
            meta["attributes"]["napari_hitl"] = value
        else:
            meta["attributes"]["napari_hitl"][key] = value
    meta_path.write_text(json.dumps(meta))


# ------------------------------------------------------------------ damaged stores
def test_corrupt_labels_chunk_info(store, capsys):
    (store / "images/a/labels/annotations/0/c/0/0").write_bytes(b"\x00garbage" * 3)
    rc, _out, err = run(["info", str(store)], capsys)
    line = one_line(err)
    assert rc == 2 and line.startswith("napari-hitl info: error:")
    assert "image 'a'" in line and "labels/annotations/0" in line and "chunk c/0/0" in line


def test_corrupt_labels_chunk_export(store, tmp_path, capsys):
    (store / "images/a/labels/annotations/0/c/0/0").write_bytes(b"\x00garbage" * 3)
    rc, _out, err = run(
        ["export", str(store), "--image", "a", "--out", str(tmp_path / "l.tif")], capsys
    )
    assert rc == 2 and "image 'a', array labels/annotations/0" in one_line(err)


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"schema_version": None}, "schema_version is null"),
        ({"schema_version": "one"}, 'schema_version is "one"'),
        ({"classes": 3}, "classes is 3, expected a list"),
        ({"classes": [{"value": "x", "name": 1, "color": "#000000"}]}, "value 'x'"),
        ({"classes": [{"value": 1, "name": "a", "color": "red"}]}, "'#rrggbb'"),
        ({"images": {"a": 1}}, "images is"),
        ({"images": [1]}, "image names"),
        ({"settings": []}, "settings is []"),
        ({"whole": [1, 2]}, "'napari_hitl' is [1, 2]"),
    ],
)
def test_garbage_root_attributes(store, capsys, changes, expected):
    _edit_root(store, **changes)
    rc, _out, err = run(["info", str(store)], capsys)
    line = one_line(err)
    assert rc == 2 and "metadata is damaged" in line and expected in line


def test_root_metadata_not_json(store, capsys):
    (store / "zarr.json").write_text("{not json")
    rc, _out, err = run(["classes", str(store)], capsys)
    assert rc == 2 and "cannot read the store's metadata" in one_line(err)


# ---------------------------------------------------------------- export OS errors
def test_export_under_a_file(store, tmp_path, capsys):
    (tmp_path / "blocker").write_text("x")
    out = tmp_path / "blocker" / "x.tif"
    rc, _out, err = run(["export", str(store), "--image", "a", "--out", str(out)], capsys)
    line = one_line(err)
    assert rc == 2 and f"cannot write {out}" in line and "is a file, not a folder" in line


def test_export_onto_a_folder(store, tmp_path, capsys):
    (tmp_path / "dir.tif").mkdir()
    out = tmp_path / "dir.tif"
    rc, _out, err = run(["export", str(store), "--image", "a", "--out", str(out)], capsys)
    assert rc == 2 and "a folder of that name is in the way" in one_line(err)


def test_export_disk_full_leaves_no_partial_file(store, tmp_path, capsys, monkeypatch):
    import tifffile as tf

    def full(path, *args, **kwargs):
        with open(path, "wb") as f:
            f.write(b"II*\x00partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(tf, "imwrite", full)
    out = tmp_path / "exports" / "l.tif"
    rc, _out, err = run(["export", str(store), "--image", "a", "--out", str(out)], capsys)
    line = one_line(err)
    assert rc == 2 and f"cannot write {out}: no space left on device" in line
    assert list((tmp_path / "exports").iterdir()) == []


def test_other_os_error_names_the_path(store, tmp_path, capsys, monkeypatch):
    def denied(args):
        raise PermissionError(13, "Permission denied", str(tmp_path / "locked"))

    monkeypatch.setattr(cli_store, "cmd_info", denied)
    rc, _out, err = run(["info", str(store)], capsys)
    assert rc == 2 and one_line(err) == (
        f"napari-hitl info: error: {tmp_path / 'locked'}: permission denied"
    )


# ---------------------------------------------------------------------- Ctrl-C
def test_ctrl_c(store, capsys, monkeypatch):
    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli_store, "cmd_info", interrupted)
    rc, _out, err = run(["info", str(store)], capsys)
    assert rc == 130 and one_line(err) == "napari-hitl info: interrupted"


def test_ctrl_c_real_signal(tmp_path):
    """A real SIGINT to the console script: exit 130, one line."""
    code = (
        "import os, signal, sys\n"
        "import napari_hitl.cli as cli, napari_hitl.cli.store as cli_store\n"
        "def slow(args):\n"
        "    os.kill(os.getpid(), signal.SIGINT)\n"
        "    import time; time.sleep(5)\n"
        "cli_store.cmd_info = slow\n"
        f"sys.exit(cli.main(['info', {str(tmp_path)!r}]))\n"
    )
    # A shell that starts a job in the background (`cmd &`, nohup) leaves SIGINT ignored, and
    # Python then installs no KeyboardInterrupt handler: give the child a terminal's default.
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    assert done.returncode == 130
    assert one_line(done.stderr) == "napari-hitl info: interrupted"


# -------------------------------------------------------------------- bad options
@pytest.mark.parametrize("option", ["--steps", "--warm-steps", "--threads"])
@pytest.mark.parametrize("value", ["-5", "0", "x"])
def test_train_counts_must_be_positive(store, capsys, option, value):
    before = (store / "zarr.json").read_bytes()
    rc, _out, err = run(["train", str(store), option, value], capsys)
    line = one_line(err)
    assert rc == 2 and line.startswith(f"napari-hitl train: error: argument {option}:")
    assert (store / "zarr.json").read_bytes() == before  # no model written


@pytest.mark.parametrize(
    ("option", "value", "expected"),
    [
        ("--machine-weight", "nan", "machine weight (--machine-weight) must be a finite number"),
        ("--machine-weight", "-0.5", "machine weight (--machine-weight) must be a finite number"),
        ("--propagate-weight", "inf", "propagation weight (--propagate-weight) must be a finite"),
        ("--potts-weight", "-1", "Potts weight (--potts-weight) must be a finite number >= 0"),
        ("--lovasz-weight", "nan", "Lovász weight (--lovasz-weight) must be a finite number >= 0"),
        ("--warm-shrink", "1.5", "warm shrink (--warm-shrink) must be in [0, 1], got 1.5"),
        ("--image-power", "2", "image draw's power (--image-power) must be in [0, 1], got 2.0"),
        ("--novelty-gate", "-2", "novelty gate factor (--novelty-gate, 0 = off) must be"),
        ("--time-budget", "0", "time budget (--time-budget) must be a number of seconds > 0"),
        ("--time-budget", "nan", "time budget (--time-budget) must be a number of seconds > 0"),
        ("--filter-bank", "0,1", "filter-bank scales (--filter-bank) must be numbers in (0, 16]"),
        ("--filter-bank", ",", "filter-bank scales (--filter-bank) must be numbers in (0, 16]"),
        ("--filter-bank", "x", "argument --filter-bank: 'x' is not 'on' or scales in pixels"),
    ],
)
@pytest.mark.parametrize("model", ["unet", "rf"])
def test_train_weights_out_of_range_are_refused_before_training(
    store, capsys, option, value, expected, model
):
    before = sorted(p.name for p in store.rglob("*"))
    rc, _out, err = run(["train", str(store), "--model", model, option, value], capsys)
    assert rc == 2 and expected in one_line(err)
    assert sorted(p.name for p in store.rglob("*")) == before  # no model, no history written


def test_simulate_steps_must_be_positive(tmp_path, capsys):
    rc, _out, err = run(
        ["simulate", "--images", ".", "--masks", ".", "--out", str(tmp_path), "--steps", "-5"],
        capsys,
    )
    assert rc == 2 and "-5 must be at least 1" in one_line(err)


@pytest.mark.parametrize("command", ["classes-set", "import-classes"])
def test_bad_class_colour(store, tmp_path, capsys, command):
    if command == "classes-set":
        argv = ["classes", str(store), "--set", "a:#zzzzzz"]
    else:
        argv = [
            "import",
            str(tmp_path / "q.zarr"),
            str(tmp_path / "a.tif"),
            "--classes",
            "a:#zzzzzz",
        ]
    rc, _out, err = run(argv, capsys)
    line = one_line(err)
    assert rc == 2 and "'#zzzzzz'" in line and "'#rrggbb'" in line
    assert "invalid literal" not in line
    assert not (tmp_path / "q.zarr").exists()


def test_repeated_class_name(store, capsys):
    rc, _out, err = run(["classes", str(store), "--set", "a,b,A"], capsys)
    assert rc == 2 and "names the class 'A' twice" in one_line(err)


def test_negative_band_index(tmp_path, store, capsys):
    rc, _out, err = run(
        ["import", str(tmp_path / "q.zarr"), str(tmp_path / "a.tif"), "--bands", "-1"], capsys
    )
    assert rc == 2 and "band index -1 is negative" in one_line(err)
    assert not (tmp_path / "q.zarr").exists()


@pytest.mark.parametrize("rgb", ["-1,0,1", "r,g,b"])
def test_bad_rgb(tmp_path, store, capsys, rgb):
    rc, _out, err = run(
        ["import", str(tmp_path / "q.zarr"), str(tmp_path / "a.tif"), f"--rgb={rgb}"], capsys
    )
    assert rc == 2 and "--rgb" in one_line(err) and "counted from 0" in err


def test_stack_mask_with_several_channels_names_the_shape(tmp_path, store, capsys):
    np.save(tmp_path / "vol.npy", np.zeros((3, 16, 16), np.float32))
    np.save(tmp_path / "m.npy", np.zeros((5, 16, 16), np.uint8))
    rc, _out, err = run(
        ["import", str(tmp_path / "q.zarr"), str(tmp_path / "vol.npy"), "--axes", "ZYX",
         "--labels", str(tmp_path / "m.npy")],
        capsys,
    )  # fmt: skip
    line = one_line(err)
    assert rc == 2 and "must have the image's shape (3, 16, 16)" in line


# ------------------------------------------------------------------ class ceiling
def test_too_many_classes_set(store, capsys):
    names = ",".join(f"c{i}" for i in range(MAX_CLASSES + 1))
    rc, _out, err = run(["classes", str(store), "--set", names], capsys)
    assert rc == 2 and f"at most {MAX_CLASSES}" in one_line(err)
    assert [c.name for c in ProjectStore.open(store).classes] == ["cloud", "clear"]


def test_too_many_classes_at_import(tmp_path, store, capsys):
    names = ",".join(f"c{i}" for i in range(MAX_CLASSES + 1))
    rc, _out, err = run(
        ["import", str(tmp_path / "q.zarr"), str(tmp_path / "a.tif"), "--classes", names], capsys
    )
    assert rc == 2 and f"at most {MAX_CLASSES}" in one_line(err)


def test_store_listing_65535_classes(store, capsys):
    _edit_root(
        store,
        classes=[{"value": v, "name": f"c{v}", "color": "#000000"} for v in range(1, 65536)],
    )
    for argv in (["info", str(store)], ["train", str(store), "--steps", "1"]):
        rc, _out, err = run(argv, capsys)
        line = one_line(err)
        assert rc == 2 and "65535 classes" in line and f"at most {MAX_CLASSES}" in line
    rc, out, _err = run(["classes", str(store), "--set", "land,water"], capsys)  # the way out
    assert rc == 0 and "land" in out


# ----------------------------------------------------------- names on the terminal
def test_class_names_are_escaped_on_the_terminal(store, capsys):
    evil = "red\x1b[31mALERT\x1b[0m\rover"
    rc, out, _err = run(["classes", str(store), "--set", f"{evil},plain"], capsys)
    assert rc == 0 and "\x1b" not in out and "\r" not in out
    assert "red\\x1b[31mALERT\\x1b[0m\\x0dover" in out
    rc, out, _err = run(["info", str(store)], capsys)
    assert rc == 0 and "\x1b" not in out and "red\\x1b[31mALERT" in out


def test_error_messages_are_escaped_and_one_line(store, capsys, monkeypatch):
    def shouting(args):
        raise ValueError("class 'x\x1b[2J' is bad\nsecond line")

    monkeypatch.setattr(cli_store, "cmd_info", shouting)
    rc, _out, err = run(["info", str(store)], capsys)
    line = one_line(err)
    assert rc == 2 and "\x1b" not in line and "x\\x1b[2J" in line and "bad second line" in line


def test_usage_errors_are_one_line(capsys):
    rc, _out, err = run(["import"], capsys)
    line = one_line(err)
    assert rc == 2 and line.startswith("napari-hitl import: error:") and "--help" in line
