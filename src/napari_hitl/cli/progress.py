"""Progress of the command line's long jobs: a bar on a terminal, plain lines when piped.

One printer serves every command. On a terminal it redraws one line — a bar, the percentage and
the job's message — and ends it when the job is done. When stderr is a file or a pipe it writes
a plain line at each further tenth of the job and at least once a minute, so logs of batch
runs show that the job moves without filling up with redraws.
"""

from __future__ import annotations

import shutil
import sys
import time
from typing import TextIO

from napari_hitl.core.progress import Progress

BAR_WIDTH = 24
LOG_EVERY_S = 60.0


class ProgressPrinter:
    """A ``run_to_end`` callback that prints :class:`Progress` reports to ``stream``.

    Parameters
    ----------
    stream
        Where to print (default: ``sys.stderr`` at each call, so tests can capture it).
    """

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream
        self._last_tenth = -1
        self._last_time = 0.0
        self._last_fraction = 0.0

    def __call__(self, report: Progress) -> None:
        stream = self.stream or sys.stderr
        fraction = report.fraction
        if fraction < self._last_fraction:  # a new job (or a new phase of one) starts over
            self._last_tenth = -1
        self._last_fraction = fraction
        done = report.done >= report.total
        if stream.isatty():
            filled = round(fraction * BAR_WIDTH)
            bar = "█" * filled + "░" * (BAR_WIDTH - filled)
            width = shutil.get_terminal_size((100, 20)).columns
            line = f"{bar} {fraction:4.0%}  {report.message}"[: max(width - 1, 20)]
            print(f"\r{line:<{max(width - 1, 20)}}", end="\n" if done else "", file=stream,
                  flush=True)  # fmt: skip
            return
        tenth, now = int(fraction * 10), time.monotonic()
        if tenth > self._last_tenth or now - self._last_time > LOG_EVERY_S:
            print(f"[{fraction:4.0%}] {report.message}", file=stream, flush=True)
            self._last_tenth, self._last_time = tenth, now
