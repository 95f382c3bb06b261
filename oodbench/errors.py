"""Errors that name the thing at fault and the fix, so a user can act without reading code."""


class OodbenchError(Exception):
    """Base class of every error oodbench raises on purpose."""


class UnknownNameError(OodbenchError, KeyError):
    """A registry lookup failed; the message lists close names."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class DatasetError(OodbenchError):
    """A dataset on disk is missing, incomplete or not in the expected encoding."""


class UnknownSplitError(DatasetError):
    """A dataset has no split of that name (as opposed to a split whose files are missing)."""


class ScoreError(OodbenchError):
    """A score map is malformed: NaN/inf values or a shape that does not match the labels."""


class CheckpointError(OodbenchError):
    """A checkpoint is corrupt, unsafe to load, or does not match the model."""


class LabelError(DatasetError, ValueError):
    """A label map holds values outside the canonical encoding (0, 1, 255)."""
