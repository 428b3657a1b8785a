"""Every layer name napari-hitl gives, in one place: the widgets find and update their layers by
these names, so a name is written once. A layer of an image is named ``"<image> <suffix>"``."""

from __future__ import annotations

# result layers of the loop (updated in place by these names)
RESULT_SUFFIXES = {
    "prediction": "prediction",
    "confidence": "confidence",
    "uncertainty": "uncertainty",
    "accepted": "accepted",
    "region": "region",  # a Shapes rectangle drawn by the person
    "points": "points",  # positive / negative clicks
}
# layers of the Explain and guide widget
ATTENTION_SUFFIXES = {
    "cam": "Grad-CAM",
    "before": "Grad-CAM (before)",
    "prediction_before": "prediction (before)",
    "band": "band attribution",
    "clicks": "attention clicks",
    "ignore": "ignore regions",
}
# layers of the Guide (test-time hints) widget
GUIDE_SUFFIXES = {"hints": "hints", "change": "guide change"}


def layer_name(image: str, suffix: str) -> str:
    """``"<image> <suffix>"``: the name of one of ``image``'s layers."""
    return f"{image} {suffix}"


def composite_name(image: str) -> str:
    """Name of an image's RGB composite layer (the image's own name)."""
    return image


def bands_name(image: str) -> str:
    """Name of an image's all-bands layer."""
    return layer_name(image, "bands")


def labels_name(image: str) -> str:
    """Name of an image's labels layer."""
    return layer_name(image, "labels")


def height_name(image: str) -> str:
    """Name of an image's height (DSM) layer."""
    return layer_name(image, "height")


def coverage_name(image: str) -> str:
    """Name of the coverage-map layer of ``image``."""
    return layer_name(image, "coverage")


def question_name(image: str) -> str:
    """Name of the Points layer marking the asked pixel of ``image``."""
    return layer_name(image, "question")


def result_layer_names(image: str) -> dict[str, str]:
    """Names of the result layers of ``image``, by role (see :data:`RESULT_SUFFIXES`)."""
    return {role: layer_name(image, s) for role, s in RESULT_SUFFIXES.items()}


def attention_layer_names(image: str) -> dict[str, str]:
    """Names of the explanation layers of ``image``, by role."""
    return {role: layer_name(image, s) for role, s in ATTENTION_SUFFIXES.items()}


def guide_layer_names(image: str) -> dict[str, str]:
    """Names of the Guide widget's layers of ``image``, by role."""
    return {role: layer_name(image, s) for role, s in GUIDE_SUFFIXES.items()}
