"""What pyproject.toml promises: ranges (installable beside other plugins), no Qt binding in the
plugin's `gui` extra, and the tested versions pinned only in the set-up's constraints."""

from __future__ import annotations

from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parent.parent


def _project() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def test_requirements_are_ranges_not_pins():
    project = _project()
    extras = project["optional-dependencies"]
    for req in [*project["dependencies"], *extras["gui"], *extras["qt"]]:
        assert "==" not in req, req
    assert not any(r.lower().startswith(("pyqt", "pyside")) for r in extras["gui"])
    assert not any(r.startswith("npe2") for r in project["dependencies"])  # tests only


def test_setup_installs_the_tested_versions():
    pins = (ROOT / "scripts" / "constraints.txt").read_text().split()
    assert "torch==2.13.0" in pins and "napari==0.9.2" in pins
    setup = (ROOT / "scripts" / "setup.sh").read_text()
    assert "-c scripts/constraints.txt" in setup
