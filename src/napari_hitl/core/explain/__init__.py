"""Explanations and attention steering: Grad-CAM, per-band attribution, guidance by clicks, and
their project-level services."""
