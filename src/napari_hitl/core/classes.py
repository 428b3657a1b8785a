"""Class definitions of a project: label value → name and colour."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

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


@dataclass(frozen=True)
class ClassInfo:
    """One class: its label value (1..65535), a name and a ``#rrggbb`` colour."""

    value: int
    name: str
    color: str

    def __post_init__(self) -> None:
        if not 1 <= int(self.value) <= MAX_LABEL_VALUE:
            raise ValueError(
                f"class value {self.value} must be in 1..{MAX_LABEL_VALUE} (0 = unlabeled)"
            )
        if not (isinstance(self.color, str) and len(self.color) == 7 and self.color[0] == "#"):
            raise ValueError(f"class colour {self.color!r} must look like '#rrggbb'")
        int(self.color[1:], 16)

    def to_json(self) -> dict[str, Any]:
        """A JSON-serialisable dict."""
        return asdict(self)

    @property
    def rgba(self) -> tuple[float, float, float, float]:
        """The colour as RGBA floats in [0, 1]."""
        h = self.color.lstrip("#")
        return (int(h[0:2], 16) / 255, int(h[2:4], 16) / 255, int(h[4:6], 16) / 255, 1.0)


def default_color(value: int) -> str:
    """The palette colour for a label value."""
    return PALETTE[(int(value) - 1) % len(PALETTE)]


def make_classes(names: Sequence[str], colors: Sequence[str] | None = None) -> list[ClassInfo]:
    """Classes 1..n from names (and optional colours)."""
    colors = list(colors) if colors else []
    return [
        ClassInfo(i + 1, name, colors[i] if i < len(colors) else default_color(i + 1))
        for i, name in enumerate(names)
    ]


def classes_from_json(items: Iterable[dict[str, Any]]) -> list[ClassInfo]:
    """Inverse of :meth:`ClassInfo.to_json` over a list, sorted by value, duplicates refused."""
    out = sorted(
        (ClassInfo(int(d["value"]), str(d["name"]), str(d["color"])) for d in items),
        key=lambda c: c.value,
    )
    values = [c.value for c in out]
    if len(set(values)) != len(values):
        raise ValueError(f"duplicate class values in {values}")
    return out
