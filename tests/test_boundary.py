"""The layering rule: the core and the CLI load no napari/Qt; the napari layer loads no Qt."""

from __future__ import annotations

import subprocess
import sys

GUI = ("napari", "qtpy", "PyQt5", "PyQt6", "PySide2", "PySide6", "magicgui", "superqt", "vispy")
QT = ("qtpy", "PyQt5", "PyQt6", "PySide2", "PySide6", "magicgui", "superqt")


def _loaded_after(code: str, forbidden: tuple[str, ...]) -> list[str]:
    probe = (
        f"{code}\nimport sys\n"
        f"print(sorted({{m.split('.')[0] for m in sys.modules}} & set({forbidden!r})))"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    return eval(out.stdout.strip().splitlines()[-1])


def test_core_and_cli_import_no_gui_modules():
    code = (
        "import pkgutil, importlib, napari_hitl.core as c\n"
        "for m in pkgutil.walk_packages(c.__path__, 'napari_hitl.core.'):\n"  # sub-packages too
        "    importlib.import_module(m.name)\n"
        "import napari_hitl, napari_hitl.cli\n"
        "from napari_hitl.cli import build_parser\n"
        "build_parser()\n"  # imports every cli_* module that registers commands
        "import napari_hitl.demo, napari_hitl.cli.common, napari_hitl.cli.progress\n"
    )
    assert _loaded_after(code, GUI) == []


def test_napari_layer_imports_no_qt(tmp_path):
    code = (
        "import os\n"
        f"os.environ['NAPARI_HITL_SAMPLE_DIR'] = {str(tmp_path)!r}\n"
        "from napari_hitl._napari import reader, writer, sample_data, layers, adopt, view\n"
        "layers_data = sample_data.sample_scene()\n"
        "assert len(layers_data) >= 3"
    )
    assert _loaded_after(code, QT) == []
