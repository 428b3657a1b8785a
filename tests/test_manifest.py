"""The napari manifest: valid, one file (top-level symlink = packaged file), every
python_name imports, and the built wheel ships it."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from npe2 import PluginManifest

REPO = Path(__file__).resolve().parents[1]


def test_top_level_manifest_is_the_packaged_file():
    top = REPO / "napari.yaml"
    assert top.resolve() == (REPO / "src" / "napari_hitl" / "napari.yaml").resolve()


def test_manifest_validates_and_every_python_name_imports():
    pm = PluginManifest.from_distribution("napari-hitl")
    assert pm.name == "napari-hitl"
    names = [c.python_name for c in pm.contributions.commands or []]
    assert names
    for python_name in names:
        module, _, attr = python_name.partition(":")
        assert callable(getattr(importlib.import_module(module), attr)), python_name
    out = subprocess.run(
        [sys.executable, "-m", "npe2", "validate", "napari-hitl"], capture_output=True, text=True
    )
    assert out.returncode == 0, out.stdout + out.stderr


@pytest.mark.slow
def test_wheel_ships_the_manifest(tmp_path):
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(tmp_path),
            str(REPO),
        ],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    wheel = next(tmp_path.glob("napari_hitl-*.whl"))
    with zipfile.ZipFile(wheel) as z:
        shipped = z.read("napari_hitl/napari.yaml")
        entry_points = z.read(
            next(n for n in z.namelist() if n.endswith("entry_points.txt"))
        ).decode()
    assert shipped == (REPO / "napari.yaml").read_bytes()
    assert "[napari.manifest]" in entry_points and "napari_hitl:napari.yaml" in entry_points
    # Install the wheel alone into a folder that shadows the editable install, and validate it
    # there: npe2 must find the manifest through the wheel's entry point and import its code.
    target = tmp_path / "site"
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--target",
            str(target),
            str(wheel),
        ],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    env = {**os.environ, "PYTHONPATH": str(target)}
    probe = (
        "import napari_hitl, importlib.metadata as m; print(napari_hitl.__file__); "
        "print(m.distribution('napari-hitl').locate_file(''))"
    )
    where = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env)
    assert where.stdout.count(str(target)) == 2, where.stdout + where.stderr
    out = subprocess.run(
        [sys.executable, "-m", "npe2", "validate", "napari-hitl"],
        capture_output=True,
        text=True,
        env=env,
    )
    assert out.returncode == 0, out.stdout + out.stderr
