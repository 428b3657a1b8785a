"""The ``napari-hitl`` command line: :mod:`napari_hitl.cli.main` builds the parser and
dispatches; one module per command group over :mod:`napari_hitl.core`."""

from napari_hitl.cli.main import build_parser, main

__all__ = ["build_parser", "main"]
