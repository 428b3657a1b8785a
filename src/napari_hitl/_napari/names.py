"""Every layer name napari-hitl gives, in one place: the widgets find and update their layers by
these names, so a name is written once."""

from __future__ import annotations


def composite_name(image: str) -> str:
    """Name of an image's RGB composite layer."""
    return image


def bands_name(image: str) -> str:
    """Name of an image's all-bands layer."""
    return f"{image} bands"


def labels_name(image: str) -> str:
    """Name of an image's labels layer."""
    return f"{image} labels"


def height_name(image: str) -> str:
    """Name of an image's height (DSM) layer."""
    return f"{image} height"


def result_layer_names(image: str) -> dict[str, str]:
    """Names of the result layers of ``image`` (updated in place by these names)."""
    return {
        "prediction": f"{image} prediction",
        "confidence": f"{image} confidence",
        "uncertainty": f"{image} uncertainty",
        "accepted": f"{image} accepted",
        "region": f"{image} region",  # a Shapes rectangle drawn by the person
        "points": f"{image} points",  # positive / negative clicks
    }


def coverage_name(image: str) -> str:
    """Name of the coverage-map layer of ``image``."""
    return f"{image} coverage"


def question_name(image: str) -> str:
    """Name of the Points layer marking the asked pixel of ``image``."""
    return f"{image} question"


def attention_layer_names(image: str) -> dict[str, str]:
    """Names of the explanation layers of ``image``."""
    return {
        "cam": f"{image} Grad-CAM",
        "before": f"{image} Grad-CAM (before)",
        "prediction_before": f"{image} prediction (before)",
        "band": f"{image} band attribution",
        "clicks": f"{image} attention clicks",
        "ignore": f"{image} ignore regions",
    }


def guide_layer_names(image: str) -> dict[str, str]:
    """Names of the Guide widget's layers of ``image``."""
    return {"hints": f"{image} hints", "change": f"{image} guide change"}
