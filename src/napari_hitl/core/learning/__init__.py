"""Learning engine v2 (issue 18): feature front ends and training aids for the pixel networks."""
