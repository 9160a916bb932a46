"""The error every data-set check raises: its message names the path at fault and the fix."""

from __future__ import annotations


class DatasetError(ValueError):
    """A data set on disk cannot be used as given; the message names the path and the fix."""


class DecoderFailedError(DatasetError, RuntimeError):
    """DALI's decoder met a file it cannot decode ("Critical error in pipeline"), which left the
    pipeline dead; a RuntimeError too, as DALI raised it."""
