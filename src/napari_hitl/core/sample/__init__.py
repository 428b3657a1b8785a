"""The synthetic sample scene and the sample project built from it."""
