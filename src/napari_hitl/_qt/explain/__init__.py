"""The Explain / guide-attention dock widget."""
