"""``python -m napari_hitl.cli``: the same as the ``napari-hitl`` command."""

import sys

from napari_hitl.cli.main import main

if __name__ == "__main__":
    sys.exit(main())
