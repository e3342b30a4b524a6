"""User-facing errors.

Every problem a user can cause (a missing file, an unreadable video, an
existing output path, ...) is raised as :class:`ChromaflowError` with a
one-line message.  The CLI prints that line and exits non-zero; it never
shows a traceback for these.
"""

from __future__ import annotations


class ChromaflowError(Exception):
    """A problem with the user's input or options, described in one line."""

    exit_code: int = 2

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(str(message).split()))


class InputError(ChromaflowError):
    """The input (video, frames, image, reference) cannot be used."""


class OutputError(ChromaflowError):
    """The output path cannot be written."""


class NotAvailableError(ChromaflowError):
    """An option that a later release implements was requested."""

    exit_code = 3


class Cancelled(ChromaflowError):
    """The caller cancelled the run (its ``cancel`` event was set, e.g. a web UI's cancel button): no output
    was written."""

    exit_code = 130


class WorkerError(ChromaflowError):
    """A worker colouring a shot failed (it died, or a task failed on the cluster); finished shots are kept."""

    exit_code = 1
