"""Measuring the loop: simulated users and what their labeling costs."""
