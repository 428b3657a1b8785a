"""Class definitions of a project: label value → name and colour."""

from __future__ import annotations

import numbers
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from napari_hitl.core.jsonable import Jsonable

# A qualitative palette (Tableau 10 + extras) for classes the user has not coloured.
PALETTE = (
    "#1f77b4",
    "#ff7f0e",
    "#2ca02c",
    "#d62728",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#7f7f7f",
    "#bcbd22",
    "#17becf",
    "#aec7e8",
    "#ffbb78",
    "#98df8a",
    "#ff9896",
    "#c5b0d5",
    "#c49c94",
)
MAX_LABEL_VALUE = 65535  # labels are stored as uint16; 0 means unlabeled
# At most this many classes per project. Label values may be anything in 1..MAX_LABEL_VALUE, but
# every model keeps one float32 output per class and pixel (logits, probabilities, the forest's
# class votes), so memory grows with the class count: 255 classes are 1 KiB per pixel, 1 GiB for
# one 1024 x 1024 inference tile, already the most a workstation holds; 65535 classes made `train`
# grow to 21.8 GB on a small image. 255 covers the large benchmarks (ADE20K 150, COCO-Stuff 182)
# and is what an 8-bit class map (PNG, uint8 GeoTIFF with 0 = nodata) can hold.
MAX_CLASSES = 255
_COLOR = re.compile(r"#[0-9a-fA-F]{6}")


@dataclass(frozen=True)
class ClassInfo(Jsonable):
    """One class: its label value (1..65535), a name and a ``#rrggbb`` colour."""

    value: int
    name: str
    color: str

    def __post_init__(self) -> None:
        if isinstance(self.value, bool) or not isinstance(self.value, numbers.Integral):
            raise ValueError(f"class value {self.value!r} must be an integer")
        if not 1 <= int(self.value) <= MAX_LABEL_VALUE:
            raise ValueError(
                f"class value {self.value} must be in 1..{MAX_LABEL_VALUE} (0 = unlabeled)"
            )
        if not isinstance(self.name, str):
            raise ValueError(f"class name {self.name!r} of value {self.value} must be text")
        if not (isinstance(self.color, str) and _COLOR.fullmatch(self.color)):
            raise ValueError(
                f"class colour {self.color!r} of {self.name!r} must look like '#rrggbb' "
                "(six hex digits 0-9, a-f)"
            )

    @property
    def rgba(self) -> tuple[float, float, float, float]:
        """The colour as RGBA floats in [0, 1]."""
        h = self.color.lstrip("#")
        return (int(h[0:2], 16) / 255, int(h[2:4], 16) / 255, int(h[4:6], 16) / 255, 1.0)


def default_color(value: int) -> str:
    """The palette colour for a label value."""
    return PALETTE[(int(value) - 1) % len(PALETTE)]


def check_class_count(n: int, what: str = "the class list") -> None:
    """Refuse more than :data:`MAX_CLASSES` classes with a one-line message.

    Parameters
    ----------
    n
        The number of classes.
    what
        What holds them, for the message.

    Raises
    ------
    ValueError
        ``n`` exceeds :data:`MAX_CLASSES`.
    """
    if n > MAX_CLASSES:
        raise ValueError(
            f"{n} classes in {what}: napari-hitl handles at most {MAX_CLASSES} (every model keeps "
            "one output per class and pixel); merge classes or use fewer"
        )


def make_classes(names: Sequence[str], colors: Sequence[str] | None = None) -> list[ClassInfo]:
    """Classes 1..n from names (and optional colours).

    Raises
    ------
    ValueError
        More than :data:`MAX_CLASSES` names, or a colour that is not ``#rrggbb``.
    """
    check_class_count(len(names), "the class list")
    colors = list(colors) if colors else []
    return [
        ClassInfo(i + 1, name, colors[i] if i < len(colors) else default_color(i + 1))
        for i, name in enumerate(names)
    ]


def parse_classes(spec: str, option: str = "--classes") -> list[ClassInfo]:
    """Classes 1..n from a command-line list ``"name[:#rrggbb],name[:#rrggbb],..."``.

    Parameters
    ----------
    spec
        Comma-separated names, each optionally followed by ``:`` and a ``#rrggbb`` colour
        (unspecified colours come from :data:`PALETTE`).
    option
        The option the list came from, for messages.

    Returns
    -------
    list of ClassInfo
        Values 1, 2, ... in the order given.

    Raises
    ------
    ValueError
        No names, an empty or repeated name, a bad colour, or more than :data:`MAX_CLASSES`.
    """
    items = [t.strip() for t in spec.split(",")]
    items = [t for t in items if t]
    if not items:
        raise ValueError(f"{option} {spec!r} names no class; give names separated by commas")
    check_class_count(len(items), option)
    out: list[ClassInfo] = []
    seen: set[str] = set()
    for i, item in enumerate(items):
        name, sep, color = item.partition(":")
        name, color = name.strip(), color.strip()
        if not name:
            raise ValueError(f"{option} entry {item!r} has no class name")
        if name.casefold() in seen:
            raise ValueError(f"{option} names the class {name!r} twice")
        seen.add(name.casefold())
        if sep and not _COLOR.fullmatch(color):
            raise ValueError(
                f"{option}: colour {color!r} of class {name!r} must look like '#rrggbb' "
                "(six hex digits 0-9, a-f), e.g. road:#808080"
            )
        out.append(ClassInfo(i + 1, name, color if sep else default_color(i + 1)))
    return out


def classes_from_json(items: Iterable[dict[str, Any]]) -> list[ClassInfo]:
    """Inverse of :meth:`ClassInfo.to_json` over a list, sorted by value.

    Raises
    ------
    ValueError
        An entry that is not a ``{"value", "name", "color"}`` object of the right types,
        duplicate values, or more than :data:`MAX_CLASSES` classes.
    """
    if isinstance(items, str | bytes | dict) or not isinstance(items, Iterable):
        raise ValueError(f"the class list must be a list of classes, not {type(items).__name__}")
    out = []
    for i, d in enumerate(items):
        if not isinstance(d, dict) or not {"value", "name", "color"} <= d.keys():
            raise ValueError(
                f"class entry {i} ({str(d)[:60]!r}) must be an object with value, name and color"
            )
        value = d["value"]
        integral_float = isinstance(value, float) and value.is_integer()
        if integral_float or (isinstance(value, str) and value.strip().isdigit()):
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, numbers.Integral):
            raise ValueError(f"class entry {i}: value {value!r} must be an integer")
        out.append(ClassInfo(int(value), str(d["name"]), str(d["color"])))
    check_class_count(
        len(out), "the class list (`napari-hitl classes STORE --set NAMES` sets a shorter one)"
    )
    out.sort(key=lambda c: c.value)
    values = [c.value for c in out]
    if len(set(values)) != len(values):
        raise ValueError(f"duplicate class values in {values}")
    return out
