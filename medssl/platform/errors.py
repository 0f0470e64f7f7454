"""Errors a user can cause, each carrying one clear sentence (path or key, problem, fix)."""

from __future__ import annotations


class MedsslError(Exception):
    """Base class of every error medssl raises on purpose for a user to read."""


class ConfigError(MedsslError, ValueError):
    """A pipeline config key has a bad value; the message names the key path."""


class DataError(MedsslError):
    """Input data is unreadable or breaks a contract; the message names the file."""

    def __init__(self, message: str, problems: list[str] | None = None) -> None:
        super().__init__(message)
        self.problems = list(problems or [])


class CheckpointError(MedsslError):
    """A checkpoint is missing, corrupt, or its card does not fit the input."""


class CompatibilityError(ConfigError):
    """A method needs metadata the chosen modality does not provide."""


def error_summary(err: BaseException) -> str:
    """The first line of an exception (its type name when it has no text), at most 160
    characters, for a user-facing sentence such as "x.nii cannot be read as NIfTI (...)".

    Example:
        >>> error_summary(ValueError("bad header\\nmore"))
        'bad header'
    """
    text = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return text if len(text) <= 160 else text[:157] + "..."
