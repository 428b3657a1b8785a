"""Test-time guiding by hints: the guiding block, the guide, hint commands, twenty questions, and
the project service."""
