"""The error every data-set check raises: its message names the path at fault and the fix."""

from __future__ import annotations


class DatasetError(ValueError):
    """A data set on disk cannot be used as given; the message names the path and the fix."""
