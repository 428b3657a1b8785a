"""The command line's progress: a bar on a terminal, a line per tenth of the job when piped."""

from __future__ import annotations

import io

from napari_hitl.cli.progress import ProgressPrinter
from napari_hitl.core.progress import Progress


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_piped_progress_writes_a_line_per_tenth_and_starts_over_for_a_new_job():
    out = io.StringIO()
    printer = ProgressPrinter(out)
    for job in ("train", "predict"):
        for i in range(1, 201):
            printer(Progress(i, 200, f"{job} step {i}"))
    lines = out.getvalue().splitlines()
    assert len(lines) == 2 * 11  # per job: its first step, then 10 %, 20 %, ..., 100 %
    assert lines[0] == "[  0%] train step 1" and lines[10] == "[100%] train step 200"
    assert lines[11] == "[  0%] predict step 1" and lines[-1] == "[100%] predict step 200"
    assert "\r" not in out.getvalue()


def test_terminal_progress_redraws_one_line_with_a_bar():
    out = _Terminal()
    printer = ProgressPrinter(out)
    for i in range(1, 5):
        printer(Progress(i, 4, f"step {i}"))
    text = out.getvalue()
    assert text.count("\r") == 4 and text.endswith("\n") and text.count("\n") == 1
    last = text.split("\r")[-1]
    assert last.startswith("█" * 24 + " 100%  step 4")
    assert "░" in text.split("\r")[1]  # a quarter done: the bar is mostly empty
