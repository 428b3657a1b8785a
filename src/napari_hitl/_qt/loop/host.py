"""What the Learning loop widget offers the helpers it owns (Live, Points, background Infer).

The helpers are typed against :class:`LoopHost`, not the widget class, so they never import the
widget (no import circle) and use only the public methods listed here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from napari_hitl._napari.result_layers import Box
    from napari_hitl._qt.jobs import JobRunner
    from napari_hitl.core.learning.net import TrainConfig
    from napari_hitl.core.learning.prediction import Prediction
    from napari_hitl.core.store import ProjectStore


class LoopHost(Protocol):
    """The Learning loop widget as its helpers see it."""

    viewer: Any
    jobs: JobRunner
    status: Any  # a QLabel: setText(str)
    after_live: bool  # predict the whole image once the job slot is free

    def context(self) -> tuple[ProjectStore, str, Any]:
        """(store, image name, labels layer) of the current choice."""
        ...

    def labels_layer(self) -> Any:
        """The chosen labels layer, or ``None``."""
        ...

    def plane_index(self) -> int | None:
        """The slice shown of a stack, ``None`` for a 2-D image."""
        ...

    def train_config(self) -> TrainConfig:
        """The training settings chosen in the widget."""
        ...

    def save_labels_now(self) -> int:
        """Save the person's strokes; how many pixels changed."""
        ...

    def save_human_edits(self, store: ProjectStore, image: str, layer: Any) -> None:
        """Save the strokes of ``layer`` on top of what the store holds now."""
        ...

    def show_error(self, exc: BaseException) -> None:
        """Tell the person what went wrong (one line, a napari notification)."""
        ...

    def refresh_preview(self) -> None:
        """Redraw the threshold preview."""
        ...

    def refresh_areas(self) -> None:
        """Recount the labeled areas shown in the widget."""
        ...

    def show_prediction(
        self, store: ProjectStore, image: str, layer: Any, pred: Prediction, index: int | None,
        box: Box | None = None,
    ) -> None:  # fmt: skip
        """Show a prediction (of one ``box`` for a live round) and keep it for the preview."""
        ...
