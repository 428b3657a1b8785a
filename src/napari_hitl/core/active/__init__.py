"""Active learning: which image, tile or pixel to label next, on arrays and over a project store."""
