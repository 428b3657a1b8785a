"""A horizontal bar chart of per-band attribution (matplotlib in a Qt canvas).

Bars are sorted with the strongest support for the class on top; green bars support the class,
red bars speak against it. Clicking a bar emits ``band_clicked`` with the band's name.
"""

from __future__ import annotations

from typing import Any

from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
from matplotlib.figure import Figure
from qtpy.QtCore import Signal
from qtpy.QtWidgets import QSizePolicy

from napari_hitl.core.explain.attribution import BandAttribution

SUPPORT, AGAINST = "#2ca25f", "#de2d26"


class BandChart(FigureCanvasQTAgg):
    """Per-band attribution as sorted horizontal bars (signed shares, %)."""

    band_clicked = Signal(str)

    def __init__(self) -> None:
        super().__init__(Figure(figsize=(3.2, 2.4), dpi=90, layout="constrained"))
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Preferred)
        self.setMinimumHeight(160)
        self.ax = self.figure.add_subplot(111)
        self.bands: list[str] = []
        self.shares: list[float] = []
        self.mpl_connect("button_press_event", self._clicked)
        self.clear()

    def clear(self) -> None:
        """An empty chart with a hint."""
        self.bands, self.shares = [], []
        self.ax.clear()
        self.ax.set_axis_off()
        self.ax.text(0.5, 0.5, "band attribution\n(Compute)", ha="center", va="center",
                     color="gray", transform=self.ax.transAxes)  # fmt: skip
        self.draw_idle()

    def plot(self, attr: BandAttribution, class_name: str = "") -> None:
        """Draw ``attr``: one bar per band, strongest support on top."""
        ranking = attr.ranking()
        self.bands = [b for b, _v, _s in ranking]
        self.shares = [100.0 * s for _b, _v, s in ranking]
        ax = self.ax
        ax.clear()
        ax.set_axis_on()
        y = list(range(len(self.bands)))[::-1]
        colors = [SUPPORT if s >= 0 else AGAINST for s in self.shares]
        ax.barh(y, self.shares, color=colors, height=0.7)
        ax.set_yticks(y, self.bands, fontsize=7)
        ax.axvline(0, color="black", linewidth=0.6)
        ax.tick_params(axis="x", labelsize=7)
        ax.set_xlabel(f"share of attribution (%), {attr.method}", fontsize=7)
        if class_name:
            ax.set_title(f"what supports “{class_name}” here", fontsize=8)
        self.draw_idle()

    def _clicked(self, event: Any) -> None:
        if event.inaxes is not self.ax or not self.bands or event.ydata is None:
            return
        i = len(self.bands) - 1 - round(event.ydata)
        if 0 <= i < len(self.bands):
            self.band_clicked.emit(self.bands[i])
