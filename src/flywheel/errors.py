"""The one base of every error Flywheel expects and reports to a person in one line."""

from __future__ import annotations


class FlywheelError(Exception):
    """An expected failure whose message names the problem; the CLI prints it without a traceback."""
