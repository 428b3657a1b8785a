"""The mixin of the settings and reports that the CLI prints and the store keeps as JSON."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any


class Jsonable:
    """A dataclass whose :meth:`to_json` is its fields (nested dataclasses become dicts)."""

    def to_json(self) -> dict[str, Any]:
        """A JSON-serialisable dict."""
        return asdict(self)  # type: ignore[call-overload]
