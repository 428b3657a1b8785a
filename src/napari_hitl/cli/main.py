"""``napari-hitl``: the command line over the same core the napari widgets use.

Run ``napari-hitl --help`` and ``napari-hitl COMMAND --help``; ``docs/cli.md`` has the reference.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import NoReturn

from napari_hitl import __version__
from napari_hitl.core.errors import HitlError
from napari_hitl.core.text import terminal_safe


# ----------------------------------------------------------------------------- main
class _Parser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one line (``napari-hitl CMD: error: ...``)."""

    def error(self, message: str) -> NoReturn:
        """Print the problem and where to find the options, in one line; exit 2."""
        self.exit(2, f"{self.prog}: error: {terminal_safe(message)} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``napari-hitl``."""
    parser = _Parser(
        prog="napari-hitl",
        description="Human-in-the-loop labeling of multiband images: project stores, import, "
        "export and the learning loop, without a GUI.",
    )
    parser.add_argument("--version", action="version", version=f"napari-hitl {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    from napari_hitl.cli.store import add_store_commands

    add_store_commands(sub)
    from napari_hitl.cli.bench import add_bench_commands
    from napari_hitl.cli.loop import add_demo_command, add_loop_commands

    add_loop_commands(sub)
    add_bench_commands(sub)
    add_demo_command(sub)

    from napari_hitl.cli.queue import add_queue_commands

    add_queue_commands(sub)
    from napari_hitl.cli.explain import add_explain_commands

    add_explain_commands(sub)
    from napari_hitl.cli.hints import add_hint_commands

    add_hint_commands(sub)
    from napari_hitl.cli.history import add_history_commands

    add_history_commands(sub)
    from napari_hitl.cli.check import add_check_commands

    add_check_commands(sub)
    return parser


def _one_line(exc: BaseException) -> str:
    """An exception as one terminal-safe line; OS errors name their path."""
    if isinstance(exc, OSError) and exc.strerror and exc.filename is not None:
        where = f"{exc.filename}" + (f" -> {exc.filename2}" if exc.filename2 else "")
        text = f"{where}: {exc.strerror.lower()}"
    else:
        text = str(exc) or type(exc).__name__
    return terminal_safe(" ".join(text.splitlines()))


def _locate_damage(store: str, exc: Exception) -> Exception:
    """A corrupt chunk's error as a StoreError naming image, array and chunk (where found)."""
    from napari_hitl.core.store import damaged_store_error, open_store

    try:
        return damaged_store_error(open_store(store), exc)
    except (HitlError, OSError, ValueError):
        return exc


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``napari-hitl`` console script.

    Exit status: 0 done; 2 a problem with the input, the store or the file system (one line
    ``napari-hitl CMD: error: ...`` on stderr, no traceback); 130 interrupted (Ctrl-C); 1 an
    unexpected error (a bug: Python's traceback, please report it).
    """
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print(f"napari-hitl {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        from napari_hitl.core.store import is_decode_error

        if is_decode_error(exc):  # a corrupt chunk: name it instead of the codec's message
            store = getattr(args, "store", None)
            if store:
                exc = _locate_damage(store, exc)
        elif not isinstance(exc, HitlError | ValueError | OSError):
            raise
        print(f"napari-hitl {args.command}: error: {_one_line(exc)}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
