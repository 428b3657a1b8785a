"""Hints as commands: ``find <class> [in <place>]`` and ``remove <class> [in <place>]``.

Seed 002 (§3.3) phrases hints over an N × N grid of the image (N = 3): "find the person on the
top left", "remove the sky on the bottom". A command is parsed by a small grammar and turned
into sparse hints that the guide optimizes (:mod:`napari_hitl.core.hints.guide`).

Grammar (case-insensitive; several commands separated by ``;`` or new lines)::

    command := verb [the|a|an|all] class [(in|on|at) [the] place]
    verb    := find | remove          (also: rmv, delete)
    class   := a class name of the project (or a unique start of one), or its value
    place   := top left | top middle | top right | middle left | middle | middle right
             | bottom left | bottom middle | bottom right          (one cell)
             | top | bottom | left | right                          (a row or column of cells)
             | cell R,C                                             (1-based; any grid size)
             | everywhere                                           (default: the whole image)

``center``/``centre`` may replace ``middle``, ``upper``/``lower`` may replace ``top``/``bottom``,
and the two words of a cell may be joined by a hyphen or come in either order.

Energy of a command (on the current prediction)
    find c:  the pixels of the place not yet predicted c whose probability of c is in the top
             :data:`FIND_SHARE` of the place's pixels are pushed towards c;
    remove c: the place's pixels predicted c are pushed away from c.
    Every other pixel keeps its predicted class with weight :data:`KEEP_WEIGHT` (the paper gives
    initially correct pixels weight 0.5), so a command changes its place, not the whole image.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from napari_hitl.core.choices import CELL_NAMES, PLACE_HELP
from napari_hitl.core.hints.block import GuideError
from napari_hitl.core.hints.guide import Hints

GRID = 3
FIND_SHARE = 0.1
KEEP_WEIGHT = 0.5
MAX_POINTS = 64
# Commands push many pixels at once: at the click learning rate (0.5) "find road in bottom left"
# raised p(road) by 0.37 in the cell and 0.31 elsewhere (tests' scene, unet); at 0.05 by 0.11
# and 0.07. Commands therefore default to this smaller rate.
COMMAND_LR = 0.05

VERBS = {"find": "find", "remove": "remove", "rmv": "remove", "delete": "remove"}
_ROW_WORDS = {"top": 0, "upper": 0, "middle": 1, "center": 1, "centre": 1, "bottom": 2, "lower": 2}
_COL_WORDS = {"left": 0, "middle": 1, "center": 1, "centre": 1, "right": 2}
EXAMPLE = "e.g. 'find water in top left' or 'remove road in the bottom'"


class CommandError(GuideError):
    """A command does not parse; the message says what was expected."""


@dataclass(frozen=True)
class Command:
    """One parsed command.

    Attributes
    ----------
    verb
        ``"find"`` or ``"remove"``.
    class_value, class_name
        The class it is about.
    cells
        Grid cells ``(row, col)`` (0-based) of its place; empty = the whole image.
    grid
        N of the N × N grid.
    text
        What the user typed.
    """

    verb: str
    class_value: int
    class_name: str
    cells: tuple[tuple[int, int], ...]
    grid: int
    text: str

    def place(self) -> str:
        """The place in words."""
        if not self.cells:
            return "everywhere"
        if self.grid == GRID and len(self.cells) == 1:
            return CELL_NAMES[self.cells[0][0] * GRID + self.cells[0][1]]
        if self.grid == GRID and len(self.cells) == GRID:
            rows = {r for r, _ in self.cells}
            cols = {c for _, c in self.cells}
            if len(rows) == 1:
                return {0: "top", 2: "bottom"}.get(rows.pop(), "middle row")
            if len(cols) == 1:
                return {0: "left", 2: "right"}.get(cols.pop(), "middle column")
        return " + ".join(f"cell {r + 1},{c + 1}" for r, c in self.cells)

    def describe(self) -> str:
        """A canonical form, e.g. ``find water in top left``."""
        where = self.place()
        return f"{self.verb} {self.class_name}" + ("" if where == "everywhere" else f" in {where}")

    def region(self, shape: tuple[int, int]) -> np.ndarray:
        """The place as a boolean ``H, W`` mask of an image of ``shape``."""
        h, w = shape
        if not self.cells:
            return np.ones(shape, bool)
        out = np.zeros(shape, bool)
        ys = np.linspace(0, h, self.grid + 1).round().astype(int)
        xs = np.linspace(0, w, self.grid + 1).round().astype(int)
        for r, c in self.cells:
            out[ys[r] : ys[r + 1], xs[c] : xs[c + 1]] = True
        return out


def _match_class(
    words: str, class_names: Sequence[str], class_values: Sequence[int], text: str
) -> tuple[int, str]:
    key = words.strip().lower()
    names = [n.lower() for n in class_names]
    if not key:
        raise CommandError(f"{text!r}: which class? {EXAMPLE}; classes: {', '.join(class_names)}")
    if key in names:
        i = names.index(key)
        return int(class_values[i]), class_names[i]
    if key.isdigit() and int(key) in class_values:
        i = list(class_values).index(int(key))
        return int(class_values[i]), class_names[i]
    starts = [i for i, n in enumerate(names) if n.startswith(key)]
    if len(starts) == 1:
        return int(class_values[starts[0]]), class_names[starts[0]]
    if len(starts) > 1:
        raise CommandError(
            f"{text!r}: {words.strip()!r} could be "
            + " or ".join(repr(class_names[i]) for i in starts)
        )
    close = difflib.get_close_matches(key, names, n=1, cutoff=0.6)
    hint = f"; did you mean {class_names[names.index(close[0])]!r}?" if close else ""
    raise CommandError(
        f"{text!r}: no class {words.strip()!r}{hint} (classes: {', '.join(class_names)})"
    )


def _parse_place(words: str, grid: int, text: str) -> tuple[tuple[int, int], ...]:
    key = re.sub(r"^(the)\s+", "", words.strip().lower().replace("-", " "))
    key = re.sub(r"\s+", " ", key)
    if key in ("everywhere", "the image", "image", "whole image", "all"):
        return ()
    m = re.fullmatch(r"cell\s*(\d+)\s*[, ]\s*(\d+)", key)
    if m:
        r, c = int(m.group(1)) - 1, int(m.group(2)) - 1
        if not (0 <= r < grid and 0 <= c < grid):
            raise CommandError(
                f"{text!r}: cell {r + 1},{c + 1} is outside the {grid}×{grid} grid "
                f"(rows and columns 1–{grid})"
            )
        return ((r, c),)
    if grid != GRID:
        raise CommandError(
            f"{text!r}: named places need the 3×3 grid; with a {grid}×{grid} grid say 'cell R,C'"
        )
    parts = key.split(" ")
    if len(parts) == 1:
        word = parts[0]
        if word in ("top", "upper", "bottom", "lower"):
            r = _ROW_WORDS[word]
            return tuple((r, c) for c in range(GRID))
        if word in ("left", "right"):
            c = _COL_WORDS[word]
            return tuple((r, c) for r in range(GRID))
        if word in ("middle", "center", "centre"):
            return ((1, 1),)
    if len(parts) == 2:
        a, b = parts
        for row_word, col_word in ((a, b), (b, a)):
            if row_word in _ROW_WORDS and col_word in _COL_WORDS:
                return ((_ROW_WORDS[row_word], _COL_WORDS[col_word]),)
    close = difflib.get_close_matches(key, [*CELL_NAMES, "top", "bottom", "left", "right"], n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    raise CommandError(f"{text!r}: unknown place {words.strip()!r}{hint}. {PLACE_HELP}")


def parse_command(
    text: str,
    class_names: Sequence[str],
    class_values: Sequence[int],
    grid: int = GRID,
) -> Command:
    """Parse one command (see the module docstring for the grammar).

    Raises
    ------
    CommandError
        With what was expected: an unknown verb, class or place, or an empty command.
    """
    raw = text.strip()
    if not raw:
        raise CommandError(f"empty command; {EXAMPLE}")
    words = raw.split()
    verb = VERBS.get(words[0].lower())
    if verb is None:
        close = difflib.get_close_matches(words[0].lower(), list(VERBS), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise CommandError(f"{raw!r}: a command starts with 'find' or 'remove'{hint}; {EXAMPLE}")
    rest = " ".join(words[1:])
    m = re.match(r"^(?:(?:the|a|an|all)\s+)?(.*?)(?:\s+(?:in|on|at)\s+(.*))?$", rest, re.I)
    assert m is not None  # the pattern matches any string
    class_words, place_words = m.group(1), m.group(2)
    if place_words is None and class_words:
        # "find water top left" (no preposition): the longest class, then a place
        for cut in range(len(class_words.split()) - 1, 0, -1):
            head = " ".join(class_words.split()[:cut])
            tail = " ".join(class_words.split()[cut:])
            try:
                value, name = _match_class(head, class_names, class_values, raw)
                cells = _parse_place(tail, grid, raw)
            except CommandError:
                continue
            return Command(verb, value, name, cells, grid, raw)
    value, name = _match_class(class_words, class_names, class_values, raw)
    cells = () if place_words is None else _parse_place(place_words, grid, raw)
    return Command(verb, value, name, cells, grid, raw)


def parse_commands(
    text: str, class_names: Sequence[str], class_values: Sequence[int], grid: int = GRID
) -> list[Command]:
    """Parse commands separated by ``;`` or new lines (empty parts are skipped)."""
    parts = [p for p in re.split(r"[;\n]", text) if p.strip()]
    if not parts:
        raise CommandError(f"no command; {EXAMPLE}")
    return [parse_command(p, class_names, class_values, grid) for p in parts]


def _sample(mask: np.ndarray, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    rows, cols = np.nonzero(mask)
    if rows.size > n:
        pick = rng.choice(rows.size, n, replace=False)
        rows, cols = rows[pick], cols[pick]
    return rows, cols


def command_hints(
    commands: Sequence[Command],
    labels: np.ndarray,
    probabilities: np.ndarray,
    class_values: Sequence[int],
    valid: np.ndarray | None = None,
    *,
    max_points: int = MAX_POINTS,
    find_share: float = FIND_SHARE,
    keep_weight: float = KEEP_WEIGHT,
    seed: int = 0,
) -> Hints:
    """The sparse hints that ``commands`` stand for, given the current prediction.

    Parameters
    ----------
    commands
        Parsed commands.
    labels, probabilities
        The current (unguided or guided) prediction: ``H, W`` class values and ``K, H, W``.
    class_values
        The model's classes (the order of ``probabilities``).
    valid
        Pixels with data.

    Raises
    ------
    CommandError
        A command has nothing to act on: nothing left to find, or no such class to remove in
        its place.
    """
    shape = labels.shape
    valid = np.ones(shape, bool) if valid is None else valid
    values = list(class_values)
    rng = np.random.default_rng(seed)
    out = Hints.empty()
    touched = np.zeros(shape, bool)
    for cmd in commands:
        if cmd.class_value not in values:
            raise CommandError(f"{cmd.text!r}: class {cmd.class_value} is not one of the model's")
        k = values.index(cmd.class_value)
        place = cmd.region(shape) & valid
        if cmd.verb == "find":
            todo = place & (labels != cmd.class_value)
            if not todo.any():
                raise CommandError(
                    f"{cmd.text!r}: every pixel {_in(cmd)} is already {cmd.class_name!r}"
                )
            n_target = max(1, round(find_share * place.sum()))
            p = np.where(todo, probabilities[k], -1.0)
            flat = np.argpartition(p.ravel(), -min(n_target, int(todo.sum())))
            chosen = np.zeros(p.size, bool)
            chosen[flat[-min(n_target, int(todo.sum())) :]] = True
            target = chosen.reshape(shape) & todo
            rows, cols = _sample(target, max_points, rng)
            out = out + Hints.points(rows, cols, k)
        else:
            target = place & (labels == cmd.class_value)
            if not target.any():
                raise CommandError(
                    f"{cmd.text!r}: no pixel {_in(cmd)} is predicted {cmd.class_name!r}; "
                    f"nothing to remove"
                )
            rows, cols = _sample(target, max_points, rng)
            out = out + Hints.points(rows, cols, k, lower=True)
        touched |= target
    if keep_weight > 0:
        keep = valid & ~touched & np.isin(labels, values)
        rows, cols = _sample(keep, max_points, rng)
        lut = {v: i for i, v in enumerate(values)}
        classes = np.array([lut[int(v)] for v in labels[rows, cols]], np.int64)
        out = out + Hints.points(rows, cols, classes, weight=keep_weight)
    return out


def _in(cmd: Command) -> str:
    where = cmd.place()
    return "of the image" if where == "everywhere" else f"in the {where}"
